import numpy as np
import pytest
import torch
from torch import nn

import kdlab
from kdlab.lowrank import factorize_linear, low_rank, rank_for_energy


def _linear(in_features=40, out_features=30, seed=0):
    kdlab.set_seed(seed)
    return nn.Linear(in_features, out_features)


def _with_singular_values(values, in_features=40, out_features=30, seed=0):
    """A Linear whose weight is Q1 diag(values) Q2ᵀ with random orthonormal Q1, Q2: known singular values."""
    layer = _linear(in_features, out_features, seed)
    generator = torch.Generator().manual_seed(seed)
    q1, _ = torch.linalg.qr(torch.randn(out_features, len(values), generator=generator, dtype=torch.float64))
    q2, _ = torch.linalg.qr(torch.randn(in_features, len(values), generator=generator, dtype=torch.float64))
    with torch.no_grad():
        layer.weight.copy_(q1 @ torch.diag(torch.as_tensor(values, dtype=torch.float64)) @ q2.T)
    return layer


def _product(pair):
    """The weight U_r (Σ_r V_rᵀ) that a factorised pair applies."""
    return pair[1].weight.detach().double() @ pair[0].weight.detach().double()


def test_full_rank_factorisation_reproduces_the_layer():
    layer = _linear()
    pair = factorize_linear(layer, 30)
    assert pair[0].weight.shape == (30, 40) and pair[0].bias is None and pair[1].weight.shape == (30, 30)
    assert torch.equal(pair[1].bias, layer.bias)
    x = torch.randn(8, 40)
    torch.testing.assert_close(pair(x), layer(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("rank", [1, 5, 17])
def test_factorised_weight_is_torchs_truncated_svd(rank):
    layer = _linear()
    pair = factorize_linear(layer, rank)
    u, s, vh = torch.linalg.svd(layer.weight.detach().double(), full_matrices=False)
    torch.testing.assert_close(_product(pair), u[:, :rank] @ torch.diag(s[:rank]) @ vh[:rank], rtol=0, atol=1e-6)
    first, second = pair[0].weight.detach().double(), pair[1].weight.detach().double()
    torch.testing.assert_close(first.norm(dim=1), s[:rank], rtol=1e-6, atol=0)  # Σ_r V_rᵀ: row i has norm σ_i
    torch.testing.assert_close(second.T @ second, torch.eye(rank, dtype=torch.float64), rtol=0, atol=1e-6)


@pytest.mark.parametrize("rank", [1, 4, 12, 29])
def test_frobenius_error_is_the_dropped_singular_values_eckart_young(rank):
    layer = _linear()
    weight = layer.weight.detach().double()
    sigma = np.linalg.svd(weight.numpy(), compute_uv=False)
    error = torch.linalg.matrix_norm(weight - _product(factorize_linear(layer, rank))).item()
    assert error == pytest.approx(np.sqrt((sigma[rank:] ** 2).sum()), rel=1e-5)


def test_energy_picks_the_smallest_rank_that_keeps_it():
    sigma = np.array([5.0, 3.0, 2.0, 1.0, 0.5, 0.25])
    kept = np.cumsum(sigma ** 2) / (sigma ** 2).sum()
    for energy in [0.1, 0.7, kept[1], 0.9, 0.99, 0.999, 1.0]:
        expected = int(np.argmax(kept >= energy - 1e-12)) + 1
        assert rank_for_energy(sigma, energy) == expected
        assert rank_for_energy(sigma, energy) == 1 or kept[expected - 2] < energy
    layer = _with_singular_values(sigma)
    model = low_rank(nn.Sequential(layer), energy=0.95)
    assert model[0][0].out_features == rank_for_energy(sigma, 0.95) == 3


def test_a_rank_deficient_layer_is_reproduced_at_its_rank():
    layer = _with_singular_values([4.0, 2.0, 1.0])
    model = low_rank(nn.Sequential(layer), energy=0.999999)
    assert model[0][0].out_features == 3
    x = torch.randn(8, 40)
    torch.testing.assert_close(model(x), layer(x), rtol=1e-5, atol=1e-5)


def test_parameter_counts_and_the_classifier_left_whole_when_it_would_grow():
    kdlab.set_seed(0)
    model = kdlab.build_model("lenet300")
    new = low_rank(model, rank=20)
    assert isinstance(new[1], nn.Sequential) and isinstance(new[3], nn.Sequential)
    assert isinstance(new[5], nn.Linear) and torch.equal(new[5].weight, model[5].weight)  # 20 x 110 > 100 x 10
    expected = 20 * (784 + 300) + 300 + 20 * (300 + 100) + 100 + 100 * 10 + 10
    assert kdlab.count_parameters(new) == expected < kdlab.count_parameters(model)
    assert not hasattr(new, "kdlab_architecture") and isinstance(model[1], nn.Linear)


@pytest.mark.parametrize("rank, factorised", [(2, True), (3, False), (4, False), (100, False)])
def test_no_factorisation_unless_it_saves_weights(rank, factorised):
    layer = _linear(6, 6)  # rank r costs 12 r weights against 36: only r < 3 saves
    new = low_rank(nn.Sequential(layer), rank=rank)
    assert isinstance(new[0], nn.Sequential) == factorised
    if not factorised:
        assert torch.equal(new[0].weight, layer.weight)


def test_only_the_chosen_linear_layers_are_factorised_and_convs_are_left():
    kdlab.set_seed(0)
    model = kdlab.build_model("lenet5", in_shape=(1, 8, 8))
    new = low_rank(model, rank=8, layers=["5"])
    assert isinstance(new[5], nn.Sequential) and isinstance(new[7], nn.Linear) and isinstance(new[0], nn.Conv2d)
    assert isinstance(model[5], nn.Linear)
    assert isinstance(low_rank(_linear(), rank=2), nn.Sequential)


def test_a_factorised_model_trains(digits):
    kdlab.set_seed(0)
    model = low_rank(kdlab.build_model("mlp100", in_shape=(1, 8, 8)), rank=16)
    history = kdlab.fit(model, kdlab.make_loader(digits[0], 64, shuffle=True), 3, lr=3e-3, device="cpu")
    assert history[-1]["loss"] < history[0]["loss"]
    assert kdlab.evaluate(model, kdlab.make_loader(digits[1], 256), "cpu") > 0.85


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m: low_rank(m), r"^give exactly one of rank and energy, got rank=None, energy=None"),
        (lambda m: low_rank(m, rank=4, energy=0.9), r"^give exactly one of rank and energy, got rank=4, energy=0\.9"),
        (lambda m: low_rank(m, rank=0), r"^rank must be an int >= 1, got 0"),
        (lambda m: low_rank(m, rank=2.5), r"^rank must be an int >= 1, got 2\.5"),
        (lambda m: low_rank(m, rank=True), r"^rank must be an int >= 1, got True"),
        (lambda m: low_rank(m, energy=0), r"^energy must be in \(0, 1\], got 0"),
        (lambda m: low_rank(m, energy=1.5), r"^energy must be in \(0, 1\], got 1\.5"),
        (lambda m: low_rank(m, energy=float("nan")), r"^energy must be in \(0, 1\], got nan"),
        (lambda m: low_rank(m, energy="0.9"), r"^energy must be in \(0, 1\], got '0\.9'"),
        (lambda m: low_rank(m, rank=4, layers=["0"]), r"^layers must name Linear layers of the model \(5, 7\), got 0"),
        (lambda m: low_rank(m, rank=4, layers="5"), r"^layers must be a list of layer names, got '5'"),
        (lambda m: low_rank("lenet5", rank=4), r"^model must be a torch\.nn\.Module, got str"),
        (lambda m: factorize_linear(m[0], 2), r"^layer must be an nn\.Linear, got Conv2d"),
        (lambda m: factorize_linear(m[7], 11),
         r"^rank must be <= 10 \(the smaller side of a 10 x 500 weight\), got 11"),
        (lambda m: factorize_linear(m[7], 0), r"^rank must be an int >= 1, got 0"),
        (lambda m: rank_for_energy([], 0.9), r"^singular_values must be a non-empty 1-D sequence"),
        (lambda m: rank_for_energy([1.0], 2), r"^energy must be in \(0, 1\], got 2"),
    ],
)
def test_bad_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call(kdlab.build_model("lenet5", in_shape=(1, 8, 8)))
