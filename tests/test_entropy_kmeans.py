import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import kdlab
from kdlab.entropy_kmeans import _winners
from kdlab.kmeans import kmeans_1d


def _pruned_weights(seed=0, n=30_000):
    """The survivors of s = 1.0 pruning on Gaussian weights: two tails, as in a pruned random-init layer."""
    w = np.random.default_rng(seed).normal(0.0, 0.05, n)
    return w[np.abs(w) > 0.05]


def _entropy(labels):
    """Bits per value of the labels' empirical distribution: what a Huffman code of them approaches."""
    p = np.bincount(labels) / len(labels)
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def _costs(x, centroids, labels, weight):
    """(x - c_j)^2 + λ var(x) (-log2 p_j) for every value and centroid, p_j the share of the labels."""
    share = np.bincount(labels, minlength=len(centroids)) / len(x)
    with np.errstate(divide="ignore"):  # an empty cluster of the start costs infinitely many bits
        return (x[:, None] - centroids[None, :]) ** 2 + weight * x.var() * -np.log2(share)[None, :]


def test_a_dominated_centroid_never_wins():
    """The middle parabola sits so high that its neighbours cross below it: it is dropped, the cut is where they meet."""
    kept, cuts = _winners(torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64), torch.tensor([0.0, 5.0, 0.0],
                                                                                           dtype=torch.float64))
    assert kept.tolist() == [0, 2] and cuts.tolist() == [1.0]
    kept, cuts = _winners(torch.tensor([0.0, 1.0], dtype=torch.float64), torch.tensor([0.0, 1.0], dtype=torch.float64))
    assert kept.tolist() == [0, 1] and cuts.tolist() == [1.0]  # (x - 1)^2 + 1 = x^2 at x = 1


@settings(max_examples=40, deadline=None)
@given(arrays(np.float64, st.integers(20, 300), elements=st.floats(-10, 10, allow_subnormal=False)),
       st.integers(2, 12), st.floats(0.001, 0.5))
def test_the_result_is_a_fixed_point_of_both_steps(x, k, weight):
    """Every value's label is its least-cost centroid, by brute force, and every centroid is its cluster's mean.

    (At most k distinct values are their own codebook, as without the weight.)
    """
    assume(len(np.unique(x)) > k)
    centroids, labels = kmeans_1d(x, k, entropy_weight=weight)
    c, lab = centroids.numpy(), labels.numpy()
    assert np.all(np.bincount(lab, minlength=len(c)) > 0)
    costs = _costs(x, c, lab, weight)
    assert np.all(costs[np.arange(len(x)), lab] <= costs.min(1) + 1e-9 * (1 + np.abs(costs.min(1))))
    means = np.bincount(lab, weights=x) / np.bincount(lab)
    np.testing.assert_allclose(c, means, rtol=1e-9, atol=1e-12)


def test_a_vanishing_weight_is_lloyds_algorithm():
    """On weights where no cluster empties (Lloyd relocates empty ones; this drops them) the iterates are Lloyd's."""
    x = np.random.default_rng(0).normal(0.0, 0.05, 20_000)
    lloyd, lloyd_labels = kmeans_1d(x, 8)
    ecsq, ecsq_labels = kmeans_1d(x, 8, entropy_weight=1e-12)
    np.testing.assert_allclose(ecsq.numpy(), lloyd.numpy(), rtol=1e-9)
    assert torch.equal(ecsq_labels, lloyd_labels)


def test_a_larger_weight_trades_error_for_shorter_codes():
    """Along λ the labels' entropy falls and the squared error rises: the rate-distortion trade of eq. J."""
    x = _pruned_weights()
    entropies, errors = [], []
    for weight in (0.0, 0.003, 0.01, 0.03):
        centroids, labels = kmeans_1d(x, 32, entropy_weight=weight)
        entropies.append(_entropy(labels.numpy()))
        errors.append(float(((x - centroids.numpy()[labels.numpy()]) ** 2).mean()))
    assert all(a > b for a, b in zip(entropies, entropies[1:])) and all(a < b for a, b in zip(errors, errors[1:]))
    assert entropies[0] - entropies[2] > 0.5  # at λ = 0.01 half a bit per weight shorter


def test_the_objective_falls_below_the_linear_start():
    """J of the result is at most J of nearest-centroid clusters of the linear start: no step raises it."""
    x, weight = _pruned_weights(seed=1), 0.02
    start = np.linspace(x.min(), x.max(), 16)
    start_labels = np.abs(x[:, None] - start[None, :]).argmin(1)
    centroids, labels = kmeans_1d(x, 16, entropy_weight=weight)

    def objective(c, lab):
        return _costs(x, c, lab, weight)[np.arange(len(x)), lab].sum()

    assert objective(centroids.numpy(), labels.numpy()) < objective(start, start_labels)


def test_shared_model_file_shrinks_and_reloads_exactly(tmp_path):
    torch.manual_seed(0)
    model = kdlab.build_model("lenet300").eval()
    kdlab.prune_by_std(model, 1.0)
    sizes, x = [], torch.rand(4, 1, 28, 28)
    for weight in (0.0, 0.01):
        shared = kdlab.share_weights(kdlab.clone_model(model), 5, entropy_weight=weight)
        kdlab.save_compressed(shared, tmp_path / f"{weight}.kdz")
        sizes.append((tmp_path / f"{weight}.kdz").stat().st_size)
        with torch.no_grad():
            assert torch.equal(kdlab.load_compressed(tmp_path / f"{weight}.kdz").eval()(x), shared(x))
    assert sizes[1] < 0.9 * sizes[0]


@pytest.mark.parametrize("device", ["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
def test_dtype_and_device_are_kept(device):
    x = torch.as_tensor(_pruned_weights(n=3_000), dtype=torch.float32, device=device)
    centroids, labels = kmeans_1d(x, 8, entropy_weight=0.01)
    assert centroids.dtype == torch.float32 and centroids.device.type == device and labels.shape == x.shape
