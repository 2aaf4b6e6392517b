import io

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils import prune as torch_prune

import kdlab
from kdlab.codebook import (QuantizedLayer, dequantize_model, finetune_codebook, quantize_model, share_weights,
                            shared_layers)


def _pruned(name="lenet300", sensitivity=1.0, seed=0):
    kdlab.set_seed(seed)
    model = kdlab.build_model(name)
    kdlab.prune_by_std(model, sensitivity)
    return model


def _saved_bytes(model):
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return len(buffer.getvalue())


def _same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("bits", [1, 2, 5])
def test_share_weights_keeps_zeros_and_uses_at_most_2_to_the_bits_values(bits):
    model = _pruned()
    before = {name: m.weight.detach().clone() for name, m in kdlab.prunable_layers(model)}
    share_weights(model, bits)
    assert len(shared_layers(model)) == 3
    for name, module in kdlab.prunable_layers(model):
        weight = module.weight.detach()
        assert torch.equal(weight == 0, before[name] == 0)
        assert weight[weight != 0].unique().numel() <= 2 ** bits
        assert not torch_prune.is_pruned(module)


def test_shared_values_are_the_kmeans_centroids_of_the_survivors():
    model = _pruned()
    layer = model[1]
    survivors = layer.weight.detach()[layer.weight != 0]
    centroids, labels = kdlab.kmeans_1d(survivors, 32, init="density")
    share_weights(model, 5, init="density")
    assert torch.allclose(layer.weight.detach()[layer.weight != 0], centroids[labels], atol=1e-6)
    assert torch.allclose(layer.parametrizations.weight.original.detach(), centroids, atol=1e-6)


def test_bits_per_layer_dict_shares_only_those_layers():
    model = _pruned("lenet5")
    share_weights(model, {"0": 8, "5": 2})
    assert [name for name, _, _ in shared_layers(model)] == ["0", "5"]
    assert model[5].weight.detach().unique().numel() <= 2 ** 2 + 1
    assert not parametrize.is_parametrized(model[2])


@pytest.mark.parametrize("bits, message", [(0, "bits must be an int in 1..15"), (16, "1..15"), (True, "bits"),
                                           ("5", "bits"), ({"9": 4}, "bits must name compressible weights"),
                                           ({"1": 0}, r"bits\['1'\] must be")])
def test_share_weights_bad_bits(bits, message):
    with pytest.raises(ValueError, match=message):
        share_weights(_pruned(), bits)


def test_sharing_twice_is_refused():
    model = share_weights(_pruned(), 4)
    with pytest.raises(ValueError, match="already has shared weights"):
        share_weights(model, 4)


def test_codebook_gradient_is_the_summed_gradient_of_its_members():
    """Paper eq. 3: dL/dC_k = sum_ij dL/dW_ij 1(I_ij = k), over the kept weights only."""
    torch.manual_seed(0)
    layer = nn.Linear(16, 8)
    with torch.no_grad():
        layer.weight[layer.weight.abs() < 0.05] = 0
    share_weights(layer, 2)
    x, target = torch.randn(32, 16), torch.randn(32, 8)

    plain = nn.Linear(16, 8)
    with torch.no_grad():
        plain.weight.copy_(layer.weight)
        plain.bias.copy_(layer.bias)
    nn.functional.mse_loss(plain(x), target).backward()
    nn.functional.mse_loss(layer(x), target).backward()

    shared = layer.parametrizations.weight[0]
    keep = shared.mask.bool()
    expected = torch.zeros(4).index_add_(0, shared.index[keep], plain.weight.grad[keep])
    assert torch.allclose(layer.parametrizations.weight.original.grad, expected, atol=1e-6)


def test_assigning_a_weight_sets_each_centroid_to_its_members_mean():
    layer = share_weights(nn.Linear(4, 4), 1)
    shared = layer.parametrizations.weight[0]
    target = torch.arange(16.0).reshape(4, 4)
    layer.weight = target
    for k in range(2):
        members = target[(shared.index == k) & shared.mask.bool()]
        assert layer.parametrizations.weight.original[k].item() == pytest.approx(members.mean().item())


