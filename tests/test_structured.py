import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils import prune as torch_prune
from torchvision.models.resnet import Bottleneck, ResNet

import kdlab
from kdlab.bench_structured import bench_structured
from kdlab.structured import channel_norms, kept_filters, prunable_channels, prune_channels

DIGITS = (1, 8, 8)


def _lenet5(seed=0):
    kdlab.set_seed(seed)
    return kdlab.build_model("lenet5", in_shape=DIGITS).eval()


def _kept(weight, amount):
    """The indices of the filters to keep, computed in NumPy: the largest sums of |w| per output filter."""
    norms = np.abs(weight.detach().numpy()).reshape(len(weight), -1).sum(1)
    keep = max(1, len(norms) - round(amount * len(norms)))
    return np.sort(np.argsort(-norms, kind="stable")[:keep])


def _features(channels, spatial):
    """The flattened feature indices of `channels` when each channel has `spatial` positions."""
    return (channels[:, None] * spatial + np.arange(spatial)).reshape(-1)


def _with_batchnorm():
    """Conv-BN-ReLU-Conv-BN-ReLU-pool-Flatten-Linear-BN-ReLU-Linear with random BatchNorm statistics, in eval mode."""
    kdlab.set_seed(1)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.Conv2d(4, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(8 * 16, 12), nn.BatchNorm1d(12), nn.ReLU(), nn.Linear(12, 10))
    with torch.no_grad():
        for norm in (model[1], model[4], model[9]):
            norm.weight.uniform_(0.5, 2)
            norm.bias.normal_()
            norm.running_mean.normal_()
            norm.running_var.uniform_(0.5, 2)
    return model.eval()


def _zero_channel(layer, following, channels, spatial=1):
    """Zero the output `channels` of `layer` and the matching inputs of `following`: those channels carry nothing."""
    with torch.no_grad():
        layer.weight[channels] = 0
        if layer.bias is not None:
            layer.bias[channels] = 0
        following.weight[:, _features(np.asarray(channels), spatial)] = 0


@pytest.mark.parametrize("amount", [0.25, 0.5, 0.75])
def test_kept_filters_are_the_largest_l1_ones_and_the_next_layer_is_sliced(amount):
    model = _lenet5()
    new = prune_channels(model, amount)
    w = {i: model[i].weight.detach() for i in (0, 2, 5, 7)}
    k0, k2, k5 = _kept(w[0], amount), _kept(w[2], amount), _kept(w[5], amount)
    assert torch.equal(new[0].weight, w[0][k0])
    assert torch.equal(new[0].bias, model[0].bias.detach()[k0])
    assert torch.equal(new[2].weight, w[2][k2][:, k0])
    assert torch.equal(new[5].weight, w[5][k5][:, _features(k2, 4)])  # 50 channels x 2 x 2 positions
    assert torch.equal(new[7].weight, w[7][:, k5]) and torch.equal(new[7].bias, model[7].bias)


def test_the_score_and_count_are_torch_ln_structured_ones():
    kdlab.set_seed(0)
    model = kdlab.build_model("lenet300")
    new = prune_channels(model, 0.3)
    kept = {}
    for i in (1, 3):
        reference = nn.Linear(model[i].in_features, model[i].out_features)
        reference.load_state_dict(model[i].state_dict())
        torch_prune.ln_structured(reference, "weight", amount=0.3, n=1, dim=0)
        kept[i] = torch.nonzero(reference.weight_mask.any(1)).flatten()
    assert len(kept[1]) == 300 - round(0.3 * 300) and len(kept[3]) == 100 - round(0.3 * 100)
    assert torch.equal(new[1].weight, model[1].weight.detach()[kept[1]])
    assert torch.equal(new[3].weight, model[3].weight.detach()[kept[3]][:, kept[1]])


def test_channel_norms_are_the_l1_norm_of_each_filter():
    model = _lenet5()
    norms = channel_norms(model)
    assert list(norms) == ["0", "2", "5"]
    for key, values in norms.items():
        expected = np.abs(model[int(key)].weight.detach().numpy()).reshape(len(values), -1).sum(1)
        np.testing.assert_allclose(values.numpy(), expected, rtol=1e-6)
    assert list(channel_norms(model, layers=["2"])) == ["2"]


@pytest.mark.parametrize("name", ["lenet5", "lenet300", "mlp30", "resnet10"])
def test_amount_zero_gives_the_same_outputs_and_the_input_is_untouched(name):
    kdlab.set_seed(0)
    model = kdlab.build_model(name, in_shape=DIGITS).eval()
    state = {key: value.clone() for key, value in model.state_dict().items()}
    new = prune_channels(model, 0.0)
    x = torch.randn(4, *DIGITS)
    assert torch.equal(new(x), model(x))
    assert all(torch.equal(value, model.state_dict()[key]) for key, value in state.items())
    assert kdlab.count_parameters(new) == kdlab.count_parameters(model) and hasattr(model, "kdlab_architecture")
    assert not hasattr(new, "kdlab_architecture")


