"""ONNX export (kdlab.export): every kdlab form runs in onnxruntime as in eager PyTorch, and its file stays compact."""
import os

import pytest
import torch
import torchvision
from torch import nn

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

import kdlab  # noqa: E402
from kdlab.codebook import quantize_model  # noqa: E402
from kdlab.export import (QDQ_TOLERANCE, ROUNDING_TOLERANCE, TOLERANCE, onnx_form, onnx_session,  # noqa: E402
                          onnx_storage, run_onnx)
from kdlab.linear import LinearQuantizedLayer  # noqa: E402


def _randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _pruned(model):
    model = kdlab.clone_model(model)
    kdlab.prune_by_std(model, 1.0)
    return model


def _shared(model):
    return kdlab.share_weights(_pruned(model), 4)


def _qat(model, data):
    model = kdlab.prepare_qat(model)
    with torch.no_grad():
        model(data)  # a training-mode batch sets the observed input ranges
    return model.eval()


# form: (build it from a float model and calibration data, the largest .onnx bytes / float weight bytes it may take)
FORMS = {
    "float": (lambda model, data: model, 1.02),
    "pruned": (lambda model, data: _pruned(model), 0.5),  # kaiming-uniform weights: 42% survive at 1 std
    "shared 4 bits, pruned": (lambda model, data: _shared(model), 0.12),
    "k-means 8 bits": (lambda model, data: quantize_model(model, 8), 0.27),
    "k-means 4 bits": (lambda model, data: quantize_model(model, 4), 0.15),
    "linear 8 bits per channel": (lambda model, data: quantize_model(model, 8, scheme="linear",
                                                                     calibration_data=data), 0.27),
    "linear 4 bits per tensor": (lambda model, data: quantize_model(model, 4, scheme="linear", per_channel=False,
                                                                    calibration_data=data), 0.15),
    "log 8 bits": (lambda model, data: quantize_model(model, 8, scheme="log", calibration_data=data), 0.27),
}


@pytest.fixture(scope="module")
def lenets():
    """{name: (float LeNet in eval mode, calibration inputs, test inputs)} for LeNet-300-100 and LeNet-5."""
    found = {}
    for seed, name in enumerate(("lenet300", "lenet5")):
        kdlab.set_seed(seed)
        found[name] = (kdlab.build_model(name).eval(), _randn(64, 1, 28, 28, seed=seed), _randn(5, 1, 28, 28,
                                                                                              seed=10 + seed))
    return found


def _float_bytes(model):
    """The bytes of the float32 weights of `model` (its state_dict), what an uncompressed export stores."""
    return sum(t.numel() * 4 for t in model.state_dict().values() if t.is_floating_point())


def _relative_difference(path, model, x):
    """max |onnxruntime - eager| / max |eager| of `model` on `x`."""
    with torch.no_grad():
        expected = model.eval()(x)
    got = torch.from_numpy(run_onnx(path, x))
    assert got.shape == expected.shape
    return float((got - expected).abs().max() / expected.abs().max())


def _ops(path):
    return {node.op_type for node in onnx.load(str(path)).graph.node}


@pytest.mark.parametrize("form", list(FORMS))
@pytest.mark.parametrize("name", ["lenet300", "lenet5"])
def test_every_form_runs_in_onnxruntime_as_in_pytorch_and_stays_compact(lenets, tmp_path, name, form):
    model, data, x = lenets[name]
    build, largest = FORMS[form]
    compressed = build(model, data).eval()
    with torch.no_grad():
        assert torch.equal(onnx_form(compressed)(x), compressed(x))  # the export form computes what the model does
    path = tmp_path / f"{name}.onnx"
    size = kdlab.export_onnx(compressed, x, path, dynamic_batch=False)  # static shapes export faster
    assert size == os.path.getsize(path)
    assert _relative_difference(path, compressed, x) <= TOLERANCE
    assert size <= largest * _float_bytes(model)
    if form != "float":  # the weights stay integers or bits in the file: float32 only for codebooks, scales, biases
        assert onnx_storage(path).get("FLOAT", 0) <= (0.45 if form == "pruned" else 0.03) * _float_bytes(model)
    assert not _ops(path) & {"QuantizeLinear", "DequantizeLinear"}  # nothing onnxruntime would re-quantize


