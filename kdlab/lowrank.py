"""Low-rank factorisation of Linear layers by truncated SVD: W ≈ U_r Σ_r V_rᵀ.

With the singular value decomposition W = U Σ Vᵀ (σ_1 ≥ σ_2 ≥ …), keeping the r largest singular values gives
the best rank-r approximation in the Frobenius norm, with error ‖W − U_r Σ_r V_rᵀ‖_F = sqrt(Σ_{i>r} σ_i²)
(Eckart & Young 1936). An nn.Linear(in, out) then becomes two layers, x ↦ U_r (Σ_r V_rᵀ x) + b, with
r·(in + out) weights instead of in·out: Σ_r goes wholly into the first factor, as in Xue, Li & Gong (2013),
"Restructuring of Deep Neural Network Acoustic Models with Singular Value Decomposition".
"""
from __future__ import annotations

import torch
from torch import nn

from .checks import check_module, is_int, is_number
from .prune import clone_model, current_weight


def check_energy(energy):
    """Raise ValueError unless `energy`, the fraction of Σσ² to keep, is a number in (0, 1]."""
    if not is_number(energy) or not 0 < energy <= 1:
        raise ValueError(f"energy must be in (0, 1], got {energy!r}")


def check_rank(rank):
    """Raise ValueError unless `rank` is an int >= 1."""
    if not is_int(rank) or rank < 1:
        raise ValueError(f"rank must be an int >= 1, got {rank!r}")


def rank_for_energy(singular_values, energy):
    """The smallest rank r with Σ_{i≤r} σ_i² ≥ energy · Σ_i σ_i², for singular values in decreasing order."""
    check_energy(energy)
    squares = torch.as_tensor(singular_values, dtype=torch.float64) ** 2
    if squares.ndim != 1 or not len(squares):
        raise ValueError(f"singular_values must be a non-empty 1-D sequence, got shape {tuple(squares.shape)}")
    kept = torch.cumsum(squares, 0)
    return min(int(torch.searchsorted(kept, energy * kept[-1])) + 1, len(squares))


def factorize_linear(layer, rank):
    """nn.Sequential(Linear(in, rank, bias=False), Linear(rank, out)) with weights Σ_r V_rᵀ and U_r, bias b."""
    if not isinstance(layer, nn.Linear):
        raise ValueError(f"layer must be an nn.Linear, got {type(layer).__name__}")
    weight = current_weight(layer)
    check_rank(rank)
    if rank > min(weight.shape):
        raise ValueError(f"rank must be <= {min(weight.shape)} (the smaller side of a {layer.out_features} x "
                         f"{layer.in_features} weight), got {rank}")
    u, s, vh = torch.linalg.svd(weight.double(), full_matrices=False)
    first = nn.Linear(layer.in_features, rank, bias=False)
    second = nn.Linear(rank, layer.out_features, bias=layer.bias is not None)
    pair = nn.Sequential(first, second).to(device=weight.device, dtype=weight.dtype).train(layer.training)
    with torch.no_grad():
        first.weight.copy_(s[:rank, None] * vh[:rank])
        second.weight.copy_(u[:, :rank])
        if layer.bias is not None:
            second.bias.copy_(layer.bias)
    return pair


def _linear_layers(model, layers):
    """The (name, module) pairs of the nn.Linear layers of `model`, or of those named in `layers`."""
    check_module(model)
    found = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if layers is None:
        return found
    if isinstance(layers, str) or not hasattr(layers, "__iter__"):
        raise ValueError(f"layers must be a list of layer names, got {layers!r}")
    layers = list(layers)
    names = [name for name, _ in found]
    unknown = [str(name) for name in layers if name not in names]
    if unknown:
        raise ValueError(f"layers must name Linear layers of the model ({', '.join(names) or 'none'}), "
                         f"got {', '.join(unknown)}")
    return [(name, m) for name, m in found if name in layers]


def low_rank(model, rank=None, energy=None, layers=None):
    """A new model whose chosen Linear layers are factorised to rank r by truncated SVD, where that saves weights.

    Give exactly one of `rank` (the same r for every layer, capped at the layer's full rank) or `energy` (per
    layer, the smallest r keeping that fraction of Σσ², see rank_for_energy). A Linear(in, out) is replaced by
    factorize_linear's pair only if r·(in + out) < in·out; otherwise it is left as it is. `layers` names the
    Linear layers to consider (default: all, the classifier too). Pruning masks are folded into the factors.
    `model` is not modified; the new model does not carry `kdlab_architecture` (it is no longer build_model's
    architecture): pass it as load_compressed's `model`.
    """
    if (rank is None) == (energy is None):
        raise ValueError(f"give exactly one of rank and energy, got rank={rank!r}, energy={energy!r}")
    if rank is not None:
        check_rank(rank)
    else:
        check_energy(energy)
    chosen = [name for name, _ in _linear_layers(model, layers)]
    new = clone_model(model)
    vars(new).pop("kdlab_architecture", None)
    for name in chosen:
        layer = new.get_submodule(name)
        weight = current_weight(layer)
        r = min(rank, *weight.shape) if rank is not None else \
            rank_for_energy(torch.linalg.svdvals(weight.double()), energy)
        if r * (layer.in_features + layer.out_features) >= layer.in_features * layer.out_features:
            continue
        if not name:
            return factorize_linear(layer, r)
        parent, _, child = name.rpartition(".")
        setattr(new.get_submodule(parent), child, factorize_linear(layer, r))
    return new
