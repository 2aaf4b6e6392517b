import json
import os
import warnings
import zlib

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

import kdlab
from kdlab.container import MAGIC, PREAMBLE, load_compressed, read_compressed, save_compressed


def _compressed(name="lenet300", bits=5, sensitivity=1.0, in_shape=(1, 28, 28)):
    kdlab.set_seed(0)
    model = kdlab.build_model(name, in_shape=in_shape)
    kdlab.prune_by_std(model, sensitivity)
    return kdlab.share_weights(model, bits).eval()


def _outputs(model, in_shape=(1, 28, 28)):
    with torch.no_grad():
        return model.eval()(torch.randn(5, *in_shape, generator=torch.Generator().manual_seed(1)))


@pytest.fixture(scope="module")
def small_file(tmp_path_factory):
    """A small valid .kdz file (mlp30 on 8x8 inputs, pruned and shared) and its bytes."""
    path = tmp_path_factory.mktemp("kdz") / "small.kdz"
    save_compressed(_compressed("mlp30", 3, in_shape=(1, 8, 8)), path)
    return path, path.read_bytes()


@pytest.mark.parametrize("name", ["lenet300", "lenet5", "resnet10"])
def test_loaded_network_gives_the_saved_networks_outputs(tmp_path, name):
    model = _compressed(name)
    size = save_compressed(model, tmp_path / "m.kdz")
    assert size == os.path.getsize(tmp_path / "m.kdz")
    loaded = load_compressed(tmp_path / "m.kdz")
    assert torch.equal(_outputs(loaded), _outputs(model))
    assert not kdlab.shared_layers(loaded)


def test_quantized_and_float_models_round_trip(tmp_path):
    kdlab.set_seed(0)
    model = kdlab.build_model("lenet5")
    with pytest.warns(kdlab.UncompressedWeightWarning, match=r"stored 4 weight tensor\(s\) as raw floats.*: "
                                                             r"0\.weight \(Conv2d, 2,000 B\), 2\.weight \(Conv2d"):
        save_compressed(model, tmp_path / "float.kdz")
    assert torch.equal(_outputs(load_compressed(tmp_path / "float.kdz")), _outputs(model))
    quantized = kdlab.quantize_model(model, 4)
    save_compressed(quantized, tmp_path / "q.kdz")
    assert torch.equal(_outputs(load_compressed(tmp_path / "q.kdz")), _outputs(quantized))
    assert os.path.getsize(tmp_path / "q.kdz") < os.path.getsize(tmp_path / "float.kdz") / 6


def test_load_into_a_given_model(tmp_path):
    model = _compressed("lenet300")
    save_compressed(model, tmp_path / "m.kdz")
    target = kdlab.build_model("lenet300")
    assert load_compressed(tmp_path / "m.kdz", model=target) is target
    assert torch.equal(_outputs(target), _outputs(model))


def test_a_model_without_recorded_architecture_needs_model(tmp_path):
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    save_compressed(kdlab.share_weights(model, 3), tmp_path / "m.kdz")
    with pytest.raises(ValueError, match="pass model="):
        load_compressed(tmp_path / "m.kdz")
    target = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    load_compressed(tmp_path / "m.kdz", model=target)
    assert torch.equal(_outputs(target, (1, 8, 8)), _outputs(model, (1, 8, 8)))


@pytest.fixture(scope="module")
def trained_lenet5():
    """A LeNet-5 after one epoch on mnist5k, and 256 training images to calibrate it with."""
    kdlab.set_seed(0)
    train, _ = kdlab.load_dataset("mnist5k")
    model = kdlab.build_model("lenet5")
    kdlab.fit(model, kdlab.make_loader(train, 64, True), 1, device="cpu")
    return model, torch.stack([train[i][0] for i in range(256)])


@pytest.mark.parametrize("scheme, bits, calibrated, most", [("linear", 8, True, 0.30), ("linear", 4, False, 0.17),
                                                            ("log", 4, True, 0.17), ("log", 8, False, 0.30)])
