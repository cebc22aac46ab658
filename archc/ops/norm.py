"""Normalisation: batch norm and local response normalisation."""

from __future__ import annotations

from ..codegen.pyexpr import call, lit
from .base import Op, P, ShapeError, register
from .emit import ones, zeros


@register
class BatchNorm(Op):
    name = "bn"
    doc = "Batch normalisation over the channel axis (1-D, 2-D or 3-D by input rank)."
    params = (
        P("eps", "float", 1e-5),
        P("momentum", "float", 0.1, doc="weight of the new batch in the running averages (PyTorch's convention)"),
    )

    def infer(self, node, ins, warn):
        if not 0 <= node.attrs["momentum"] <= 1:
            raise ShapeError(f"bn {node.name}: momentum must be between 0 and 1", param="momentum", code="E0205")
        if node.attrs["eps"] <= 0:
            raise ShapeError(f"bn {node.name}: eps must be positive", param="eps", code="E0205")
        return ins[0]

    def count_params(self, node, ins, out):
        return 2 * ins[0][0]  # gamma and beta

    def count_buffers(self, node, ins, out):
        return 2 * ins[0][0]  # running mean and variance

    def settings(self, node):
        return f"eps {node.attrs['eps']:g}" if node.attrs["eps"] != 1e-5 else ""

    def _options(self, node):
        a = node.attrs
        return {
            "momentum": None if a["momentum"] == 0.1 else lit(a["momentum"]),
            "eps": None if a["eps"] == 1e-5 else lit(a["eps"]),
        }

    def torch_layer(self, node, ins):
        nd = max(len(ins[0]) - 1, 1)  # a vector (C) and C x L both take BatchNorm1d
        options = self._options(node)
        return call(f"nn.BatchNorm{nd}d", ins[0][0], eps=options["eps"], momentum=options["momentum"])

    def numpy_state(self, node, ins, init):
        c = (ins[0][0],)
        return [
            ("weight", ones(c)),
            ("bias", zeros(c)),
            ("running_mean", zeros(c)),
            ("running_var", ones(c)),
            ("num_batches_tracked", call("np.zeros", "()", "np.int64")),
        ]

    def numpy_call(self, node, state, args):
        return call("batch_norm", args[0], "s", lit(state.key), "self.training", **self._options(node))


@register
class LocalResponseNorm(Op):
    name = "lrn"
    doc = "Local response normalisation across `size` neighbouring channels (AlexNet)."
    params = (
        P("size", "int", positional=True, doc="channels in the normalisation window"),
        P("alpha", "float", 1e-4),
        P("beta", "float", 0.75),
        P("k", "float", 1.0),
    )

    def infer(self, node, ins, warn):
        if len(ins[0]) < 2:
            raise ShapeError(f"lrn {node.name}: needs a C x ... input with spatial dimensions, not a vector")
        if node.attrs["size"] < 1:
            raise ShapeError(f"lrn {node.name}: size must be at least 1", param="size", code="E0205")
        return ins[0]

    def settings(self, node):
        return f"size {node.attrs['size']}"

    def _options(self, node):
        defaults = {"alpha": 1e-4, "beta": 0.75, "k": 1.0}
        return {k: None if node.attrs[k] == v else lit(float(node.attrs[k])) for k, v in defaults.items()}

    def torch_layer(self, node, ins):
        return call("nn.LocalResponseNorm", node.attrs["size"], **self._options(node))

    def numpy_call(self, node, state, args):
        return call("local_response_norm", args[0], node.attrs["size"], **self._options(node))
