"""Argument checks shared across the package: what counts as an int, a number and a model."""
from __future__ import annotations

import numbers

from torch import nn


def is_int(value):
    """True for an int (numpy's too), False for bools, floats, strings and the rest."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value):
    """True for an int or float (numpy's too), False for bools, strings and the rest."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_module(model):
    """Raise ValueError unless `model` is a torch.nn.Module."""
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
