import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

import kdlab
from kdlab.codebook import dequantize_model, quantize_model
from kdlab.linear import LinearQuantizedLayer, activation_qparams, weight_qparams
from kdlab.qat import FakeQuantWeight, InputObserver, input_ranges, prepare_qat, qat_settings


def _train_loss(model, data):
    logits, labels = kdlab.predict(model, kdlab.make_loader(data, 512), device="cpu")
    return F.cross_entropy(logits, labels).item()


@pytest.fixture(scope="module")
def qat_trained(digits):
    """A lenet5 for digits prepared for 8-bit per-channel QAT, its train loss before, and the model after 1 epoch."""
    train, _ = digits
    kdlab.set_seed(0)
    model = prepare_qat(kdlab.build_model("lenet5", in_shape=(1, 8, 8)))
    before = _train_loss(model, train)
    kdlab.fit(model, kdlab.make_loader(train, 64, shuffle=True), 1, device="cpu")
    return model.eval(), before


def test_prepare_qat_returns_a_fake_quantized_copy_and_leaves_the_model_alone():
    kdlab.set_seed(0)
    model = kdlab.build_model("lenet5", in_shape=(1, 8, 8))
    original = {k: v.clone() for k, v in model.state_dict().items()}
    qat = prepare_qat(model, bits=4)
    assert all(torch.equal(v, original[k]) for k, v in model.state_dict().items())
    assert not any(parametrize.is_parametrized(m) for m in model.modules())
    for name, layer in kdlab.prunable_layers(qat):
        assert isinstance(layer.parametrizations.weight[0], FakeQuantWeight)
        assert isinstance(layer.input_observer, InputObserver)
        assert torch.equal(layer.parametrizations.weight.original, original[f"{name}.weight"])
        assert max(row.unique().numel() for row in layer.weight.detach()) <= 2 ** 4 - 1


def test_observers_start_empty_and_follow_a_moving_average_of_min_and_max():
    layer = prepare_qat(nn.Linear(4, 2))
    x = torch.randn(10, 4)
    assert input_ranges(layer) == {} and torch.equal(layer.eval()(x), F.linear(x, layer.weight, layer.bias))
    layer.train()
    layer(x)
    assert input_ranges(layer) == {"": pytest.approx((x.min().item(), x.max().item()))}
    layer(3 * x)
    low, high = input_ranges(layer)[""]
    assert low == pytest.approx(x.min().item() * (1 + 2 * 0.01)) and high == pytest.approx(x.max().item() * 1.02)
    layer.eval()(10 * x)
    assert input_ranges(layer)[""] == (low, high)


@pytest.mark.parametrize("per_channel", [True, False])
def test_the_gradient_passes_straight_through_inside_the_range(per_channel):
    """STE: dL/dW = dL/dW_q for the weights (all inside their range), dL/dx = dL/dx_q inside the range, 0 outside."""
    torch.manual_seed(0)
    layer = prepare_qat(nn.Linear(6, 3), bits=4, per_channel=per_channel)
    layer.train()(torch.linspace(-1, 1, 12).reshape(2, 6))
    layer.eval()
    x = (torch.randn(5, 6) * 0.8).requires_grad_()
    upstream = torch.randn(5, 3)
    (layer(x) * upstream).sum().backward()

    scale, zero_point = activation_qparams(*input_ranges(layer)[""])
    x_q = torch.fake_quantize_per_tensor_affine(x.detach(), scale, zero_point, 0, 255)
    w_q = layer.weight.detach()
    q = torch.round(x.detach() / scale) + zero_point
    inside = (q >= 0) & (q <= 255)
    assert not inside.all() and inside.any()
    assert torch.allclose(layer.parametrizations.weight.original.grad, upstream.T @ x_q, atol=1e-6)
    assert torch.allclose(x.grad, (upstream @ w_q) * inside, atol=1e-6)
    assert torch.allclose(layer.bias.grad, upstream.sum(0))


def test_fake_quantized_weight_is_the_affine_round_trip():
    w = torch.randn(8, 3, 3, 3, generator=torch.Generator().manual_seed(0))
    scale, zero_point, qmin, qmax = weight_qparams(w, 3)
    expected = (torch.round(w / scale.reshape(-1, 1, 1, 1)).clamp(qmin, qmax)) * scale.reshape(-1, 1, 1, 1)
    assert torch.allclose(FakeQuantWeight(3)(w), expected, atol=1e-6)


def test_a_qat_model_trains_with_fit(qat_trained, digits):
    model, before = qat_trained
    assert _train_loss(model, digits[0]) < 0.5 * before
    assert set(input_ranges(model)) == {"0", "2", "5", "7"}
    assert all(low <= 0 <= high for low, high in input_ranges(model).values())