def test_linear_and_log_quantized_models_are_stored_as_their_integers(tmp_path, trained_lenet5, scheme, bits,
                                                                       calibrated, most):
    model, images = trained_lenet5
    quantized = kdlab.quantize_model(model, bits, scheme=scheme, calibration_data=images if calibrated else None)
    size = save_compressed(quantized, tmp_path / "q.kdz")
    assert size <= most * 4 * kdlab.count_parameters(model)  # about bits/32 of float32
    for loaded in (load_compressed(tmp_path / "q.kdz"),
                   load_compressed(tmp_path / "q.kdz", kdlab.build_model("lenet5"))):
        layers = [m for m in loaded.modules() if isinstance(m, kdlab.LinearQuantizedLayer)]
        assert len(layers) == 4 and all(m.scheme == scheme and m.bits == bits for m in layers)
        assert all((m.input_scale is not None) == calibrated for m in layers)  # the input quantization came back
        assert torch.equal(_outputs(loaded), _outputs(quantized))


@pytest.mark.parametrize("build, name", [(lambda: torchvision.models.resnet18(num_classes=10), "resnet18"),
                                         (lambda: torchvision.models.mobilenet_v2(num_classes=7), "mobilenet_v2")])
def test_a_torchvision_model_is_rebuilt_by_name(tmp_path, build, name):
    torch.manual_seed(0)
    model = build()
    kdlab.prune_by_std(model, 1.0)
    shared = kdlab.share_weights(model, 5).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error", kdlab.UncompressedWeightWarning)  # every conv and fc weight is compressed
        save_compressed(shared, tmp_path / "m.kdz")
    architecture, _, _ = read_compressed(tmp_path / "m.kdz")
    assert architecture == {"torchvision": name, "num_classes": 10 if name == "resnet18" else 7}
    loaded = load_compressed(tmp_path / "m.kdz")  # no model= needed
    assert type(loaded) is type(model) and torch.equal(_outputs(loaded, (3, 32, 32)), _outputs(shared, (3, 32, 32)))


def test_a_changed_torchvision_model_records_no_architecture(tmp_path):
    model = torchvision.models.resnet18(num_classes=10)
    model.conv1 = nn.Conv2d(1, 64, 3, padding=1, bias=False)  # no builder makes this: model= is needed
    save_compressed(kdlab.share_weights(model, 2), tmp_path / "m.kdz")
    assert read_compressed(tmp_path / "m.kdz")[0] is None
    with pytest.raises(ValueError, match=r"made neither by build_model nor by a torchvision builder\): pass model="):
        load_compressed(tmp_path / "m.kdz")


