"""Layers whose output goes nowhere: almost always a wrong input reference."""

from __future__ import annotations

from ..diagnostics import Reporter
from .shapes import node_notes

MAX_LISTED = 8  # outputs named in full in a help line


def find_unused(graph, reporter: Reporter) -> None:
    """W0302 for every layer nothing reads and the network does not return."""
    names = [n.name for n in graph.outputs]  # once: a property that walks the graph, not once per warning
    last = names[-1] if names else None
    declared = graph.declared_outputs is not None
    if len(names) > MAX_LISTED:  # a help line is one line, however many outputs there are
        names = [*names[: MAX_LISTED // 2], "...", *names[-(MAX_LISTED // 2) :]]
    for node in graph.unused:
        what = "input" if node.op == "input" else "layer"
        fixes = [f"read it in a later layer, e.g. `relu ({node.name.split('.')[-1]})`, or delete it"]
        if node.op != "input":
            outputs = [*names, node.name]
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
