"""Normalisation: batch norm and local response normalisation."""

from __future__ import annotations

from .base import Op, P, ShapeError, register


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