class _EveryKind(nn.Module):
    """A model with every kind of weight kdlab compresses: embedding, attention, LSTM, GRU, Conv1d/3d, grouped conv."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(100, 32)
        self.encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(32, 4, 64, batch_first=True), 1)
        self.lstm = nn.LSTM(32, 16, batch_first=True, bidirectional=True)
        self.gru = nn.GRU(32, 16, batch_first=True)
        self.conv1d = nn.Conv1d(48, 48, 3, groups=48)
        self.conv3d = nn.Conv3d(1, 4, 3)
        self.head = nn.Linear(52, 5)

    def forward(self, tokens, volume):
        x = self.encoder(self.embed(tokens))
        x = torch.cat([self.lstm(x)[0], self.gru(x)[0]], -1)
        x = self.conv1d(x.transpose(1, 2)).mean(-1)
        return self.head(torch.cat([x, self.conv3d(volume).mean((2, 3, 4))], -1))


def test_every_kind_of_weight_is_compressed_and_reloads_exactly(tmp_path):
    torch.manual_seed(0)
    model = _EveryKind().eval()
    tokens, volume = torch.randint(0, 100, (2, 7)), torch.randn(2, 1, 5, 5, 5)
    kdlab.prune_by_std(model, 1.0)
    kdlab.share_weights(model, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error", kdlab.UncompressedWeightWarning)  # no weight tensor silently left float
        save_compressed(model, tmp_path / "m.kdz")
    _, entries, _ = read_compressed(tmp_path / "m.kdz")
    kinds = {e["name"]: e["kind"] for e in entries}
    attention = "encoder.layers.0.self_attn."
    for name in ("embed.weight", attention + "in_proj_weight", attention + "out_proj.weight", "lstm.weight_ih_l0",
                 "lstm.weight_hh_l0_reverse", "gru.weight_hh_l0", "conv1d.weight", "conv3d.weight"):
        assert kinds[name] == "codebook", name
    reloaded = load_compressed(tmp_path / "m.kdz", model=_EveryKind()).eval()
    with torch.no_grad():
        out = reloaded(tokens, volume)
        assert torch.equal(out, kdlab.dequantize_model(model).eval()(tokens, volume))  # the weights exactly
        assert torch.allclose(out, model(tokens, volume), atol=1e-6)  # parametrized: attention's slow path


def test_weights_left_as_floats_are_named_in_a_warning(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ConvTranspose1d(8, 8, 3), nn.Bilinear(8, 8, 2))
    with pytest.warns(kdlab.UncompressedWeightWarning) as caught:
        save_compressed(kdlab.share_weights(model, 4), tmp_path / "m.kdz")
    message = str(caught[0].message)
    assert message.startswith("save_compressed stored 2 weight tensor(s) as raw floats")
    assert "1.weight (ConvTranspose1d, 768 B)" in message and "2.weight (Bilinear, 512 B)" in message
    assert "0.weight" not in message  # the Linear layer was shared


def test_a_model_of_another_architecture_is_refused(tmp_path):
    save_compressed(_compressed("lenet300"), tmp_path / "m.kdz")
    with pytest.raises(ValueError, match="does not match"):
        load_compressed(tmp_path / "m.kdz", model=kdlab.build_model("lenet5"))


def test_long_zero_runs_empty_layers_and_a_zero_centroid_round_trip(tmp_path):
    layer = nn.Linear(200, 3)
    with torch.no_grad():
        layer.weight.zero_()
        layer.weight[0, 199] = 0.5    # a gap of 200 > 2**5: fillers
        layer.weight[2, :4] = torch.tensor([-1.0, 1.0, -1.0, 1.0])
    model = nn.Sequential(layer)
    kdlab.share_weights(model, 1)
    with torch.no_grad():
        model[0].parametrizations.weight.original[0] = 0.0   # a centroid that is exactly zero
    save_compressed(model, tmp_path / "m.kdz")
    target = nn.Sequential(nn.Linear(200, 3))
    load_compressed(tmp_path / "m.kdz", model=target)
    assert torch.equal(target[0].weight, model[0].weight.detach())


def test_quantized_model_filler_entries_point_at_its_zero(tmp_path):
    layer = nn.Linear(100, 2)
    with torch.no_grad():
        layer.weight.zero_()
        layer.weight[1, 90:] = torch.linspace(-1, 1, 10)
    quantized = kdlab.quantize_model(nn.Sequential(layer), 8)
    save_compressed(quantized, tmp_path / "m.kdz")
    target = nn.Sequential(nn.Linear(100, 2))
    load_compressed(tmp_path / "m.kdz", model=target)
    assert torch.equal(target[0].weight, quantized[0].decoded_weight())


def test_position_bits_change_the_gap_fields(tmp_path):
    model = _compressed("lenet300")
    save_compressed(model, tmp_path / "a.kdz", position_bits={"fc": 3})
    _, entries, _ = read_compressed(tmp_path / "a.kdz")
    assert {e["position_bits"] for e in entries if e["kind"] == "codebook"} == {3}
    assert torch.equal(_outputs(load_compressed(tmp_path / "a.kdz")), _outputs(model))


def test_each_layer_gets_the_width_that_makes_it_smallest(tmp_path):
    model = _compressed("lenet300", sensitivity=2.0)  # ~5 % kept: long gaps, so the width matters
    auto = save_compressed(model, tmp_path / "auto.kdz")
    fixed = {bits: save_compressed(model, tmp_path / f"{bits}.kdz", position_bits={"fc": bits})
             for bits in range(1, 17)}
    assert auto <= min(fixed.values()) < fixed[5]  # one width for all layers does no better; the paper's 5 worse
    _, entries, _ = read_compressed(tmp_path / "auto.kdz")
    widths = {e["position_bits"] for e in entries if e["kind"] == "codebook"}
    assert len(widths) > 1  # chosen layer by layer
    assert torch.equal(_outputs(load_compressed(tmp_path / "auto.kdz")), _outputs(model))


def test_save_is_atomic_a_failed_save_leaves_the_old_file(tmp_path):
    path = tmp_path / "m.kdz"
    save_compressed(_compressed("mlp30", in_shape=(1, 8, 8)), path)
    before = path.read_bytes()
    model = kdlab.share_weights(nn.Sequential(nn.Linear(2, 2)), 1)
    model.register_buffer("odd", torch.zeros(2, dtype=torch.complex64))
    with pytest.raises(ValueError, match="dtype"):
        save_compressed(model, path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.kdz"]


@pytest.mark.parametrize("kwargs, message", [
    ({"model": "net"}, "model must be a torch.nn.Module"),
    ({"path": 3}, "path must be a str"),
    ({"position_bits": {"fc": 0}}, "position_bits"),
    ({"position_bits": {"rnn": 4}}, "position_bits"),
])
def test_save_bad_arguments(tmp_path, kwargs, message):
    args = {"model": _compressed("mlp30", in_shape=(1, 8, 8)), "path": tmp_path / "m.kdz", **kwargs}
    with pytest.raises(ValueError, match=message):
        save_compressed(**args)


def test_load_bad_arguments(small_file):
    with pytest.raises(ValueError, match="path must be"):
        load_compressed(None)
    with pytest.raises(ValueError, match="model must be"):
        load_compressed(small_file[0], model="mlp30")


def test_every_flipped_byte_is_caught(tmp_path, small_file):
    _, data = small_file
    path = tmp_path / "bad.kdz"
    for at in range(len(data)):
        damaged = bytearray(data)
        damaged[at] ^= 0x10
        path.write_bytes(bytes(damaged))
        with pytest.raises(kdlab.CompressedFormatError):
            load_compressed(path)


def test_every_truncation_is_caught(tmp_path, small_file):
    _, data = small_file
    path = tmp_path / "short.kdz"
    for length in range(len(data)):
        path.write_bytes(data[:length])
        with pytest.raises(kdlab.CompressedFormatError):
            load_compressed(path)


@pytest.mark.parametrize("content, message", [
    (b"", "not a kdlab .kdz file"),
    (b"\x89PNG\r\n\x1a\n" + bytes(100), "not a kdlab .kdz file"),
    (b"hello, world\n" * 10, "not a kdlab .kdz file"),
    (MAGIC, "truncated"),
])
def test_foreign_files_are_refused(tmp_path, content, message):
    (tmp_path / "x.kdz").write_bytes(content)
    with pytest.raises(kdlab.CompressedFormatError, match=message):
        load_compressed(tmp_path / "x.kdz")


def _parts(data):
    """(header dict, the blob bytes) of a .kdz file's bytes."""
    size = int.from_bytes(data[len(MAGIC) + 1:PREAMBLE], "big")
    return json.loads(zlib.decompress(data[PREAMBLE:PREAMBLE + size])), data[PREAMBLE + size:-4]


