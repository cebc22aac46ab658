"""Code generation: an analysed network as Python source, one generator per target.

Each target walks the graph once and asks every layer's `Op` for its own
code (see archc/ops/base.py), so a new layer type brings its code with it.
"""

from __future__ import annotations

TARGETS = ("torch", "numpy")


def generate(network, target: str, flat: bool = False):
    """A `Generated` (source code and the line of each layer's statement) for `target`: nested as the
    spec is (a class per block, state_dict keys that follow its names), or with `flat` one
    attribute per layer and one forward.

    Like the analysis, it runs with the cyclic garbage collector paused: it builds a few
    objects a layer and frees them at the end, and the collector's passes over all of
    them made the time per layer grow by a fifth from 1,000 to 10,000 layers.
    """
    from ..analysis import _collector_paused

    if target == "torch":
        from .torch_target import generate as emit
    elif target == "numpy":
        from .numpy_target import generate as emit
    elif target == "onnx":
        raise ValueError("the ONNX target is a model, not source code: network.to_onnx() builds it")
    else:
        raise ValueError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    with _collector_paused():
        return emit(network, flat)
