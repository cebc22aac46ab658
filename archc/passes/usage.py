"""Layers whose output goes nowhere: almost always a wrong input reference."""

from __future__ import annotations

from ..diagnostics import Reporter
from .shapes import node_notes


def find_unused(graph, reporter: Reporter) -> None:
    """W0302 for every layer nothing reads and the network does not return."""
    last = graph.outputs[-1].name if graph.outputs else None
    declared = graph.declared_outputs is not None
    for node in graph.unused:
        what = "input" if node.op == "input" else "layer"
        fixes = [f"read it in a later layer, e.g. `relu ({node.name.split('.')[-1]})`, or delete it"]
        if node.op != "input":
            outputs = [n.name for n in graph.outputs] + [node.name]
            fixes.append(
                f"to return it too, list the outputs: `output ({', '.join(outputs)})`"
                if declared or last is None
                else f"to return it too, declare the outputs: `output ({last}, {node.name})`"
            )
        reporter.warn(
            "W0302",
            f"{what} `{node.name}` is never used: no layer reads it and the network does not return it",
            node.span,
            fixes,
            node_notes(node),
        )
