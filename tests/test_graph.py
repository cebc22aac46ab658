"""The graph IR keeps each layer's readers itself and builds its networkx DiGraph on demand.

networkx is the reference here: for every bundled spec, the readers the Graph
keeps are the DiGraph's successors, in the same order, and the layers nothing
reads are those of out-degree 0.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import archc
from archc.graph import Graph, Node

SPECS = sorted((Path(__file__).resolve().parent.parent / "specs").glob("*.arch"))


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_readers_are_networkx_successors(spec):
    graph = archc.load(spec).graph
    nx_graph = graph.nx
    assert list(nx_graph.nodes) == list(graph.nodes)
    assert nx_graph.number_of_edges() == sum(len(set(n.inputs)) for n in graph)
    for name in graph.nodes:
        assert graph.consumers(name) == list(nx_graph.successors(name))
    assert [n.name for n in graph.unused] == [
        n for n in nx_graph.nodes if nx_graph.out_degree(n) == 0 and n not in {o.name for o in graph.outputs}
    ]


def test_a_layer_reading_one_input_twice_is_one_edge():
    graph = archc.loads("network N {\n  input x: 3x8x8\n  add s (x, x)\n}\n").graph
    assert graph.consumers("x") == ["s"]
    assert graph.nx.number_of_edges() == 1


def test_the_digraph_follows_layers_added_after_it_was_built():
    graph = Graph("N", "n.arch")
    graph.add(Node("x", "input", [], {}, None))
    assert list(graph.nx.nodes) == ["x"]
    graph.add(Node("y", "relu", ["x"], {}, None))
    assert list(graph.nx.edges) == [("x", "y")]


def test_analysis_and_table_do_not_import_networkx():
    code = (
        "import sys, archc; net = archc.load('specs/lenet5.arch'); net.table('markdown');"
        " print('networkx' in sys.modules)"
    )
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
