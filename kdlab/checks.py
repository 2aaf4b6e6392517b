"""Argument checks shared across the package: what counts as an int, a number, a model and labels."""
from __future__ import annotations

import numbers

import torch
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


def check_labels(labels, num_classes):
    """Raise ValueError unless `labels` is a tensor of integer class indices in 0..num_classes-1."""
    if not isinstance(labels, torch.Tensor) or labels.is_floating_point() or labels.is_complex() or \
            labels.dtype == torch.bool:
        kind = labels.dtype if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise ValueError(f"labels must be integer class indices, got {kind}")
    if labels.numel() and not 0 <= int(labels.min()) <= int(labels.max()) < num_classes:
        raise ValueError(f"labels must be class indices in 0..{num_classes - 1} (the model has {num_classes} "
                         f"outputs), got labels from {int(labels.min())} to {int(labels.max())}")