def test_a_qat_model_exports_as_the_integers_it_trained_for(lenets, tmp_path):
    model, data, x = lenets["lenet300"]
    qat = _qat(model, data)
    size = kdlab.export_onnx(qat, x[:1], tmp_path / "qat.onnx")  # exported at batch 1, run at batch 5
    assert _relative_difference(tmp_path / "qat.onnx", qat, x) <= TOLERANCE
    assert size <= 0.27 * _float_bytes(model)


def test_qdq_export_runs_integer_kernels_within_their_tolerance(lenets, tmp_path):
    model, data, x = lenets["lenet5"]
    quantized = quantize_model(model, 8, scheme="linear", calibration_data=data)
    path = tmp_path / "qdq.onnx"
    kdlab.export_onnx(quantized, x, path, qdq=True, dynamic_batch=False)
    assert {"QuantizeLinear", "DequantizeLinear"} <= _ops(path)
    assert _relative_difference(path, quantized, x) <= QDQ_TOLERANCE


def test_resnet18_linear_ptq_agrees_with_pytorch(tmp_path):
    """The reported case: a torchvision resnet18 with 8-bit per-channel weights and calibrated uint8 inputs.

    Its layers are wide and deep enough that a few activations sit within float rounding of a rounding boundary and
    round the other way (one uint8 step) in onnxruntime, as they do in PyTorch between batch sizes: ROUNDING_TOLERANCE.
    """
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    quantized = quantize_model(model, 8, scheme="linear", calibration_data=_randn(8, 3, 64, 64))
    x = _randn(1, 3, 64, 64, seed=1)
    size = kdlab.export_onnx(quantized, x, tmp_path / "resnet18.onnx", dynamic_batch=False)
    assert _relative_difference(tmp_path / "resnet18.onnx", quantized, x) <= ROUNDING_TOLERANCE
    assert size <= 0.27 * _float_bytes(model)


def test_inputs_are_quantized_bit_for_bit_as_pytorch_does_next_to_rounding_boundaries(tmp_path):
    """Each uint8 step's half-way point and its float neighbours: round(x · (1 / S)), as PyTorch, not x / S.

    The layer's weight is the identity, so the output is the quantized input itself, with no sum to round.
    """
    layer = torch.nn.Linear(64, 64, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.eye(64))
    model = torch.nn.Sequential(LinearQuantizedLayer(layer, 8, input_range=(-1.3, 2.9))).eval()
    scale, zero_point = model[0].input_scale, model[0].input_zero_point
    halves = (torch.arange(-2, 258) - zero_point + 0.5) * scale
    x = torch.cat([halves, halves.nextafter(halves + 1), halves.nextafter(halves - 1)])[:768].reshape(12, 64)
    assert (torch.round(x / scale) != torch.round(x * (1 / scale))).any()  # where QuantizeLinear's x / S differs
    kdlab.export_onnx(model, x, tmp_path / "layer.onnx", dynamic_batch=False)
    with torch.no_grad():
        assert torch.equal(torch.from_numpy(run_onnx(tmp_path / "layer.onnx", x)), model(x))


def test_a_failed_export_leaves_the_file_there_as_it_was(lenets, tmp_path):
    model = lenets["lenet300"][0]
    path = tmp_path / "model.onnx"
    path.write_bytes(b"old")
    with pytest.raises(ValueError, match="example_input"):
        kdlab.export_onnx(model, _randn(2, 5), path)
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["model.onnx"]


