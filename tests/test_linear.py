import io

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import kdlab
from kdlab.bench_quant import bench_ptq
from kdlab.codebook import QuantizedLayer, dequantize_model, quantize_model
from kdlab.linear import (LinearQuantizedLayer, affine_qparams, calibrate, dequantize_affine, log_dequantize,
                          log_quantize, quantize_affine, weight_qparams)

DEPRECATED_QTENSORS = pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor:UserWarning")


def _saved_bytes(model):
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return len(buffer.getvalue())


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 30), nn.ReLU(), nn.Linear(30, 10)).eval()


@pytest.fixture(scope="module")
def trained(digits):
    """lenet5 trained 2 epochs on digits, and the digits test loader."""
    train, test = digits
    kdlab.set_seed(0)
    model = kdlab.build_model("lenet5", in_shape=(1, 8, 8))
    kdlab.fit(model, kdlab.make_loader(train, 64, shuffle=True), 2, device="cpu")
    return model.eval(), kdlab.make_loader(test, 256)


def test_affine_formula_by_hand():
    """Per tensor, 8 bits over [-1, 2]: S = 3/255, Z = -128 - round(-1/S) = -128 + 85 = -43."""
    r = torch.tensor([-1.0, 0.0, 0.25, 2.0])
    scale, zero_point, qmin, qmax = weight_qparams(r, 8, per_channel=False)
    assert scale.item() == pytest.approx(3 / 255) and zero_point.item() == -43 and (qmin, qmax) == (-128, 127)
    q = quantize_affine(r, scale, zero_point, qmin, qmax)
    assert q.dtype == torch.int8 and q.tolist() == [-128, -43, -22, 127]  # 0.25 / S = 21.25 -> 21, + Z
    assert dequantize_affine(q, scale, zero_point).tolist() == pytest.approx([-1.0, 0.0, 21 * 3 / 255, 2.0])


def test_symmetric_per_channel_formula_by_hand():
    """Per output channel, 8 bits: S_c = max|W_c| / 127, Z = 0."""
    w = torch.tensor([[0.25, -1.0], [0.03, -0.01]])
    scale, zero_point, qmin, qmax = weight_qparams(w, 8)
    assert scale.tolist() == pytest.approx([1 / 127, 0.03 / 127]) and zero_point.tolist() == [0, 0]
    assert (qmin, qmax) == (-127, 127)
    assert quantize_affine(w, scale, zero_point, qmin, qmax).tolist() == [[32, -127], [127, -42]]


@DEPRECATED_QTENSORS
@pytest.mark.parametrize("per_channel", [True, False])
def test_8_bit_integers_and_values_are_pytorchs(per_channel):
    g = torch.Generator().manual_seed(0)
    w = torch.randn(50, 20, 5, 5, generator=g) * torch.rand(50, 1, 1, 1, generator=g)
    scale, zero_point, qmin, qmax = weight_qparams(w, 8, per_channel)
    q = quantize_affine(w, scale, zero_point, qmin, qmax)
    if per_channel:
        reference = torch.quantize_per_channel(w, scale, zero_point, 0, torch.qint8)
    else:
        reference = torch.quantize_per_tensor(w, scale.item(), zero_point.item(), torch.qint8)
    assert torch.equal(q, reference.int_repr())
    assert torch.equal(dequantize_affine(q, scale, zero_point), reference.dequantize())


@pytest.mark.parametrize("bits", [2, 3, 4, 6, 8])
@pytest.mark.parametrize("per_channel", [True, False])
def test_dequantized_values_are_pytorchs_fake_quantization(bits, per_channel):
    w = torch.randn(30, 64, generator=torch.Generator().manual_seed(bits))
    scale, zero_point, qmin, qmax = weight_qparams(w, bits, per_channel)
    ours = dequantize_affine(quantize_affine(w, scale, zero_point, qmin, qmax), scale, zero_point)
    if per_channel:
        reference = torch.fake_quantize_per_channel_affine(w, scale, zero_point, 0, qmin, qmax)
    else:
        reference = torch.fake_quantize_per_tensor_affine(w, scale, zero_point, qmin, qmax)
    assert torch.equal(ours, reference)
    assert quantize_affine(w, scale, zero_point, qmin, qmax).unique().numel() <= 2 ** bits


