"""Notebook parameters as papermill delivers them: `-p name "[0.5, 1.0]"` arrives as text, `-y` as a list.

papermill's `-p` turns a value into an int, float, bool or None when it can and leaves anything else a string,
so a list typed on the command line reaches the notebook as the text "[0.5, 1.0]"; `-y "name: [0.5, 1.0]"`
(YAML) delivers a list. `list_parameter` accepts both, and refuses anything else at once, in the setup cell,
before any training starts.
"""
from __future__ import annotations

import ast

from .checks import is_int, is_number

KINDS = {"number": is_number, "int": is_int, "str": lambda value: isinstance(value, str)}


def list_parameter(value, name, kind="number", optional=False):
    """`value` as a list of `kind` ("number", "int" or "str"), text such as "[0.5, 1.0]" parsed; None if `optional`."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if optional and value is None:
        return None
    parsed = value
    if isinstance(value, str):
        try:
            parsed = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            parsed = value
    if not isinstance(parsed, (list, tuple)) or not parsed or not all(map(KINDS[kind], parsed)):
        example = '["fc1", "fc2"]' if kind == "str" else "[1, 2, 3]"
        raise ValueError(f"{name} must be a non-empty list of {kind}s{' or None' if optional else ''}, got "
                         f"{value!r}; with papermill pass -p {name} '{example}' or -y '{name}: {example}'")
    return list(parsed)
