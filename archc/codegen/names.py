"""Legal, unique Python names for the layers of a spec.

Every name that reaches generated code passes through a `Namespace`: it is
reduced to ASCII letters, digits and underscores (so no spec can smuggle
code, a Unicode look-alike or a name-mangled `__attr` into the output),
moved off Python keywords, builtins and whatever the generated module itself
uses, and made unique with a numeric suffix. The same spec always gets the
same names.
"""

from __future__ import annotations

import builtins
import keyword
import re

# Public members of torch.nn.Module (torch 2.x): a submodule attribute with one
# of these names would shadow the method. tests/test_codegen.py checks this
# list against the installed torch.
NN_MODULE_MEMBERS = frozenset(
    {
        "T_destination",
        "add_module",
        "apply",
        "bfloat16",
        "buffers",
        "call_super_init",
        "children",
        "compile",
        "cpu",
        "cuda",
        "double",
        "dump_patches",
        "eval",
        "extra_repr",
        "float",
        "forward",
        "get_buffer",
        "get_extra_state",
        "get_parameter",
        "get_submodule",
        "half",
        "ipu",
        "load_state_dict",
        "modules",
        "mtia",
        "named_buffers",
        "named_children",
        "named_modules",
        "named_parameters",
        "parameters",
        "register_backward_hook",
        "register_buffer",
        "register_forward_hook",
        "register_forward_pre_hook",
        "register_full_backward_hook",
        "register_full_backward_pre_hook",
        "register_load_state_dict_post_hook",
        "register_load_state_dict_pre_hook",
        "register_module",
        "register_parameter",
        "register_state_dict_post_hook",
        "register_state_dict_pre_hook",
        "requires_grad_",
        "set_extra_state",
        "set_submodule",
        "share_memory",
        "state_dict",
        "to",
        "to_empty",
        "train",
        "training",
        "type",
        "xpu",
        "zero_grad",
    }
)

_NOT_WORD = re.compile(r"[^A-Za-z0-9_]+")


def sanitize(name: str, fallback: str = "layer") -> str:
    """`layer1.0.conv1` -> `layer1_0_conv1`; anything else that is not a word character becomes `_`."""
    text = _NOT_WORD.sub("_", name).strip("_")
    if not text:
        return fallback
    if text[0].isdigit():
        text = f"{fallback}_{text}"
    return text


class Namespace:
    """Hands out identifiers that are legal, unique and shadow nothing in `reserved`."""

    def __init__(self, reserved=()):
        self.taken = set(reserved) | set(keyword.kwlist) | set(keyword.softkwlist) | set(dir(builtins))
        self.given: dict[str, str] = {}
        self.suffix: dict[str, int] = {}  # base -> the numeric suffix to try next: below it, all are taken

    def name(self, wanted: str, key: str | None = None, fallback: str = "layer") -> str:
        """A fresh identifier for `wanted`; asking again with the same `key` gives the same one.

        The suffixes tried for a base start where the last search for it stopped, so
        that n names reduced to one base (`a`, `_a`, `a_`, ...) cost n steps, not n^2.
        """
        key = wanted if key is None else key
        if key in self.given:
            return self.given[key]
        base = sanitize(wanted, fallback)
        candidate = base if base not in self.taken else f"{base}_"
        n = self.suffix.get(base, 1)
        while candidate in self.taken:
            candidate = f"{base}_{n}"
            n += 1
        self.suffix[base] = n
        self.taken.add(candidate)
        self.given[key] = candidate
        return candidate


def class_name(network: str) -> str:
    return sanitize(network, "Network")