weights = st.integers(1, 6).flatmap(lambda rows: st.integers(1, 12).flatmap(lambda cols: st.lists(
    st.floats(-1e3, 1e3, width=32).map(lambda v: 0.0 if abs(v) < 1e-6 else v),
    min_size=rows * cols, max_size=rows * cols).map(lambda values: torch.tensor(values).reshape(rows, cols))))


@settings(max_examples=150, deadline=None)
@given(weights, st.integers(2, 8), st.booleans())
def test_round_trip_error_is_at_most_half_a_step(w, bits, per_channel):
    """|S (q - Z) - r| <= S / 2 for every weight: the range holds every weight, so nothing is clipped."""
    scale, zero_point, qmin, qmax = weight_qparams(w, bits, per_channel)
    error = (dequantize_affine(quantize_affine(w, scale, zero_point, qmin, qmax), scale, zero_point) - w).abs()
    step = scale.reshape(-1, 1) if per_channel else scale
    assert (error <= step / 2 * (1 + 1e-4) + 1e-6 * w.abs()).all()


def test_per_channel_beats_per_tensor_on_channels_of_very_different_ranges():
    layer = nn.Linear(64, 4)
    with torch.no_grad():
        layer.weight.mul_(torch.tensor([[1e-3], [1e-2], [1.0], [10.0]]))
    errors = {}
    for per_channel in (True, False):
        decoded = LinearQuantizedLayer(layer, 8, per_channel=per_channel).decoded_weight()
        errors[per_channel] = ((decoded - layer.weight) / layer.weight.abs().amax(1, keepdim=True)).abs().amax(1)
    assert (errors[True] < 0.005).all()
    assert (errors[False][:2] > 0.5).all() and (errors[False][:3] > 5 * errors[True][:3]).all()


def test_affine_qparams_widen_the_range_to_hold_zero():
    scale, zero_point = affine_qparams(2.0, 4.0, 0, 255)
    assert scale.item() == pytest.approx(4 / 255) and zero_point.item() == 0
    scale, zero_point = affine_qparams(0.0, 0.0, 0, 255)
    assert scale.item() == 1 and zero_point.item() == 0


def _inputs_of_layers(model, x):
    """The inputs of layers "1" and "3" of the _mlp, computed by hand."""
    hidden = model[1](x.flatten(1)).relu()
    return {"1": x.flatten(1).numpy(), "3": hidden.detach().numpy()}


