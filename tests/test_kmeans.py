import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.cluster import KMeans
from threadpoolctl import threadpool_limits

from kdlab.kmeans import init_centroids, kmeans_1d


def _weights(kind, seed=0):
    """Seeded stand-ins for a layer's weights."""
    rng = np.random.default_rng(seed)
    if kind == "normal":
        return rng.normal(0.0, 0.1, 20_000)
    if kind == "bimodal":
        return np.concatenate([rng.normal(-0.2, 0.05, 3_000), rng.normal(0.25, 0.05, 2_000)])
    w = rng.laplace(0.0, 0.05, 60_000)  # "pruned": the surviving weights of a magnitude-pruned layer
    return w[np.abs(w) > 0.03]


def _sklearn(x, start, max_iter=300):
    """scikit-learn's Lloyd from the given centroids; centroids sorted ascending and labels to match.

    One thread: on a busy 2-core machine scikit-learn's OpenMP threads make it many times slower.
    """
    with threadpool_limits(1):
        km = KMeans(len(start), init=np.asarray(start, np.float64).reshape(-1, 1), n_init=1, algorithm="lloyd",
                    tol=0, max_iter=max_iter).fit(x.reshape(-1, 1))
    order = np.argsort(km.cluster_centers_.ravel())
    return km.cluster_centers_.ravel()[order], np.argsort(order)[km.labels_], km.inertia_


SAME_START = [(kind, init, k) for kind, init in [("normal", "density"), ("bimodal", "random"), ("pruned", "density")]
              for k in (2, 4, 16, 32)] + [("normal", "linear", 2), ("normal", "linear", 4), ("bimodal", "linear", 4)]


@pytest.mark.parametrize("kind, init, k", SAME_START)
def test_matches_sklearn_lloyd_from_the_same_start(kind, init, k):
    """Where no cluster goes empty on the way (scikit-learn moves empty centroids, we keep them)."""
    x = _weights(kind, seed=k)
    centroids, labels = kmeans_1d(x, k, init=init, max_iter=300, tol=0, seed=k)
    theirs, their_labels, their_inertia = _sklearn(x, init_centroids(x, k, init, seed=k))
    assert len(centroids) == k and len(np.unique(their_labels)) == k
    span = x.max() - x.min()
    np.testing.assert_allclose(centroids.numpy(), theirs, rtol=1e-5, atol=1e-9 * span)
    assert np.sum(labels.numpy() != their_labels) <= 5
    inertia = np.sum((x - centroids.numpy()[labels.numpy()]) ** 2)
    assert inertia <= their_inertia * (1 + 1e-9)


def test_one_iteration_is_one_lloyd_step_by_brute_force():
    x = _weights("normal")
    start = init_centroids(x, 8, "linear").numpy()
    nearest = np.abs(x[:, None] - start[None, :]).argmin(axis=1)
    means = np.array([x[nearest == j].mean() for j in range(8)])
    centroids, _ = kmeans_1d(x, 8, init="linear", max_iter=1)
    np.testing.assert_allclose(centroids.numpy(), means, rtol=1e-12)
    assert torch.equal(kmeans_1d(x, 8, tol=1.0)[0], centroids)  # no centroid moves more than the range


def test_tol_zero_runs_to_the_fixed_point():
    x = _weights("bimodal")
    centroids, labels = kmeans_1d(x, 16, tol=0, max_iter=10_000)
    nearest = np.abs(x[:, None] - centroids.numpy()[None, :]).argmin(axis=1)
    assert np.array_equal(labels.numpy(), nearest)
    means = [x[nearest == j].mean() for j in range(len(centroids))]
    np.testing.assert_allclose(centroids.numpy(), means, rtol=1e-12)


