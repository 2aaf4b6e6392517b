"""One-dimensional k-means for weight sharing (Deep Compression, Han, Mao & Dally 2016, §3.1–3.2).

Weight sharing clusters a layer's weights W = {w_1, ..., w_n} into k clusters C = {c_1, ..., c_k} that
minimise the within-cluster sum of squares (eq. 2):

    argmin_C  sum_{i=1..k} sum_{w in c_i} |w - c_i|^2

In one dimension Lloyd's algorithm needs no distance matrix: with sorted centroids every cluster is an
interval of the sorted weights, cut at the midpoints between consecutive centroids. So the weights are
sorted once, each assignment step is one binary search of the k - 1 midpoints in them, and each update
step reads the cluster sums off one prefix sum: O(k log n) per iteration instead of O(n k). The iterates
are exactly Lloyd's (a weight at a midpoint goes to the lower centroid, as scikit-learn's argmin does).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .checks import is_int
from .entropy_kmeans import entropy_lloyd

INITS = ("linear", "density", "random")
METHODS = ("lloyd", "optimal")


def _check_k(k):
    if not is_int(k) or k < 1:
        raise ValueError(f"k must be an int >= 1, got {k!r}")


def _check_init(init):
    if init not in INITS:
        raise ValueError(f"init must be one of {', '.join(map(repr, INITS))}, got {init!r}")


def _check_seed(seed):
    if not is_int(seed) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")


def check_entropy_weight(entropy_weight):
    """Raise ValueError unless entropy_weight is a finite number >= 0."""
    if isinstance(entropy_weight, bool) or not isinstance(entropy_weight, (int, float)) or not (
            0 <= entropy_weight < math.inf):
        raise ValueError(f"entropy_weight must be a finite number >= 0, got {entropy_weight!r}")


def _as_flat(values):
    """`values` as a flat, detached float tensor on its device (numpy arrays and lists go to the CPU)."""
    if not isinstance(values, torch.Tensor):
        array = np.array(values)
        if array.dtype.kind not in "biuf":
            raise ValueError(f"values must be a non-empty array of finite floats, got dtype {array.dtype}")
        values = torch.from_numpy(array)
    flat = values.detach().reshape(-1)
    if not flat.is_floating_point():
        flat = flat.to(torch.get_default_dtype())
    if flat.numel() == 0:
        raise ValueError("values must be a non-empty array of finite floats, got 0 values")
    bad = int((~torch.isfinite(flat)).sum())
    if bad:
        raise ValueError(f"values must be a non-empty array of finite floats, got {bad} NaN or infinite value(s)")
    return flat


def _sort(flat):
    """(the values sorted ascending, the permutation that sorts them), in float64 where the device has it.

    float64 keeps the prefix sums and midpoints accurate; Apple MPS has no float64 and gets float32.
    On the CPU the sort is numpy's, ten times faster than torch.sort there.
    """
    points = flat.to(torch.float32 if flat.device.type == "mps" else torch.float64)
    order = torch.from_numpy(np.argsort(points.numpy())) if points.device.type == "cpu" else points.argsort()
    return points[order], order


def _initial(sorted_values, k, init, seed):
    """k sorted initial centroids (§3.2, Fig. 4) from the sorted values, in their dtype."""
    n = sorted_values.numel()
    if init == "linear":
        lo, hi = sorted_values[0].item(), sorted_values[-1].item()
        return torch.linspace(lo, hi, k, dtype=sorted_values.dtype, device=sorted_values.device)
    if init == "density":
        quantile = (torch.arange(k, dtype=sorted_values.dtype, device=sorted_values.device) + 0.5) / k
        position = quantile * (n - 1)
        below = position.floor().long()
        above = (below + 1).clamp(max=n - 1)
        fraction = position - below
        return sorted_values[below] + fraction * (sorted_values[above] - sorted_values[below])
    distinct, which = torch.unique_consecutive(sorted_values, return_inverse=True)
    if distinct.numel() < k:
        raise ValueError(f"k must be <= the number of distinct values ({distinct.numel()}) for init='random', "
                         f"got {k}")
    draw = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).to(sorted_values.device)
    first_drawn = torch.full_like(distinct, n, dtype=torch.long).scatter_reduce(
        0, which[draw], torch.arange(n, device=sorted_values.device), "amin")
    return distinct[first_drawn.argsort()[:k]].sort().values


def init_centroids(values, k, init="linear", seed=0):
    """k sorted initial centroids for `values`: "linear", "density" or "random" (§3.2, Fig. 4).

    - "linear": k values evenly spaced from min to max of the values (both ends included).
    - "density": the quantiles (i + 0.5) / k, i = 0..k-1, of the values (numpy's default linear
      interpolation): evenly spaced on the y-axis of the CDF, centred in k equal-probability bins, so no
      centroid starts on the extreme weights.
    - "random" (Forgy): k distinct values drawn at random from the values without replacement, with
      torch.Generator().manual_seed(seed), so the same seed gives the same centroids on every device.

    Returns a 1-D tensor of k centroids on the values' device, in their dtype (float32 for non-float input).
    """
    _check_k(k)
    _check_init(init)
    _check_seed(seed)
    flat = _as_flat(values)
    return _initial(_sort(flat)[0], k, init, seed).to(flat.dtype)


def _count_at_most(sorted_values, limits):
    """How many of the sorted values are <= each limit: torch.searchsorted(..., right=True).

    On the CPU this goes through numpy: torch runs a search of more than 200 queries on its thread pool,
    whose start-up costs milliseconds on a busy machine, where the search itself takes microseconds.
    """
    if sorted_values.device.type == "cpu":
        return torch.from_numpy(np.searchsorted(sorted_values.numpy(), limits.numpy(), side="right"))
    return torch.searchsorted(sorted_values, limits, right=True)


def _cluster_sizes(sorted_values, centroids):
    """Members of each centroid's cluster: the sorted values up to each midpoint go to the lower centroid."""
    cuts = _count_at_most(sorted_values, (centroids[:-1] + centroids[1:]) / 2)
    edges = torch.cat([cuts.new_zeros(1), cuts, cuts.new_full((1,), sorted_values.numel())])
    return edges, edges.diff()


