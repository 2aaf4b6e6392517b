"""Magnitude pruning (Han et al. 2015) through torch.nn.utils.prune: std thresholds, fractions, L1, reports."""
from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils import prune

from .checks import check_module, is_number
from .layers import PRUNABLE, compressible_weights
from .train import check_epochs, check_lr, cross_entropy, fit


def prunable_layers(model, layers=None):
    """The (name, module) pairs of the Linear and Conv1d/2d/3d layers of `model`, or of those named in `layers`."""
    check_module(model)
    found = [(name, m) for name, m in model.named_modules() if isinstance(m, PRUNABLE)]
    if layers is None:
        return found
    names = {name for name, _ in found}
    unknown = sorted(set(layers) - names)
    if unknown:
        raise ValueError(f"layers must name Linear or Conv layers of the model ({', '.join(sorted(names))}), "
                         f"got {', '.join(unknown)}")
    return [(name, m) for name, m in found if name in set(layers)]


def chosen_weights(model, layers=None):
    """The (key, module, tensor name) triples of compressible_weights(model), or of the keys in `layers`."""
    found = compressible_weights(model)
    if layers is None:
        return found
    keys = {key for key, _, _ in found}
    unknown = sorted(set(layers) - keys)
    if unknown:
        raise ValueError(f"layers must name compressible weights of the model ({', '.join(sorted(keys))}), "
                         f"got {', '.join(unknown)}")
    return [found_weight for found_weight in found if found_weight[0] in set(layers)]


def current_weight(module, name="weight"):
    """The module's tensor `name` as it is now: name_orig * name_mask while a pruning mask is attached.

    torch.nn.utils.prune recomputes `module.weight` only in a forward pass, so right after an optimizer
    step it is one step out of date.
    """
    if not isinstance(module, nn.Module) or not isinstance(getattr(module, name, None), torch.Tensor):
        raise ValueError(f"module must be an nn.Module with a {name} tensor, got {type(module).__name__}")
    if hasattr(module, name + "_orig") and hasattr(module, name + "_mask"):
        return (getattr(module, name + "_orig") * getattr(module, name + "_mask")).detach()
    return getattr(module, name).detach()


def check_finite_weights(weights):
    """Raise ValueError if any of the (key, module, tensor name) triples has a NaN or infinite weight."""
    for key, module, name in weights:
        bad = int((~torch.isfinite(current_weight(module, name))).sum())
        if bad:
            raise ValueError(f"model must have finite weights to be pruned: layer {key} has {bad} NaN or infinite "
                             f"weight(s)")


def _is_sensitivity(value):
    """True if `value` is a number >= 0 (NaN is not)."""
    return is_number(value) and value >= 0


def check_sensitivities(sensitivities):
    """`sensitivities` as a list, checked to be a non-empty sequence of numbers >= 0."""
    values = [] if isinstance(sensitivities, str) or not hasattr(sensitivities, "__iter__") else list(sensitivities)
    if not values or not all(map(_is_sensitivity, values)):
        raise ValueError(f"sensitivities must be a non-empty sequence of numbers >= 0, got {sensitivities!r}")
    return values


def prune_by_std(model, sensitivity, layers=None):
    """Prune each layer's weights with |w| < sensitivity x std of the layer's weights; return the thresholds.

    Han et al. (2015), "Learning both Weights and Connections": the threshold is a quality parameter
    times the layer's standard deviation, taken over the whole weight tensor as it is now (weights
    pruned earlier count as zeros, as in the public reference code), so pruning again at the same
    sensitivity removes little more. Masks come from torch.nn.utils.prune: pruned weights stay
    exactly zero while the survivors retrain, and pruning again combines the masks.
    """
    if not _is_sensitivity(sensitivity):
        raise ValueError(f"sensitivity must be >= 0, got {sensitivity!r}")
    chosen = chosen_weights(model, layers)
    check_finite_weights(chosen)  # before any layer is pruned: a bad model is refused whole
    thresholds = {}
    for key, module, name in chosen:
        weight = current_weight(module, name)
        threshold = sensitivity * weight.std().item() if weight.numel() > 1 else 0.0
        prune.custom_from_mask(module, name, weight.abs() >= threshold)
        thresholds[key] = threshold
    return thresholds


def prune_by_fraction(model, amount, layers=None):
    """Prune the `amount` fraction (0..1) of smallest-magnitude weights in each layer (L1 unstructured)."""
    if not is_number(amount) or not 0 <= amount <= 1:
        raise ValueError(f"amount must be in [0, 1], got {amount!r}")
    chosen = chosen_weights(model, layers)
    check_finite_weights(chosen)
    for _, module, name in chosen:
        prune.l1_unstructured(module, name, amount=float(amount))
    return model


def l1_penalty(model):
    """Sum of |w| over the compressible weights: add lambda x this to the loss to push weights to zero."""
    return sum(getattr(module, name).abs().sum() for _, module, name in compressible_weights(model))


def sparsity(model):
    """Per-weight {layer, weights, nonzero, kept} and a "total" row: how many weights survive pruning."""
    rows = []
    for key, module, name in compressible_weights(model):
        weight = current_weight(module, name)
        nonzero = int(torch.count_nonzero(weight))
        rows.append({"layer": key, "weights": weight.numel(), "nonzero": nonzero, "kept": nonzero / weight.numel()})
    weights, nonzero = sum(r["weights"] for r in rows), sum(r["nonzero"] for r in rows)
    rows.append({"layer": "total", "weights": weights, "nonzero": nonzero, "kept": nonzero / max(weights, 1)})
    return rows


def iterative_prune(model, loader, sensitivities, epochs=2, lr=1e-3, device="auto", loss_fn=cross_entropy):
    """Prune by std at each sensitivity in turn, retraining the survivors `epochs` after each step.

    `loss_fn(logits, inputs, labels)` is the retraining loss (a distillation loss keeps the teacher's
    guidance). Returns one {sensitivity, kept, loss} per step; the masks keep pruned weights at zero.
    """
    sensitivities = check_sensitivities(sensitivities)
    check_epochs(epochs)
    check_lr(lr)
    history = []
    for sensitivity in sensitivities:
        prune_by_std(model, sensitivity)
        trained = fit(model, loader, epochs, lr=lr, loss_fn=loss_fn, device=device, desc=f"retrain s={sensitivity}")
        history.append({"sensitivity": sensitivity, "kept": sparsity(model)[-1]["kept"],
                        "loss": trained[-1]["loss"] if trained else None})
    return history


def remove_masks(model):
    """Make pruning permanent: fold each mask into its weight and drop the torch.nn.utils.prune hooks."""
    for _, module, name in compressible_weights(model):
        if hasattr(module, name + "_mask") and hasattr(module, name + "_orig"):
            prune.remove(module, name)
    return model


def clone_model(model):
    """A deep copy of `model` that also works while torch.nn.utils.prune masks are attached.

    copy.deepcopy refuses the pruned `weight` tensors (computed from weight_orig * weight_mask, so not
    graph leaves); they are left out of the copy and recomputed from the copied weight_orig and mask.
    """
    check_module(model)
    hooks = [(module, hook) for module in model.modules() for hook in module._forward_pre_hooks.values()
             if isinstance(hook, prune.BasePruningMethod)]
    copied = copy.deepcopy(model, {id(getattr(module, hook._tensor_name)): None for module, hook in hooks})
    for module in copied.modules():
        for hook in module._forward_pre_hooks.values():
            if isinstance(hook, prune.BasePruningMethod):
                setattr(module, hook._tensor_name, hook.apply_mask(module))
    return copied