def test_finetune_codebook_moves_only_the_codebooks(digits):
    train, _ = digits
    kdlab.set_seed(0)
    model = kdlab.build_model("mlp100", in_shape=(1, 8, 8))
    loader = kdlab.make_loader(train, 64, shuffle=True)
    kdlab.fit(model, loader, 3, device="cpu")
    kdlab.prune_by_std(model, 1.0)
    share_weights(model, 2)
    fixed = {k: v.clone() for k, v in model.state_dict().items() if "original" not in k}
    books = [b.detach().clone() for b in kdlab.codebook.codebooks(model)]
    def train_loss():
        logits, labels = kdlab.predict(model, kdlab.make_loader(train, 256), device="cpu")
        return nn.functional.cross_entropy(logits, labels).item()

    loss_before = train_loss()
    finetune_codebook(model, loader, epochs=3, lr=1e-3, device="cpu")
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in fixed.items())
    assert all(not torch.equal(b, a) for b, a in zip(books, kdlab.codebook.codebooks(model)))
    assert train_loss() < loss_before
    assert all(p.requires_grad for p in model.parameters())


def test_finetune_codebook_needs_shared_weights(digits):
    with pytest.raises(ValueError, match="call share_weights"):
        finetune_codebook(kdlab.build_model("mlp30", in_shape=(1, 8, 8)), kdlab.make_loader(digits[0]), 1)


@pytest.mark.parametrize("name", ["lenet300", "lenet5"])
@pytest.mark.parametrize("bits, limit", [(8, 0.30), (4, 0.20)])
def test_quantized_state_dict_is_small(name, bits, limit):
    kdlab.set_seed(0)
    model = kdlab.build_model(name)
    quantized = quantize_model(model, bits)
    assert _saved_bytes(quantized) <= limit * _saved_bytes(model)
    assert all(layer.packed.dtype == torch.uint8 for layer in quantized.modules() if isinstance(layer, QuantizedLayer))


@pytest.mark.parametrize("name", ["lenet300", "lenet5", "resnet10"])
def test_quantized_model_runs_close_to_the_float_model_and_leaves_it_alone(name):
    kdlab.set_seed(0)
    model = kdlab.build_model(name).eval()
    original = {k: v.clone() for k, v in model.state_dict().items()}
    quantized = quantize_model(model).eval()
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        out, ref = quantized(x), model(x)
    assert torch.allclose(out, ref, atol=0.05 * ref.abs().max().item())
    assert all(torch.equal(v, original[k]) for k, v in model.state_dict().items())
    assert not any(isinstance(m, (nn.Linear, nn.Conv2d)) for m in quantized.modules())


@pytest.mark.parametrize("bits", [1, 3, 8, 9])
def test_quantize_of_dequantize_gives_the_same_quantized_model(bits):
    quantized = quantize_model(_pruned("lenet5"), bits)
    again = quantize_model(dequantize_model(quantized), bits)
    assert _same_state(quantized, again)


def test_dequantize_gives_a_plain_network_of_the_same_architecture():
    kdlab.set_seed(0)
    model = kdlab.build_model("lenet5")
    plain = dequantize_model(quantize_model(model, 6))
    assert list(plain.state_dict()) == list(model.state_dict())
    assert not any(isinstance(m, QuantizedLayer) for m in plain.modules())
    for (_, layer), (_, source) in zip(kdlab.prunable_layers(plain), kdlab.prunable_layers(model)):
        assert type(layer) is type(source) and layer.weight.unique().numel() <= 64


def test_pruned_zeros_stay_exact_through_quantization():
    model = _pruned("lenet300", 1.5)
    plain = dequantize_model(quantize_model(model, 3))
    for (_, layer), (_, source) in zip(kdlab.prunable_layers(plain), kdlab.prunable_layers(model)):
        assert torch.equal(layer.weight == 0, source.weight == 0)


def test_a_shared_model_is_quantized_exactly_and_stays_usable():
    model = share_weights(_pruned(), 5).eval()
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        ref = model(x)
        assert torch.equal(quantize_model(model, 6)(x), ref)
        assert torch.equal(dequantize_model(model)(x), ref)
        assert torch.equal(model(x), ref)
    assert len(shared_layers(model)) == 3


@pytest.mark.parametrize("bits, message", [(0, "bits must be an int in 1..16"), (17, "1..16"),
                                           ({"nope": 4}, "bits must name Linear or Conv layers")])
def test_quantize_bad_bits(bits, message):
    with pytest.raises(ValueError, match=message):
        quantize_model(kdlab.build_model("mlp30"), bits)


def test_quantize_refuses_non_zero_padding():
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, padding_mode="reflect"))
    with pytest.raises(ValueError, match="padding_mode"):
        quantize_model(model)