def _lloyd_step(sorted_values, prefix, centroids):
    """One Lloyd update: each centroid moves to the mean of its cluster; empty ones are relocated.

    The mean is a difference of prefix sums, clamped to the cluster's smallest and largest value, which
    rounding in a long prefix sum could otherwise cross (a lone tiny weight after large ones).
    """
    edges, sizes = _cluster_sizes(sorted_values, centroids)
    first, end = edges[:-1], edges[1:]
    means = (prefix[end] - prefix[first]) / sizes.clamp(min=1)
    smallest = sorted_values[first.clamp(max=sorted_values.numel() - 1)]
    largest = sorted_values[(end - 1).clamp(min=0)]
    moved = torch.where(sizes > 0, torch.minimum(torch.maximum(means, smallest), largest), centroids)
    return _relocate_empty(sorted_values, centroids, sizes, moved)


def _relocate_empty(sorted_values, centroids, sizes, moved):
    """Move the centroids of empty clusters to the values farthest from their own centroids, as scikit-learn does.

    With linear initialisation over pruned weights (nothing near zero) the centroids in the gap win no
    members; relocated, they serve the tails, where the large weights that matter most are.
    """
    empty = torch.nonzero(sizes == 0).reshape(-1)
    if empty.numel() == 0:
        return moved
    distance = (sorted_values - torch.repeat_interleave(centroids, sizes)).abs()
    far = distance.topk(min(empty.numel(), distance.numel())).indices
    targets = torch.unique(sorted_values[far[distance[far] > 0]])
    moved = moved.clone()
    moved[empty[:targets.numel()]] = targets
    return moved.sort().values


def _labels(order, sizes):
    """Each value's cluster index, from the sorting permutation and the cluster sizes along the sorted values."""
    labels = torch.empty_like(order)
    labels[order] = torch.repeat_interleave(torch.arange(len(sizes), device=order.device), sizes)
    return labels


def _lloyd(sorted_values, k, init, max_iter, tol, seed):
    """The centroids where Lloyd's iterations from `init` stop (see kmeans_1d)."""
    prefix = torch.cat([sorted_values.new_zeros(1), sorted_values.cumsum(0)])
    threshold = tol * (sorted_values[-1] - sorted_values[0]).item()
    centroids = _initial(sorted_values, k, init, seed)
    for _ in range(max_iter):
        moved = _lloyd_step(sorted_values, prefix, centroids)
        shift = (moved - centroids).abs().max().item()
        centroids = moved
        if shift <= threshold:
            break
    return centroids