def _build(header, blobs, version=1):
    """A .kdz file from its parts, with a valid CRC: damage that the checksum cannot see."""
    packed = zlib.compress(json.dumps(header).encode())
    body = MAGIC + bytes([version]) + len(packed).to_bytes(4, "big") + packed + blobs
    return body + zlib.crc32(body).to_bytes(4, "big")


def test_a_newer_version_is_named(tmp_path, small_file):
    (tmp_path / "v.kdz").write_bytes(_build(*_parts(small_file[1]), version=2))
    with pytest.raises(kdlab.CompressedFormatError, match="format version 2"):
        load_compressed(tmp_path / "v.kdz")


@pytest.mark.parametrize("change, message", [
    (lambda h: h.pop("tensors"), "header is damaged"),
    (lambda h: h["tensors"][0].update(kind="mystery"), "header is damaged"),
    (lambda h: h["tensors"][1].update(shape=[7]), "header is damaged"),
    (lambda h: h["tensors"][1].update(dtype="complex64"), "header is damaged"),
    (lambda h: h["tensors"][0].update(position_bits=0), "header is damaged"),
    (lambda h: h["tensors"][0].update(shape=[30, 33]), "do not fit the recorded architecture"),
    (lambda h: h["tensors"][0]["blobs"].__setitem__(0, h["tensors"][0]["blobs"][0] + 4), "do not add up"),
    (lambda h: h["architecture"].update(num_classes=11), "do not fit the recorded architecture"),
    (lambda h: h["architecture"].update(name="resnet99"), "do not fit the recorded architecture"),
    (lambda h: h.update(architecture={"torchvision": "resnet99", "num_classes": 10}), "do not fit the recorded"),
    (lambda h: h.update(linear={"1": {"bits": 9, "scheme": "linear", "per_channel": True, "input": False}}),
     "header is damaged"),
    (lambda h: h.update(linear={"1": {"bits": 8, "scheme": "linear"}}), "header is damaged"),
    (lambda h: h.update(linear={"1": {"bits": 8, "scheme": "linear", "per_channel": True, "input": False}}),
     "do not fit the recorded architecture"),  # the file holds a float weight where codes are announced
])
def test_a_damaged_header_with_a_valid_crc_is_caught(tmp_path, small_file, change, message):
    header, blobs = _parts(small_file[1])
    change(header)
    (tmp_path / "h.kdz").write_bytes(_build(header, blobs))
    with pytest.raises(kdlab.CompressedFormatError, match=message):
        load_compressed(tmp_path / "h.kdz")