def test_removing_zero_channels_leaves_outputs_unchanged_through_batchnorm_and_flatten():
    model = _with_batchnorm()
    _zero_channel(model[0], model[3], [2])
    _zero_channel(model[3], model[8], [1, 6], spatial=16)
    _zero_channel(model[8], model[11], [0, 5, 7])
    new = prune_channels(model, 0.25)  # removes 1 of 4, 2 of 8 and 3 of 12: exactly the zeroed ones
    assert [new[i].weight.shape[0] for i in (0, 3, 8)] == [3, 6, 9]
    assert [new[i].num_features for i in (1, 4, 9)] == [3, 6, 9]
    assert torch.equal(new[4].running_mean, model[4].running_mean[[0, 2, 3, 4, 5, 7]])
    x = torch.randn(16, 1, 8, 8)
    torch.testing.assert_close(new(x), model(x), rtol=0, atol=1e-6)


def test_removing_zero_channels_of_a_lenet5_leaves_outputs_unchanged():
    model = _lenet5()
    _zero_channel(model[0], model[2], list(range(10)))
    _zero_channel(model[2], model[5], list(range(0, 50, 2)), spatial=4)
    _zero_channel(model[5], model[7], list(range(250, 500)))
    new = prune_channels(model, 0.5)
    x = torch.randn(16, *DIGITS)
    torch.testing.assert_close(new(x), model(x), rtol=0, atol=1e-6)


def test_resnet_prunes_only_the_inner_path_of_each_basic_block():
    kdlab.set_seed(0)
    model = kdlab.build_model("resnet10", in_shape=(3, 8, 8)).eval()
    assert list(prunable_channels(model)) == ["layer1.0.conv1", "layer2.0.conv1", "layer3.0.conv1", "layer4.0.conv1"]
    for block in (model.layer1[0], model.layer2[0], model.layer3[0], model.layer4[0]):
        with torch.no_grad():
            block.bn1.running_mean.normal_()
        _zero_channel(block.conv1, block.conv2, list(range(0, block.conv1.out_channels, 2)))
    new = prune_channels(model, 0.5)
    removed = 0
    for old, block in zip((model.layer1[0], model.layer2[0], model.layer3[0], model.layer4[0]),
                          (new.layer1[0], new.layer2[0], new.layer3[0], new.layer4[0])):
        c, k = old.conv1.out_channels, block.conv1.out_channels
        assert k == c // 2 and block.bn1.num_features == k and block.conv2.in_channels == k
        assert block.conv2.out_channels == c and torch.equal(block.bn2.weight, old.bn2.weight)
        removed += (c - k) * (old.conv1.in_channels * 9 + 2 + c * 9)  # conv1 filters, bn1 entries, conv2 inputs
    assert kdlab.count_parameters(model) - kdlab.count_parameters(new) == removed
    assert torch.equal(new.conv1.weight, model.conv1.weight) and torch.equal(new.fc.weight, model.fc.weight)
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(new(x), model(x), rtol=0, atol=1e-5)


@pytest.mark.parametrize("amount", [0.25, 0.5, 0.75])
def test_parameter_counts_shrink_as_computed(amount):
    model = _lenet5()
    new = prune_channels(model, amount)
    c0, c2, f5 = (n - round(amount * n) for n in (20, 50, 500))
    expected = (c0 * 25 + c0) + (c2 * c0 * 25 + c2) + (f5 * c2 * 4 + f5) + (10 * f5 + 10)
    assert kdlab.count_parameters(new) == expected < kdlab.count_parameters(model)


def test_only_the_chosen_layers_are_pruned_and_masks_are_folded_in():
    kdlab.set_seed(0)
    model = kdlab.build_model("lenet300")
    kdlab.prune_by_fraction(model, 0.5, layers=["3"])
    new = prune_channels(model, 0.5, layers=["3"])
    assert new[1].weight.shape == (300, 784) and new[3].weight.shape == (50, 300) and new[5].weight.shape == (10, 50)
    assert not torch_prune.is_pruned(new) and torch_prune.is_pruned(model[3])
    assert torch.equal(new[3].weight, model[3].weight.detach()[_kept(model[3].weight, 0.5)])


def test_kept_filters_keep_order_break_ties_by_index_and_keep_at_least_one():
    assert kept_filters(torch.tensor([1.0, 3.0, 0.5, 2.0]), 0.5).tolist() == [1, 3]
    assert kept_filters(torch.ones(4), 0.5).tolist() == [0, 1]
    assert kept_filters(torch.tensor([1.0, 2.0]), 0.9).tolist() == [1]
    model = nn.Sequential(nn.Linear(4, 2), nn.ReLU(), nn.Linear(2, 3))
    assert prune_channels(model, 0.9)[0].out_features == 1