def _optimal(sorted_values, k):
    """The centroids of the global minimum of eq. 2, by dynamic programming (Ckmeans.1d.dp through ckwrap)."""
    try:
        import ckwrap
    except ImportError:
        raise ImportError("method='optimal' needs the ckwrap package (Ckmeans.1d.dp, Wang & Song 2011): "
                          "pip install ckwrap") from None
    centers = np.sort(ckwrap.ckmeans(sorted_values.cpu().double().numpy(), k).centers)
    return torch.as_tensor(centers, dtype=sorted_values.dtype, device=sorted_values.device)


def kmeans_1d(values, k, init="linear", max_iter=10_000, tol=0.0, seed=0, method="lloyd", entropy_weight=0.0):
    """Cluster the values into at most k clusters by Lloyd's algorithm (eq. 2); return (centroids, labels).

    `centroids` is a 1-D tensor sorted ascending, on the values' device and in their dtype (float32 for
    non-float input); `labels` is an int64 tensor with one entry per value (flattened) indexing its
    nearest centroid. Iteration stops when no centroid moves more than tol x (max - min of the values),
    or after max_iter updates. The default tol=0 runs to the fixed point, where the assignments stop
    changing (Lloyd's algorithm gets there in finitely many steps; max_iter only bounds them): an early
    stop leaves heavy-tailed weights, whose outer centroids creep out one cluster at a time, far from it.

    Empty clusters: as in scikit-learn, the centroid of a cluster that goes empty moves to the value
    farthest from its own centroid, and Lloyd's iterations go on. At the end, equal centroids (as
    "density" starts on many equal weights) merge and any still without members are dropped, so every
    returned centroid has at least one member and there may be fewer than k. When the values have at most k
    distinct values, those values themselves are the centroids, bit for bit.

    method="optimal" finds the global minimum of eq. 2 instead of Lloyd's local one (exact dynamic programming,
    Ckmeans.1d.dp, O(k n) after the sort; needs the ckwrap package; `init`, `max_iter`, `tol` and `seed` are
    then unused). It is much slower: see `python -m kdlab.bench`.

    entropy_weight=λ > 0 runs entropy-constrained k-means instead (kdlab.entropy_kmeans): each value goes to the
    centroid of least squared error + λ × var(values) × (-log2 of the cluster's share), which makes the clusters
    fewer and more unequal, so their Huffman-coded indices are shorter; the labels are then these assignments,
    not the nearest centroids. Iteration stops when the assignments stop changing (tol is unused).
    """
    _check_k(k)
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(map(repr, METHODS))}, got {method!r}")
    _check_init(init)
    _check_seed(seed)
    if not is_int(max_iter) or max_iter < 1:
        raise ValueError(f"max_iter must be an int >= 1, got {max_iter!r}")
    if not tol >= 0:
        raise ValueError(f"tol must be >= 0, got {tol!r}")
    check_entropy_weight(entropy_weight)
    if entropy_weight and method != "lloyd":
        raise ValueError(f"entropy_weight > 0 needs method='lloyd', got method={method!r}")
    flat = _as_flat(values)
    sorted_values, order = _sort(flat)
    distinct, counts = torch.unique_consecutive(sorted_values, return_counts=True)
    if distinct.numel() <= k:
        return distinct.to(flat.dtype), _labels(order, counts)

    if entropy_weight:
        centroids, sizes = entropy_lloyd(sorted_values, _initial(sorted_values, k, init, seed), entropy_weight,
                                         max_iter, _count_at_most)
        return centroids.to(flat.dtype), _labels(order, sizes)
    centroids = _optimal(sorted_values, k) if method == "optimal" else _lloyd(sorted_values, k, init, max_iter, tol,
                                                                              seed)

    centroids = torch.unique_consecutive(centroids.to(flat.dtype).to(sorted_values.dtype))
    _, sizes = _cluster_sizes(sorted_values, centroids)
    return centroids[sizes > 0].to(flat.dtype), _labels(order, sizes[sizes > 0])