@pytest.mark.parametrize("k", [1, 2, 5, 32])
def test_linear_init_is_evenly_spaced_from_min_to_max(k):
    x = torch.from_numpy(_weights("pruned")).float()
    start = init_centroids(x, k, "linear")
    assert start.dtype == torch.float32 and start[0] == x.min()
    if k > 1:
        assert start[-1] == x.max()
    expected = np.linspace(x.min().item(), x.max().item(), k)
    np.testing.assert_allclose(start.numpy(), expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("k", [1, 3, 16])
def test_density_init_is_the_quantiles_at_i_plus_half_over_k(k):
    x = _weights("bimodal")
    start = init_centroids(x, k, "density")
    np.testing.assert_allclose(start.numpy(), np.quantile(x, (np.arange(k) + 0.5) / k), rtol=1e-12)


def test_random_init_is_k_distinct_values_reproducible_per_seed():
    x = np.round(_weights("normal"), 2)  # many repeated values
    start = init_centroids(x, 16, "random", seed=3)
    assert len(torch.unique(start)) == 16 and torch.all(start.diff() > 0)
    assert np.isin(start.numpy(), x).all()
    assert torch.equal(start, init_centroids(x, 16, "random", seed=3))
    assert not torch.equal(start, init_centroids(x, 16, "random", seed=4))
    distinct = np.unique(x)
    assert np.array_equal(init_centroids(x, len(distinct), "random").numpy(), distinct)
    with pytest.raises(ValueError, match="k must be"):
        init_centroids(x, len(distinct) + 1, "random")


@pytest.mark.parametrize("k", [3, 4, 256])
def test_at_most_k_distinct_values_are_the_codebook_bit_for_bit(k):
    x = torch.tensor([0.7, -0.3, 0.1, 0.7, 0.1, 0.7], dtype=torch.float32)
    centroids, labels = kmeans_1d(x, k, init="random")
    assert torch.equal(centroids, torch.tensor([-0.3, 0.1, 0.7], dtype=torch.float32))
    assert torch.equal(centroids[labels], x)


def test_one_cluster_is_the_mean():
    x = _weights("pruned")
    centroids, labels = kmeans_1d(x, 1)
    assert centroids.item() == pytest.approx(x.mean(), rel=1e-12)
    assert torch.all(labels == 0)


def test_empty_clusters_are_relocated_and_every_centroid_keeps_members():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(-10, 0.1, 500), rng.normal(10, 0.1, 500)])  # nothing near the middle
    centroids, labels = kmeans_1d(x, 8, init="linear", max_iter=300, tol=0)
    assert len(centroids) == 8
    members = np.bincount(labels.numpy(), minlength=len(centroids))
    assert np.all(members >= 1)
    means = np.array([x[labels.numpy() == j].mean() for j in range(len(centroids))])
    np.testing.assert_allclose(centroids.numpy(), means, rtol=1e-9)
    _, _, their_inertia = _sklearn(x, init_centroids(x, 8, "linear"))
    assert np.sum((x - centroids.numpy()[labels.numpy()]) ** 2) <= their_inertia * (1 + 1e-6)


def test_pruned_weights_linear_init_inertia_no_worse_than_sklearn():
    rng = np.random.default_rng(1)
    w = rng.normal(0, 0.05, 40_000).astype(np.float32)
    x = w[np.abs(w) > 0.03]  # the survivors of pruning: a gap around zero where linear centroids start
    centroids, labels = kmeans_1d(x, 32, init="linear", max_iter=300, tol=0)
    _, _, their_inertia = _sklearn(x, init_centroids(x, 32, "linear"))
    inertia = np.sum((x.astype(np.float64) - centroids.numpy()[labels.numpy()]) ** 2)
    assert inertia <= their_inertia * (1 + 1e-4)


def test_defaults_run_heavy_tailed_weights_to_sklearns_inertia():
    from kdlab.bench import heavy_tailed_weights

    x = heavy_tailed_weights(100_000)  # 1 % of the weights six times wider: the outer centroids creep out slowly
    centroids, labels = kmeans_1d(x, 32)
    _, _, their_inertia = _sklearn(x, init_centroids(x, 32, "linear"))
    inertia = np.sum((x.astype(np.float64) - centroids.numpy()[labels.numpy()]) ** 2)
    assert inertia <= their_inertia * 1.001
    early, early_labels = kmeans_1d(x, 32, max_iter=100, tol=1e-6)  # the old default stop
    assert np.sum((x.astype(np.float64) - early.numpy()[early_labels.numpy()]) ** 2) > their_inertia * 1.01


@settings(max_examples=150, deadline=None)
@given(x=arrays(np.float32, st.integers(1, 60), elements=st.floats(width=32, allow_nan=False, allow_infinity=False)),
       k=st.integers(1, 8), init=st.sampled_from(["linear", "density", "random"]), seed=st.integers(0, 5))
