"""The generated NumPy code copies the runtime's kernels by name: each copy is its definition's exact source."""

import ast

from archc.codegen.numpy_target import KERNELS, _kernels


def test_each_kernel_is_copied_as_the_standard_librarys_source_segment():
    kernels = _kernels()
    definitions = 0
    for path in KERNELS:
        text = path.read_text(encoding="utf-8")
        for node in ast.parse(text).body:
            if isinstance(node, ast.FunctionDef | ast.ClassDef):
                assert kernels[node.name][0] == ast.get_source_segment(text, node), node.name
                definitions += 1
    assert definitions == len(kernels) > 100