def test_swapped_streams_with_a_valid_crc_are_caught(tmp_path, small_file):
    header, blobs = _parts(small_file[1])
    first = header["tensors"][0]
    values, positions, indices = first["blobs"]
    streams = blobs[values:values + positions + indices]
    swapped = streams[positions:] + streams[:positions]
    first["blobs"] = [values, indices, positions]
    damaged = blobs[:values] + swapped + blobs[values + positions + indices:]
    (tmp_path / "s.kdz").write_bytes(_build(header, damaged))
    with pytest.raises(kdlab.CompressedFormatError):
        load_compressed(tmp_path / "s.kdz")


def test_read_compressed_gives_the_entries(small_file):
    path, data = small_file
    architecture, entries, size = read_compressed(path)
    assert architecture == {"name": "mlp30", "num_classes": 10, "in_shape": [1, 8, 8]}
    assert size == len(data)
    assert [e["name"] for e in entries] == list(kdlab.build_model("mlp30", in_shape=(1, 8, 8)).state_dict())
    assert [e["kind"] for e in entries] == ["codebook", "plain", "codebook", "plain"]
    assert np.frombuffer(entries[0]["data"][0], "<f4").size <= 2 ** 3 + 1


def test_a_pruned_float_model_is_stored_sparse_and_exactly(tmp_path):
    kdlab.set_seed(0)
    model = kdlab.build_model("lenet5")
    with pytest.warns(kdlab.UncompressedWeightWarning):
        dense = save_compressed(model, tmp_path / "dense.kdz")
    kdlab.prune_by_std(model, 1.5)
    sparse = save_compressed(model, tmp_path / "sparse.kdz")
    _, entries, _ = read_compressed(tmp_path / "sparse.kdz")
    assert [e["kind"] for e in entries if e["name"].endswith("weight")] == ["sparse"] * 4
    assert sparse < dense / 3
    assert torch.equal(_outputs(load_compressed(tmp_path / "sparse.kdz")), _outputs(model))
    report = kdlab.compression_report(tmp_path / "sparse.kdz")
    assert [row["kept"] for row in report.rows] == pytest.approx([r["kept"] for r in kdlab.sparsity(model)[:-1]])


def test_a_sparse_entry_with_a_wrong_value_count_is_caught(tmp_path):
    kdlab.set_seed(0)
    model = kdlab.build_model("mlp30", in_shape=(1, 8, 8))
    kdlab.prune_by_std(model, 1.0)
    save_compressed(model, tmp_path / "m.kdz")
    header, blobs = _parts((tmp_path / "m.kdz").read_bytes())
    first = header["tensors"][0]
    assert first["kind"] == "sparse"
    first["blobs"][0] -= 4
    (tmp_path / "bad.kdz").write_bytes(_build(header, blobs[:first["blobs"][0]] + blobs[first["blobs"][0] + 4:]))
    with pytest.raises(kdlab.CompressedFormatError, match="values or indices"):
        load_compressed(tmp_path / "bad.kdz")


class _TextClassifier(nn.Module):
    """A Transformer-encoder classifier the course does not build: embedding, two encoder layers, a linear head."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(2000, 64)
        self.encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(64, 4, 256, batch_first=True), 2)
        self.head = nn.Linear(64, 4)

    def forward(self, tokens):
        return self.head(self.encoder(self.embed(tokens)).mean(1))


def test_a_transformer_classifier_pruned_and_shared_is_at_least_8x_smaller(tmp_path):
    torch.manual_seed(0)
    model = _TextClassifier().eval()
    float_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    kdlab.prune_by_std(model, 1.0)
    kdlab.share_weights(model, 5)
    with warnings.catch_warnings():
        warnings.simplefilter("error", kdlab.UncompressedWeightWarning)
        size = save_compressed(model, tmp_path / "t.kdz")
    assert float_bytes / size >= 8
    tokens = torch.randint(0, 2000, (3, 12))
    with torch.no_grad():
        reloaded = load_compressed(tmp_path / "t.kdz", model=_TextClassifier()).eval()
        assert torch.equal(reloaded(tokens), kdlab.dequantize_model(model).eval()(tokens))