def test_random_initialisation_follows_the_seed():
    def shared(seed):
        return share_weights(_pruned(), 2, init="random", seed=seed)[1].parametrizations.weight.original.detach()

    def quantized(seed):
        return quantize_model(_pruned(), 2, init="random", seed=seed)[1].codebook

    for codebook in (shared, quantized):
        assert torch.equal(codebook(3), codebook(3))
        assert any(not torch.equal(codebook(0), codebook(s)) for s in (1, 2, 3))


class _Recurrent(nn.Module):
    """Embedding, attention and an LSTM: weights quantize_model cannot replace, which share_weights shares."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(50, 16)
        self.attention = nn.MultiheadAttention(16, 2, batch_first=True)
        self.lstm = nn.LSTM(16, 8, batch_first=True)
        self.head = nn.Linear(8, 3)

    def forward(self, tokens):
        x = self.embed(tokens)
        return self.head(self.lstm(self.attention(x, x, x)[0])[0][:, -1])


def test_share_weights_shares_embedding_attention_and_recurrent_weights():
    torch.manual_seed(0)
    model = _Recurrent()
    tokens = torch.randint(0, 50, (3, 6))
    kdlab.prune_by_std(model, 1.0)
    share_weights(model, 3)
    keys = [key for key, _, _ in shared_layers(model)]
    assert keys == ["embed", "attention.in_proj_weight", "attention.out_proj", "lstm.weight_ih_l0",
                    "lstm.weight_hh_l0", "head"]
    assert model.lstm.weight_ih_l0.unique().numel() <= 2 ** 3 + 1 and model.embed.weight.unique().numel() <= 2 ** 3 + 1
    plain = dequantize_model(model)
    assert not any(parametrize.is_parametrized(m) for m in plain.modules())
    assert type(plain.lstm) is nn.LSTM and torch.equal(plain.lstm.weight_ih_l0, model.lstm.weight_ih_l0)
    assert torch.allclose(plain(tokens), model(tokens), atol=1e-6)
    assert parametrize.is_parametrized(model.lstm, "weight_ih_l0")  # the original keeps its codebooks
    model(tokens).sum().backward()
    assert model.lstm.parametrizations.weight_ih_l0.original.grad is not None


def test_quantize_model_names_the_weights_it_leaves_float():
    torch.manual_seed(0)
    model = _Recurrent()
    tokens = torch.randint(0, 50, (3, 6))
    with pytest.warns(kdlab.UncompressedWeightWarning) as caught:
        quantized = quantize_model(model, 4)
    message = str(caught[0].message)
    for key in ("embed", "attention.in_proj_weight", "attention.out_proj", "lstm.weight_ih_l0", "lstm.weight_hh_l0"):
        assert key in message
    assert isinstance(quantized.head, QuantizedLayer) and isinstance(quantized.attention.out_proj, nn.Linear)
    assert quantized(tokens).shape == (3, 3)


@pytest.mark.parametrize("layer, shape", [(nn.Conv1d(4, 6, 3, groups=2), (2, 4, 9)),
                                          (nn.Conv3d(2, 3, 2), (1, 2, 4, 4, 4)),
                                          (nn.Conv2d(6, 6, 3, groups=6, padding=1), (1, 6, 5, 5))])
@pytest.mark.parametrize("scheme", ["kmeans", "linear"])
def test_conv1d_conv3d_and_grouped_convs_are_quantized(layer, shape, scheme):
    torch.manual_seed(0)
    model = nn.Sequential(layer)
    x = torch.randn(shape)
    quantized = quantize_model(model, 8, scheme=scheme)
    assert type(quantized[0]).__name__ in ("QuantizedLayer", "LinearQuantizedLayer")
    plain = dequantize_model(quantized)
    assert type(plain[0]) is type(layer)
    assert torch.allclose(quantized(x), plain(x), atol=1e-5)
    assert torch.allclose(quantized(x), model(x), atol=0.05)


@pytest.mark.parametrize("layer, shape", [(nn.Linear(8, 3), (2, 8)), (nn.Conv2d(1, 2, 3), (2, 1, 5, 5))])
@pytest.mark.parametrize("scheme", ["kmeans", "linear"])
def test_a_bare_layer_is_quantized_whole(layer, shape, scheme):
    torch.manual_seed(0)
    x = torch.randn(shape)
    quantized = quantize_model(layer, 4, scheme=scheme)
    assert type(quantized).__name__ in ("QuantizedLayer", "LinearQuantizedLayer")
    assert type(dequantize_model(quantized)) is type(layer)
    assert torch.allclose(quantized(x), dequantize_model(quantized)(x), atol=1e-5)