@example(x=np.array([-1, 1, 1.6e-21, 0.5, 0, 0, 0], np.float32), k=4, init="density", seed=0)  # lone tiny weight
@example(x=np.array([4e6, 9, 10, 1, 32, 0, 0, 0, 0], np.float32), k=5, init="density", seed=0)  # equal starts
def test_every_label_is_a_nearest_centroid_and_every_centroid_has_members(x, k, init, seed):
    centroids, labels = kmeans_1d(x, k, init=init, seed=seed)
    c, lab = centroids.numpy().astype(np.float64), labels.numpy()
    assert 1 <= len(c) <= k and np.all(np.diff(c) > 0)
    assert lab.shape == x.shape and np.all(np.bincount(lab, minlength=len(c)) >= 1)
    distance = np.abs(x.astype(np.float64)[:, None] - c[None, :])
    assert np.all(distance[np.arange(len(x)), lab] <= distance.min(axis=1))


def test_dtype_device_and_shape_are_kept():
    w = torch.randn(30, 40, generator=torch.Generator().manual_seed(0), requires_grad=True)
    centroids, labels = kmeans_1d(w, 4)
    assert centroids.dtype == torch.float32 and labels.dtype == torch.int64
    assert labels.shape == (1200,) and centroids.device == w.device
    from_numpy, numpy_labels = kmeans_1d(w.detach().double().numpy(), 4)
    assert from_numpy.dtype == torch.float64 and from_numpy.device.type == "cpu"
    assert torch.equal(numpy_labels, labels)
    np.testing.assert_allclose(from_numpy.numpy(), centroids.numpy(), rtol=1e-6)
    assert kmeans_1d([1, 2, 3, 10, 11], 2)[0].tolist() == [2.0, 10.5]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_runs_on_the_gpu_like_on_the_cpu():
    x = torch.from_numpy(_weights("pruned")).float()
    centroids, labels = kmeans_1d(x.cuda(), 16, tol=0)
    assert centroids.is_cuda and labels.is_cuda
    cpu_centroids, cpu_labels = kmeans_1d(x, 16, tol=0)
    torch.testing.assert_close(centroids.cpu(), cpu_centroids)
    assert (labels.cpu() != cpu_labels).sum() <= 5


@pytest.mark.parametrize("kwargs, name", [
    ({"k": 0}, "k"), ({"k": -1}, "k"), ({"k": 2.5}, "k"), ({"k": True}, "k"),
    ({"init": "kmeans++"}, "init"), ({"max_iter": 0}, "max_iter"), ({"tol": -1}, "tol"),
    ({"values": []}, "values"), ({"values": [0.1, float("nan"), 0.3]}, "values"),
])
def test_bad_arguments_raise_value_errors_naming_them(kwargs, name):
    arguments = {"values": [0.1, 0.2, 0.3], "k": 2, **kwargs}
    with pytest.raises(ValueError, match=rf"^{name} must"):
        kmeans_1d(**arguments)


def _best_partition_inertia(values, k):
    """The least eq. 2 over every split of the sorted values into k contiguous clusters (brute force)."""
    from itertools import combinations

    x = np.sort(values)
    best = np.inf
    for cuts in combinations(range(1, len(x)), k - 1):
        parts = np.split(x, cuts)
        best = min(best, sum(((p - p.mean()) ** 2).sum() for p in parts))
    return best


def _inertia(values, centroids, labels):
    values = torch.as_tensor(values, dtype=torch.float64).reshape(-1)
    return float(((values - centroids.double()[labels]) ** 2).sum())


@settings(max_examples=25, deadline=None)
@given(arrays(np.float64, st.integers(6, 10), elements=st.floats(-10, 10, allow_subnormal=False)),
       st.integers(2, 4))
def test_optimal_method_reaches_the_least_sum_of_squares(values, k):
    centroids, labels = kmeans_1d(values, k, method="optimal")
    got = _inertia(values, centroids, labels)
    assert got <= _best_partition_inertia(values, min(k, len(np.unique(values)))) + 1e-9 * (1 + np.abs(values).max())


def test_optimal_method_beats_lloyd_on_heavy_tailed_weights():
    rng = np.random.default_rng(0)
    w = rng.normal(0.0, 0.05, 20_000)
    w[rng.random(w.size) < 0.01] *= 6
    lloyd = _inertia(w, *kmeans_1d(w, 16))
    optimal = _inertia(w, *kmeans_1d(w, 16, method="optimal"))
    assert optimal < 0.9 * lloyd  # linear starts leave centroids in the sparse tails
    centroids, labels = kmeans_1d(w, 16, method="optimal")
    nearest = (torch.as_tensor(w)[:, None] - centroids[None, :]).abs().argmin(1)
    assert torch.equal(labels, nearest)


def test_unknown_method_is_refused():
    with pytest.raises(ValueError, match="method must be one of 'lloyd', 'optimal'"):
        kmeans_1d([0.0, 1.0, 2.0], 2, method="exact")