def test_quantize_model_of_a_qat_model_gives_its_outputs(qat_trained, digits):
    model, _ = qat_trained
    quantized = quantize_model(model, 8, scheme="linear")
    assert all(isinstance(quantized.get_submodule(name), LinearQuantizedLayer) for name in ("0", "2", "5", "7"))
    assert all(quantized.get_submodule(name).input_scale is not None for name in ("0", "2", "5", "7"))
    x = digits[1].images[:200]
    with torch.no_grad():
        ref = model(x)
        assert torch.allclose(quantized(x), ref, atol=1e-4 * ref.abs().max().item())
        assert torch.equal(model(x), ref)


@pytest.mark.parametrize("bits, per_channel", [(4, False), (3, True)])
def test_low_bit_qat_converts_to_the_same_outputs(digits, bits, per_channel):
    train, test = digits
    kdlab.set_seed(1)
    model = prepare_qat(kdlab.build_model("mlp100", in_shape=(1, 8, 8)), bits, per_channel)
    kdlab.fit(model, kdlab.make_loader(train, 128, shuffle=True), 1, device="cpu")
    quantized = quantize_model(model.eval(), bits, scheme="linear", per_channel=per_channel)
    with torch.no_grad():
        ref = model(test.images)
        assert torch.allclose(quantized(test.images), ref, atol=1e-4 * ref.abs().max().item())


def test_dequantize_model_of_a_qat_model_gives_plain_layers_with_the_quantized_weights(qat_trained):
    model, _ = qat_trained
    plain = dequantize_model(model)
    assert not any(parametrize.is_parametrized(m) or isinstance(m, InputObserver) for m in plain.modules())
    assert [type(m) for m in plain] == [nn.Conv2d, nn.MaxPool2d, nn.Conv2d, nn.MaxPool2d, nn.Flatten, nn.Linear,
                                        nn.ReLU, nn.Linear]
    for (_, layer), (_, source) in zip(kdlab.prunable_layers(plain), kdlab.prunable_layers(model)):
        assert torch.equal(layer.weight, source.weight)


def test_distill_model_trains_a_qat_student(digits):
    train, _ = digits
    student = prepare_qat(kdlab.build_model("mlp30", in_shape=(1, 8, 8)))
    kd = kdlab.DistillModel(train, teacher="mlp30", student=student, device="cpu")
    kd.train(1)
    assert input_ranges(kd.student).keys() == {"1", "3"}


def test_a_pruned_model_is_prepared_with_its_masks_folded_in():
    kdlab.set_seed(0)
    model = kdlab.build_model("mlp100", in_shape=(1, 8, 8))
    kdlab.prune_by_std(model, 1.0)
    qat = prepare_qat(model)
    assert (qat[1].weight[model[1].weight == 0] == 0).all()


def test_a_qat_model_is_quantized_only_as_it_trained():
    model = prepare_qat(kdlab.build_model("mlp30", in_shape=(1, 8, 8)), bits=4, per_channel=False)
    assert qat_settings(model) == {"1": (4, False), "3": (4, False)}
    for kwargs, message in [({"bits": 8, "per_channel": False}, r"^bits and per_channel must be those layer '1' "
                                                                r"trained with in QAT \(4, False\), got \(8, False\)"),
                            ({"bits": 4}, r"got \(4, True\)"),
                            ({"bits": {"3": 2}, "per_channel": False}, r"layer '3' .* got \(2, False\)"),
                            ({"bits": 4, "scheme": "log", "per_channel": False}, r"^scheme must be 'linear' for a "
                                                                                 r"model prepared for QAT, got 'log'")]:
        with pytest.raises(ValueError, match=message):
            quantize_model(model, scheme=kwargs.pop("scheme", "linear"), **kwargs)
    with pytest.raises(ValueError, match=r"^scheme must be 'linear' for a model prepared for QAT, got 'kmeans'"):
        quantize_model(model, 4)
    quantize_model(model, 4, scheme="linear", per_channel=False)
    quantize_model(model, {"1": 4}, scheme="linear", per_channel=False)
    quantize_model(dequantize_model(model), 8)


@pytest.mark.parametrize("call, message", [
    (lambda: prepare_qat(nn.Linear(2, 2), 1), r"^bits must be an int in 2\.\.8, got 1"),
    (lambda: prepare_qat(nn.Linear(2, 2), 16), r"^bits must be an int in 2\.\.8, got 16"),
    (lambda: prepare_qat(nn.Linear(2, 2), 4.0), r"^bits must be an int in 2\.\.8, got 4\.0"),
    (lambda: prepare_qat(nn.Linear(2, 2), per_channel="yes"), r"^per_channel must be True or False, got 'yes'"),
    (lambda: prepare_qat("lenet5"), r"^model must be a torch\.nn\.Module, got str"),
    (lambda: prepare_qat(prepare_qat(nn.Linear(2, 2))), r"^model is already prepared for QAT"),
])
def test_bad_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call()