def test_minmax_calibration_is_numpys_min_and_max_in_every_input_form():
    model = _mlp()
    x = torch.randn(600, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    expected = {name: (v.min(), v.max()) for name, v in _inputs_of_layers(model, x).items()}
    data = kdlab.ArrayDataset(x, torch.zeros(600, dtype=torch.long), 10)
    for form in (x, data, kdlab.make_loader(data, 100)):
        ranges = calibrate(model, form)
        assert list(ranges) == ["1", "3"]
        for name, (low, high) in ranges.items():
            assert (low, high) == pytest.approx(expected[name], rel=1e-6)
    assert not model.training


@pytest.mark.parametrize("observer, p", [("percentile", 99.99), (99.0, 99.0), (90, 90.0)])
def test_percentile_calibration_is_numpys_percentile(observer, p):
    model = _mlp().train()
    x = torch.randn(500, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    ranges = calibrate(model, x, observer)
    for name, values in _inputs_of_layers(model, x).items():
        assert ranges[name] == pytest.approx(tuple(np.percentile(values.astype(np.float64), [100 - p, p])), rel=1e-5)
    assert model.training


@pytest.mark.parametrize("name", ["lenet5", "lenet300"])
@pytest.mark.parametrize("scheme", ["linear", "log"])
@pytest.mark.parametrize("bits", [2, 4, 8])
def test_state_dict_holds_bits_per_weight_under_30_percent_of_float32(name, scheme, bits):
    kdlab.set_seed(0)
    model = kdlab.build_model(name)
    quantized = quantize_model(model, bits, scheme=scheme, calibration_data=torch.randn(8, 1, 28, 28))
    weights = sum(layer.weight.numel() for _, layer in kdlab.prunable_layers(model))
    packed = sum(m.weight_packed.numel() for m in quantized.modules() if isinstance(m, LinearQuantizedLayer))
    assert packed == sum(-(-layer.weight.numel() * bits // 8) for _, layer in kdlab.prunable_layers(model))
    assert _saved_bytes(quantized) < 0.30 * _saved_bytes(model)
    assert _saved_bytes(quantized) - packed < _saved_bytes(model) - 4 * weights + 16384  # scales, zero points, keys
    layers = [m for m in quantized.modules() if isinstance(m, LinearQuantizedLayer)]
    assert len(layers) == len(kdlab.prunable_layers(model))
    assert all(layer.weight_q.dtype == torch.int8 and layer.input_scale is not None for layer in layers)


def test_log_formula_by_hand():
    """3 bits per tensor: e_max = round(log2 1) = 0, e_min = 0 - (4 - 2) = -2; below 2^-2 rounds to 0."""
    r = torch.tensor([0.3, -0.2, -0.1, 0.0, 1.0, 0.72])  # 0.72: nearer 0.5, but log2 0.72 = -0.47 rounds to 0
    codes, offset = log_quantize(r, 3, per_channel=False)
    assert codes.dtype == torch.int8 and offset.item() == -3
    assert codes.tolist() == [1, -1, 0, 0, 3, 3]
    assert log_dequantize(codes, offset).tolist() == [0.25, -0.25, 0.0, 0.0, 1.0, 1.0]


@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("per_channel", [True, False])
def test_log_weights_are_signed_powers_of_two_and_zeros_stay_zero(bits, per_channel):
    kdlab.set_seed(0)
    model = kdlab.build_model("lenet300")
    kdlab.prune_by_std(model, 1.0)
    plain = dequantize_model(quantize_model(model, bits, scheme="log", per_channel=per_channel))
    for (_, layer), (_, source) in zip(kdlab.prunable_layers(plain), kdlab.prunable_layers(model)):
        w = layer.weight.detach()
        mantissa, _ = torch.frexp(w[w != 0])
        assert torch.equal(mantissa.abs(), torch.full_like(mantissa, 0.5))
        assert torch.equal(torch.sign(w[w != 0]), torch.sign(source.weight.detach()[w != 0]))
        assert (w[source.weight == 0] == 0).all()
        groups = list(w) if per_channel else [w]
        assert max(torch.frexp(g[g != 0])[1].unique().numel() for g in groups) <= 2 ** (bits - 1) - 1


def test_log_exponents_round_in_the_log_domain():
    w = torch.rand(20, 50, generator=torch.Generator().manual_seed(0)) * 2 - 1
    decoded = log_dequantize(*log_quantize(w, 8))
    kept = decoded != 0
    assert torch.equal(torch.log2(decoded[kept].abs()), torch.round(torch.log2(w[kept].abs())))


@pytest.mark.parametrize("scheme, per_channel, agree", [("linear", True, 0.99), ("linear", False, 0.99),
                                                        ("log", True, 0.8)])
def test_ptq_keeps_the_predictions_of_the_trained_model(trained, digits, scheme, per_channel, agree):
    model, test = trained
    quantized = quantize_model(model, 8, scheme=scheme, per_channel=per_channel, calibration_data=digits[0])
    ref, _ = kdlab.predict(model, test, device="cpu")
    out, _ = kdlab.predict(quantized, test, device="cpu")
    assert (out.argmax(1) == ref.argmax(1)).float().mean() >= agree
    assert not any(isinstance(m, (nn.Linear, nn.Conv2d)) for m in quantized.modules())


def test_dequantize_gives_the_float_network_a_weight_only_model_runs(trained):
    model, _ = trained
    x = torch.randn(5, 1, 8, 8)
    for scheme in ("linear", "log"):
        quantized = quantize_model(model, 4, scheme=scheme)
        plain = dequantize_model(quantized)
        assert list(plain.state_dict()) == list(model.state_dict())
        assert all(type(a) is type(b) for a, b in zip(plain.modules(), model.modules()))
        with torch.no_grad():
            assert torch.allclose(plain(x), quantized(x), atol=1e-6)


def test_quantize_of_dequantize_gives_the_same_integers(trained):
    model, _ = trained
    quantized = quantize_model(model, 6, scheme="linear")
    again = quantize_model(dequantize_model(quantized), 6, scheme="linear")
    for a, b in zip(quantized.modules(), again.modules()):
        if isinstance(a, LinearQuantizedLayer):
            assert torch.equal(a.weight_q, b.weight_q)


def test_kmeans_stays_the_default_and_bits_dicts_work_for_every_scheme():
    model = kdlab.build_model("mlp30", in_shape=(1, 8, 8))
    assert all(isinstance(m, QuantizedLayer) for m in quantize_model(model, 4).modules() if hasattr(m, "bits"))
    mixed = quantize_model(model, {"1": 2, "3": 8}, scheme="linear")
    assert (mixed[1].bits, mixed[3].bits) == (2, 8)


class WithSpareLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.used, self.spare = nn.Linear(64, 10), nn.Linear(3, 3)

    def forward(self, x):
        return self.used(x.flatten(1))


def test_a_layer_that_never_runs_is_quantized_without_an_input_range():
    quantized = quantize_model(WithSpareLayer(), 8, scheme="linear", calibration_data=torch.randn(4, 1, 8, 8))
    assert quantized.used.input_scale is not None and quantized.spare.input_scale is None


def test_bench_ptq_measures_every_setting():
    result = bench_ptq("digits", "lenet5", epochs=1, bits=(8, 2), calibration_size=100)
    assert result["calibration_images"] == 100 and 0 < result["float_accuracy"] <= 1
    assert len(result["rows"]) == 2 * 2 * 2 * 3
    assert all(row["size_ratio"] < 0.3 and 0 <= row["accuracy"] <= 1 for row in result["rows"])


def _model():
    return kdlab.build_model("mlp30", in_shape=(1, 8, 8))


X = torch.randn(4, 1, 8, 8)


@pytest.mark.parametrize("call, message", [
    (lambda: quantize_model(_model(), scheme="int8"), r"^scheme must be one of 'kmeans', 'linear', 'log', got 'int8'"),
    (lambda: quantize_model(_model(), scheme=None), r"^scheme must be one of 'kmeans', 'linear', 'log', got None"),
    (lambda: quantize_model(_model(), 1, scheme="linear"), r"^bits must be an int in 2\.\.8, got 1"),
    (lambda: quantize_model(_model(), 9, scheme="log"), r"^bits must be an int in 2\.\.8, got 9"),
    (lambda: quantize_model(_model(), {"1": 16}, scheme="linear"), r"^bits\['1'\] must be an int in 2\.\.8, got 16"),
    (lambda: quantize_model(_model(), True, scheme="linear"), r"^bits must be an int in 2\.\.8, got True"),
    (lambda: quantize_model(_model(), scheme="linear", per_channel=1), r"^per_channel must be True or False, got 1"),
    (lambda: quantize_model(_model(), scheme="linear", observer="max"),
     r"^observer must be 'minmax', 'percentile' or a percentile in \[50, 100\], got 'max'"),
    (lambda: quantize_model(_model(), scheme="linear", observer=101), r"^observer must be .* got 101"),
    (lambda: quantize_model(_model(), scheme="linear", observer=True), r"^observer must be .* got True"),
    (lambda: quantize_model(_model(), scheme="linear", calibration_data=[X]),
     r"^calibration_data must be a DataLoader, Dataset or tensor of inputs, got list"),
    (lambda: quantize_model(_model(), scheme="linear", calibration_data=X[:0]), r"^calibration_data is empty"),
    (lambda: quantize_model(_model(), calibration_data=X), r"^calibration_data must be None for scheme='kmeans'"),
    (lambda: quantize_model("mlp30", scheme="linear"), r"^model must be a torch\.nn\.Module"),
    (lambda: calibrate(_model(), X, observer="mean"), r"^observer must be 'minmax', 'percentile'"),
    (lambda: LinearQuantizedLayer(nn.ReLU()), r"^layer must be an nn\.Linear or nn\.Conv1d/2d/3d, got ReLU"),
    (lambda: LinearQuantizedLayer(nn.Linear(2, 2), scheme="kmeans"), r"^scheme must be one of 'linear', 'log'"),
    (lambda: LinearQuantizedLayer(nn.Linear(2, 2), 0), r"^bits must be an int in 2\.\.8, got 0"),
    (lambda: LinearQuantizedLayer(nn.Linear(2, 2), input_range=(1.0, -1.0)),
     r"^input_range must be None or a \(low, high\) pair of finite numbers, low <= high, got \(1\.0, -1\.0\)"),
    (lambda: LinearQuantizedLayer(nn.Linear(2, 2), input_range=(0, float("nan"))), r"^input_range must be None"),
    (lambda: LinearQuantizedLayer(nn.Conv2d(1, 1, 3, padding=1, padding_mode="circular")), r"padding_mode='circular'"),
])
def test_bad_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call()
