import pytest
import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

import kdlab
from kdlab.prune import (iterative_prune, l1_penalty, prunable_layers, prune_by_fraction, prune_by_std,
                         remove_masks, sparsity)


def _model(seed=0):
    kdlab.set_seed(seed)
    return kdlab.build_model("lenet300")


def test_std_threshold_is_sensitivity_times_each_layers_std():
    model = _model()
    originals = {name: m.weight.detach().clone() for name, m in prunable_layers(model)}
    thresholds = prune_by_std(model, 0.5)
    for name, module in prunable_layers(model):
        w = originals[name]
        assert thresholds[name] == pytest.approx(0.5 * w.std().item())
        expected = torch.where(w.abs() >= thresholds[name], w, torch.zeros_like(w))
        assert torch.equal(module.weight, expected)
        assert torch_prune.is_pruned(module)


def test_pruned_weights_stay_zero_while_retraining(digits):
    kdlab.set_seed(0)
    model = kdlab.build_model("mlp100", in_shape=(1, 8, 8))
    prune_by_std(model, 1.0)
    zeros = [(m.weight == 0).clone() for _, m in prunable_layers(model)]
    kdlab.fit(model, kdlab.make_loader(digits[0], 64, shuffle=True), 2, device="cpu")
    for mask, (_, module) in zip(zeros, prunable_layers(model)):
        assert torch.all(module.weight[mask] == 0)
        assert torch.any(module.weight[~mask] != 0)


def test_pruning_again_takes_the_std_with_zeros_and_only_adds_zeros():
    model = _model()
    prune_by_std(model, 0.5)
    before = [m.weight.detach().clone() for _, m in prunable_layers(model)]
    thresholds = prune_by_std(model, 1.0)
    for weight, (name, module) in zip(before, prunable_layers(model)):
        assert thresholds[name] == pytest.approx(weight.std().item())
        assert torch.all(module.weight[weight == 0] == 0)
        assert torch.count_nonzero(module.weight) < torch.count_nonzero(weight)


def test_prune_by_fraction_matches_torch_l1_unstructured():
    model, reference = _model(), _model()
    prune_by_fraction(model, 0.7)
    for (_, m), (_, r) in zip(prunable_layers(model), prunable_layers(reference)):
        torch_prune.l1_unstructured(r, "weight", amount=0.7)
        assert torch.equal(m.weight, r.weight)
    total = sparsity(model)[-1]
    assert total["kept"] == pytest.approx(0.3, abs=1e-3)


def test_sparsity_report_counts_and_layers_filter():
    model = _model()
    prune_by_fraction(model, 0.5, layers=["1"])
    rows = {r["layer"]: r for r in sparsity(model)}
    assert rows["1"]["weights"] == 784 * 300 and rows["1"]["nonzero"] == 784 * 300 // 2
    assert rows["3"]["kept"] == 1.0
    assert rows["total"]["weights"] == 784 * 300 + 300 * 100 + 100 * 10


def test_l1_penalty_is_the_sum_of_absolute_weights_and_has_sign_gradients():
    model = _model()
    penalty = l1_penalty(model)
    assert penalty.item() == pytest.approx(sum(m.weight.abs().sum().item() for _, m in prunable_layers(model)))
    penalty.backward()
    first = prunable_layers(model)[0][1].weight
    assert torch.equal(first.grad, torch.sign(first.detach()))


def test_iterative_prune_raises_sparsity_step_by_step(digits):
    kdlab.set_seed(0)
    model = kdlab.build_model("mlp100", in_shape=(1, 8, 8))
    history = iterative_prune(model, kdlab.make_loader(digits[0], 64, shuffle=True), [0.5, 1.0, 1.5], epochs=3,
                              lr=3e-3, device="cpu")
    kept = [h["kept"] for h in history]
    assert kept == sorted(kept, reverse=True) and kept[-1] < 0.5
    assert kdlab.evaluate(model, kdlab.make_loader(digits[1], 128), "cpu") > 0.8


def test_remove_masks_keeps_the_zeros_as_plain_parameters():
    model = _model()
    prune_by_std(model, 1.0)
    expected = [m.weight.detach().clone() for _, m in prunable_layers(model)]
    remove_masks(model)
    for w, (_, m) in zip(expected, prunable_layers(model)):
        assert not torch_prune.is_pruned(m) and isinstance(m.weight, torch.nn.Parameter)
        assert torch.equal(m.weight, w)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m: prune_by_std(m, -1), "sensitivity must be >= 0"),
        (lambda m: prune_by_fraction(m, 1.5), r"amount must be in \[0, 1\]"),
        (lambda m: prune_by_std(m, 1, layers=["fc9"]), "layers must name compressible weights"),
    ],
)
def test_bad_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call(_model())