def test_the_pruned_model_trains(digits):
    kdlab.set_seed(0)
    model = prune_channels(kdlab.build_model("lenet5", in_shape=DIGITS), 0.5)
    history = kdlab.fit(model, kdlab.make_loader(digits[0], 64, shuffle=True), 3, lr=3e-3, device="cpu")
    assert history[-1]["loss"] < history[0]["loss"]
    assert kdlab.evaluate(model, kdlab.make_loader(digits[1], 256), "cpu") > 0.85


def _bottleneck_resnet():
    return ResNet(Bottleneck, [1, 1, 1, 1], num_classes=10)


class _Custom(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m: prune_channels(m, -0.1), r"^amount must be in \[0, 1\), got -0\.1"),
        (lambda m: prune_channels(m, 1), r"^amount must be in \[0, 1\), got 1"),
        (lambda m: prune_channels(m, 1.5), r"^amount must be in \[0, 1\), got 1\.5"),
        (lambda m: prune_channels(m, float("nan")), r"^amount must be in \[0, 1\), got nan"),
        (lambda m: prune_channels(m, True), r"^amount must be in \[0, 1\), got True"),
        (lambda m: prune_channels(m, "0.5"), r"^amount must be in \[0, 1\), got '0\.5'"),
        (lambda m: prune_channels(m, 0.5, layers=["fc9"]), r"^layers must name layers whose channels can be pruned "
                                                           r"\(0, 2, 5; never the classifier\), got fc9"),
        (lambda m: prune_channels(m, 0.5, layers=["7"]), r"^layers must name .*never the classifier\), got 7"),
        (lambda m: prune_channels(m, 0.5, layers="0"), r"^layers must be a list of layer names, got '0'"),
        (lambda m: channel_norms(m, layers=["1"]), r"^layers must name layers whose channels can be pruned"),
        (lambda m: prune_channels(_Custom(), 0.5), r"^model must be an nn\.Sequential .* got _Custom"),
        (lambda m: prune_channels(None, 0.5), r"^model must be an nn\.Sequential .* got NoneType"),
        (lambda m: prune_channels(_bottleneck_resnet(), 0.5), r"^model must be .*Bottleneck blocks are not supported"),
        (lambda m: prune_channels(nn.Sequential(nn.Linear(4, 4), nn.Sequential(nn.Linear(4, 2))), 0.5),
         r"^model must be .*; child 1 holds layers of its own"),
        (lambda m: prune_channels(nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4), nn.Linear(4, 2)), 0.5),
         r"^cannot prune layer 0: LayerNorm 1 between it and layer 2 is not a per-channel module"),
        (lambda m: prune_channels(nn.Sequential(nn.Conv2d(4, 4, 3, groups=2), nn.Conv2d(4, 2, 1)), 0.5),
         r"^layer 0 or 1 is a grouped convolution"),
        (lambda m: prune_channels(nn.Sequential(nn.Conv2d(1, 4, 3), nn.Linear(8, 2)), 0.5),
         r"^cannot prune layer 0: layer 1 takes 8 inputs, not its 4 outputs flattened"),
    ],
)
def test_bad_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call(_lenet5())


def test_bench_structured_measures_on_digits():
    results = bench_structured("digits", epochs=1, retrain_epochs=0, amounts=(0.5,), energies=(0.9,), batch=32,
                               repeats=1)
    row, original = results["prune_channels"][0], results["lenet5"]
    assert row["parameters"] < original["parameters"] and 0 <= row["accuracy"] <= 1 and row["speedup"] > 0
    assert original["retrained_accuracy"] == original["accuracy"] and row["retrained_accuracy"] == row["accuracy"]
    factorised = results["low_rank"][0]
    assert factorised["parameters"] < results["lenet300"]["parameters"] and set(factorised["ranks"]) == {"1", "3", "5"}
    with pytest.raises(ValueError, match=r"^repeats must be an int >= 1, got 0"):
        bench_structured("digits", repeats=0)
    with pytest.raises(ValueError, match=r"^amount must be in \[0, 1\), got 1"):
        bench_structured("digits", amounts=(1,))


def test_bench_structured_retrains_every_network_on_the_same_batches():
    results = bench_structured("digits", epochs=1, retrain_epochs=1, amounts=(0.5,), energies=(1.0,), batch=32,
                               repeats=1)
    unchanged = results["low_rank"][0]
    assert unchanged["unfactorised"] == ["1", "3", "5"] and unchanged["parameters"] == results["lenet300"]["parameters"]
    assert unchanged["retrained_accuracy"] == results["lenet300"]["retrained_accuracy"]