@pytest.fixture(scope="module")
def small_file(tmp_path_factory):
    """A small exported model and its path."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3)).eval()
    path = tmp_path_factory.mktemp("onnx") / "small.onnx"
    kdlab.export_onnx(model, torch.randn(2, 4), path, dynamic_batch=False)
    return model, path


def test_run_onnx_takes_tensors_arrays_and_a_kept_session(small_file):
    model, path = small_file
    x = torch.randn(2, 4)
    expected = model(x).detach().numpy()
    session = onnx_session(path, threads=1)
    for inputs in (x, x.numpy(), (x,), [x.numpy()]):
        assert abs(run_onnx(session, inputs) - expected).max() <= 1e-6
    assert abs(run_onnx(path, x) - expected).max() <= 1e-6


@pytest.mark.parametrize("call, message", [
    (lambda m, x, p: kdlab.export_onnx("lenet", x, p), "model must be a torch.nn.Module"),
    (lambda m, x, p: kdlab.export_onnx(m, [[1.0] * 4], p), "example_input must be a tensor"),
    (lambda m, x, p: kdlab.export_onnx(m, (), p), "example_input must be a tensor"),
    (lambda m, x, p: kdlab.export_onnx(m, torch.tensor(1.0), p), "example_input must have a batch dimension"),
    (lambda m, x, p: kdlab.export_onnx(m, torch.randn(2, 5), p), "example_input must be input"),
    (lambda m, x, p: kdlab.export_onnx(m, x, 3), "path must be a file path"),
    (lambda m, x, p: kdlab.export_onnx(m, x, ""), "path must be a file path"),
    (lambda m, x, p: kdlab.export_onnx(m, x, p.parent), "path must be a file path, got the folder"),
    (lambda m, x, p: kdlab.export_onnx(m, x, p, qdq="yes"), "qdq must be True or False"),
    (lambda m, x, p: kdlab.export_onnx(m, x, p, sparse=1), "sparse must be True or False"),
    (lambda m, x, p: kdlab.export_onnx(m, x, p, dynamic_batch=None), "dynamic_batch must be True or False"),
    (lambda m, x, p: onnx_form(m, qdq=0), "qdq must be True or False"),
    (lambda m, x, p: onnx_form(object()), "model must be a torch.nn.Module"),
    (lambda m, x, p: run_onnx(p, [[1.0] * 4]), "inputs must be a tensor or numpy array"),
    (lambda m, x, p: run_onnx(p, "x"), "inputs must be a tensor or numpy array"),
    (lambda m, x, p: run_onnx(p, (x, x)), r"inputs must be 1 array\(s\)"),
    (lambda m, x, p: run_onnx(p.parent / "missing.onnx", x), "path must be an existing ONNX file"),
    (lambda m, x, p: onnx_session(p, threads=0), "threads must be None or an int >= 1"),
    (lambda m, x, p: onnx_session(p, threads=True), "threads must be None or an int >= 1"),
    (lambda m, x, p: onnx_storage(None), "path must be a file path"),
])
def test_bad_arguments(small_file, call, message):
    model, path = small_file
    with pytest.raises(ValueError, match=message):
        call(model, torch.randn(2, 4), path)


class _Sequence(nn.Module):
    """Embedding, attention, LSTM and GRU: the weights a course model never has."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(50, 16)
        self.att = nn.MultiheadAttention(16, 2, batch_first=True)
        self.lstm = nn.LSTM(16, 8, batch_first=True)
        self.gru = nn.GRU(8, 8, batch_first=True)
        self.head = nn.Linear(8, 3)

    def forward(self, tokens):
        x = self.emb(tokens)
        x = x + self.att(x, x, x, need_weights=False)[0]
        x, _ = self.gru(self.lstm(x)[0])
        return self.head(x[:, -1])


def test_shared_embedding_attention_and_recurrent_weights_export_packed(tmp_path):
    torch.manual_seed(0)
    model = _Sequence().eval()
    kdlab.prune_by_std(model, 0.5)
    kdlab.share_weights(kdlab.remove_masks(model), 4)
    path = tmp_path / "sequence.onnx"
    kdlab.export_onnx(model, torch.randint(0, 50, (2, 7)), path)
    tokens = torch.randint(0, 50, (3, 7))
    assert _relative_difference(path, model, tokens) <= TOLERANCE
    assert onnx_storage(path).get("FLOAT", 0) <= 0.15 * _float_bytes(model)  # biases and codebooks only
