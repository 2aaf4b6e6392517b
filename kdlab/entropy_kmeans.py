"""Entropy-constrained 1-D k-means (Chou, Lookabaugh & Gray 1989): shorter Huffman codes for a little more error.

Deep Compression Huffman-codes the cluster indices (§4), so an index of cluster j costs about
l_j = -log2 p_j bits (p_j the cluster's share of the weights), not log2 k. Entropy-constrained k-means
minimises distortion plus λ times that rate, the squared error measured in units of the weights' variance σ²:

    J = sum_i (w_i - c_j(i))^2 / σ^2  +  λ sum_i l_j(i)

Each weight goes to the centroid of least (w - c_j)^2 + λ σ^2 l_j; then each centroid moves to its cluster's
mean and each l_j to -log2 of its new share. No step raises J, so the iterations settle; λ = 0 is Lloyd's
algorithm. In one dimension the costs are parabolas of equal curvature, so every cluster is still an interval
of the sorted weights, cut where neighbouring parabolas cross; the cuts move towards the rarer cluster, and a
centroid whose parabola is never the lowest loses its weights and drops out (a cluster that empties is
dropped, where Lloyd's iterations in kdlab.kmeans relocate it: here it would only cost rate). A larger λ gives fewer, more
unequal clusters: a smaller file for a larger error. At the optimum dJ = 0 gives λ ≈ 2 ln 2 × the relative
error at high rates (Gish & Pierce 1968), so λ = 0.01 accepts an error of about 0.7 % of σ².
"""
from __future__ import annotations

import numpy as np
import torch


def _winners(centroids, costs):
    """(the centroids whose cost parabola is lowest somewhere, in order; the x where each next one takes over).

    (x - c_j)^2 + b_j falls below (x - c_i)^2 + b_i, for c_i < c_j, at x > (c_j^2 - c_i^2 + b_j - b_i) / 2(c_j - c_i).
    One pass keeps a stack of the lower envelope: a centroid overtaken before it would take over never wins.
    """
    kept, cuts = [], []
    for j, (c, b) in enumerate(zip(centroids.tolist(), costs.tolist())):
        while kept:
            i = kept[-1]
            ci, bi = centroids[i].item(), costs[i].item()
            x = (c * c - ci * ci + b - bi) / (2 * (c - ci))
            if cuts and x <= cuts[-1]:
                kept.pop()
                cuts.pop()
                continue
            cuts.append(x)
            break
        kept.append(j)
    return torch.tensor(kept, dtype=torch.long), torch.tensor(cuts, dtype=centroids.dtype)


def _edges(sorted_values, cuts, count_at_most):
    """Where each cluster starts along the sorted values, and the end: a value at a cut goes to the lower cluster."""
    n = sorted_values.numel()
    inner = count_at_most(sorted_values, cuts.to(sorted_values.device)).to(sorted_values.device)
    return torch.cat([inner.new_zeros(1), inner, inner.new_full((1,), n)])


def entropy_lloyd(sorted_values, centroids, weight, max_iter, count_at_most):
    """(centroids, cluster sizes along the sorted values) where entropy-constrained Lloyd from `centroids` settles.

    `weight` is λ of the module docstring (> 0); `count_at_most(sorted_values, limits)` counts the values <= each
    limit. Every returned cluster has members; the first assignment is to the nearest centroid.
    """
    n = sorted_values.numel()
    prefix = torch.cat([sorted_values.new_zeros(1), sorted_values.cumsum(0)])
    scale = weight * sorted_values.var(unbiased=False).item()
    edges = _edges(sorted_values, (centroids[:-1] + centroids[1:]).cpu() / 2, count_at_most)
    for _ in range(max_iter):
        sizes = edges.diff()
        live = sizes > 0
        start, end, sizes = edges[:-1][live], edges[1:][live], sizes[live]
        means = (prefix[end] - prefix[start]) / sizes
        centroids = torch.minimum(torch.maximum(means, sorted_values[start]), sorted_values[end - 1])
        lengths = -torch.log2(sizes.to(sorted_values.dtype) / n)
        kept, cuts = _winners(centroids.cpu(), (scale * lengths).cpu())
        moved = _edges(sorted_values, cuts, count_at_most)
        if moved.numel() == edges.numel() and torch.equal(moved, edges):
            break
        centroids, edges = centroids[kept.to(centroids.device)], moved
    sizes = edges.diff()
    return centroids[sizes > 0], sizes[sizes > 0]