def test_clone_model_copies_a_pruned_model_independently():
    model = _model()
    prune_by_std(model, 1.0)
    copied = kdlab.clone_model(model)
    for (_, a), (_, b) in zip(prunable_layers(model), prunable_layers(copied)):
        assert torch.equal(a.weight, b.weight) and torch_prune.is_pruned(b)
        with torch.no_grad():
            b.weight_orig.add_(1.0)
    x = torch.randn(2, 1, 28, 28)
    assert not torch.equal(model(x), copied(x))
    assert torch.equal(copied[1].weight[model[1].weight_mask == 0], torch.zeros(int((model[1].weight_mask == 0).sum())))


def test_pruning_right_after_training_reads_the_current_weights(digits):
    """torch's pruned `weight` is refreshed only by a forward pass; the thresholds must not use a stale one."""
    kdlab.set_seed(0)
    model = kdlab.build_model("mlp100", in_shape=(1, 8, 8))
    prune_by_std(model, 0.5)
    kdlab.fit(model, kdlab.make_loader(digits[0], 64, shuffle=True), 1, device="cpu")
    current = [(m.weight_orig * m.weight_mask).detach().clone() for _, m in prunable_layers(model)]
    assert any(not torch.equal(c, m.weight) for c, (_, m) in zip(current, prunable_layers(model)))
    rows = sparsity(model)
    thresholds = prune_by_std(model, 1.0)
    for weight, row, (name, module) in zip(current, rows, prunable_layers(model)):
        assert row["nonzero"] == int(torch.count_nonzero(weight))
        assert thresholds[name] == pytest.approx(weight.std().item())
        assert torch.equal(module.weight_mask.bool(), (weight.abs() >= thresholds[name]) & (weight != 0))


@pytest.mark.parametrize("prune_fn", [lambda m: prune_by_std(m, 1.0), lambda m: prune_by_fraction(m, 0.5)])
def test_a_nan_weight_is_refused_before_any_layer_is_pruned(prune_fn):
    model = _model()
    with torch.no_grad():
        model[5].weight[3, 7] = float("nan")  # the last layer: the earlier ones would be pruned first
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=r"^model must have finite weights to be pruned: layer 5 has 1 NaN"):
        prune_fn(model)
    assert not any(torch_prune.is_pruned(m) for _, m in prunable_layers(model))
    after = model.state_dict()  # nothing changed: the same tensors, the NaN where it was
    assert before.keys() == after.keys()
    assert all(torch.allclose(before[k], after[k], rtol=0, atol=0, equal_nan=True) for k in before)


def test_embedding_attention_and_recurrent_weights_are_pruned_by_std():
    torch.manual_seed(0)
    model = nn.ModuleDict({"embed": nn.Embedding(40, 8), "attention": nn.MultiheadAttention(8, 2),
                           "gru": nn.GRU(8, 4, num_layers=2), "conv": nn.Conv1d(4, 4, 3, groups=4)})
    thresholds = prune_by_std(model, 1.0)
    assert list(thresholds) == ["embed", "attention.in_proj_weight", "attention.out_proj", "gru.weight_ih_l0",
                                "gru.weight_hh_l0", "gru.weight_ih_l1", "gru.weight_hh_l1", "conv"]
    rows = {row["layer"]: row for row in sparsity(model)}
    assert 0.2 < rows["gru.weight_hh_l1"]["kept"] < 0.5 and 0.2 < rows["embed"]["kept"] < 0.5
    x = torch.randn(5, 2, 8)
    model["gru"](x)  # the pruned weights reach the recurrent kernel
    assert torch.count_nonzero(model["gru"].weight_ih_l1) == rows["gru.weight_ih_l1"]["nonzero"]
    remove_masks(model)
    assert not hasattr(model["gru"], "weight_ih_l0_orig") and torch.count_nonzero(model["embed"].weight) == \
        rows["embed"]["nonzero"]


def test_a_nan_in_an_lstm_is_refused_before_anything_is_pruned():
    model = nn.ModuleDict({"fc": nn.Linear(4, 4), "lstm": nn.LSTM(4, 4)})
    with torch.no_grad():
        model["lstm"].weight_hh_l0[1, 2] = float("nan")
    with pytest.raises(ValueError, match=r"layer lstm\.weight_hh_l0 has 1 NaN"):
        prune_by_std(model, 1.0)
    assert not hasattr(model["fc"], "weight_mask")
