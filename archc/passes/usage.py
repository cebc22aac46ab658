"""Layers whose output goes nowhere: almost always a wrong input reference."""

from __future__ import annotations

from ..diagnostics import Reporter
from .shapes import node_notes

MAX_LISTED = 8  # outputs named in full in a help line


def find_unused(graph, reporter: Reporter) -> None:
    """W0302 for every statement whose layers nothing reads and the network does not return.

    One warning a statement, not one a layer: a statement in a repeat of 100,000, or in a
    block called from many places, makes its unused layers again in every iteration and
    call, and the warning names the first and counts the others.
    """
    names = [n.name for n in graph.outputs]  # once: a property that walks the graph, not once per warning
    last = names[-1] if names else None
    declared = graph.declared_outputs is not None
    if len(names) > MAX_LISTED:  # a help line is one line, however many outputs there are
        names = [*names[: MAX_LISTED // 2], "...", *names[-(MAX_LISTED // 2) :]]
    by_statement: dict = {}
    for node in graph.unused:
        by_statement.setdefault(node.span, []).append(node)
    for node, *others in by_statement.values():
        what = "input" if node.op == "input" else "layer"
        fixes = [f"read it in a later layer, e.g. `relu ({node.name.split('.')[-1]})`, or delete it"]
        if node.op != "input":
            outputs = [*names, node.name]
            fixes.append(
                f"to return it too, list the outputs: `output ({', '.join(outputs)})`"
                if declared or last is None
                else f"to return it too, declare the outputs: `output ({last}, {node.name})`"
            )
        more = ""
        if others:
            shown = others if len(others) <= 3 else [*others[:2], None, others[-1]]
            listed = ", ".join("..." if n is None else f"`{n.name}`" for n in shown)
            more = f"; nor are the {len(others):,} other layers its statement makes ({listed})"
        reporter.warn(
            "W0302",
            f"{what} `{node.name}` is never used: no layer reads it and the network does not return it{more}",
            node.span,
            fixes,
            node_notes(node),
        )
