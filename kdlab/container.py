"""The .kdz file: a Deep Compression network in one file (Han, Mao & Dally 2016, §2–4), read back exactly.

Byte layout (integers big-endian):

    8 bytes      magic b"\\x89KDZ\\r\\n\\x1a\\n" (PNG-style: catches text-mode and 7-bit damage)
    1 byte       format version (1)
    4 bytes      length of the header
    header       zlib-compressed JSON: {"architecture": build_model's arguments, {"torchvision": builder name,
                 "num_classes": n} or null, "tensors": [entry, ...], and if any, "linear": {layer: {"bits",
                 "scheme", "per_channel", "input"}}}, one entry per state_dict tensor of the network as stored
    blobs        each entry's byte strings, in entry order, with the lengths its "blobs" list gives
    4 bytes      zlib.crc32 of everything before

A "plain" entry (biases, BatchNorm, dense layers) holds one blob, the tensor's raw little-endian bytes. A
linear- or log-quantized layer (LinearQuantizedLayer) is stored as its own tensors, plain: its bit-packed
integer codes (uint8), its scales (or exponent offsets) and its input quantization; "linear" names it.
A "sparse" entry (a pruned float32 layer without a codebook) holds two: the float32 values of its stored
entries and their Huffman-coded relative positions. A "codebook" entry holds three: the float32 codebook,
the Huffman-coded relative positions of the stored weights (sparse.encode_positions, `position_bits` per
field) and their Huffman-coded codebook indices. Filler entries point at a 0.0 in the codebook, appended
when needed. Each layer's `position_bits` is the width that makes its streams smallest, unless the caller
fixes it: with Huffman coding a wide field costs little, while every filler costs a gap and an index.

Reading checks before it allocates: the CRC-32 and the version first; the blob lengths must add up to the
file; the tensor names and shapes must be the architecture's (built on the "meta" device, without memory);
a plain tensor must be exactly its blob; a Huffman stream's counts are bounded by its bits, and the
relative positions must cover their layer (fillers run to within 2**position_bits of its end), so no
tensor is larger than its streams can describe. Any failure is a CompressedFormatError.
"""
from __future__ import annotations

import json
import math
import os
import warnings
import zlib
from pathlib import Path

import numpy as np
import torch
import torchvision
from torch import nn

from .checks import check_module
from .codebook import QuantizedLayer, dequantize_model, replace_layers, shared_weights
from .errors import CompressedFormatError, UncompressedWeightWarning
from .files import atomic_write
from .huffman import huffman_decode, huffman_encode
from .layers import layer_kind, state_key, weight_kinds
from .linear import LinearQuantizedLayer
from .models import build_model
from .sparse import decode_positions, encode_positions

MAGIC, VERSION = b"\x89KDZ\r\n\x1a\n", 1
PREAMBLE = len(MAGIC) + 1 + 4
DTYPES = {str(t).removeprefix("torch."): t for t in (torch.float32, torch.float64, torch.float16, torch.bfloat16,
                                                        torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8,
                                                        torch.bool)}


def codebook_layers(model):
    """{state_dict key: (codebook, index, "conv" or "fc")} of the shared and quantized weights of `model`."""
    found = {}
    for layer, module, name, shared in shared_weights(model):
        found[state_key(layer, name)] = (module.parametrizations[name].original.detach(), shared.index.reshape(-1),
                                         layer_kind(module))
    for layer, module in model.named_modules():
        if isinstance(module, QuantizedLayer):
            found[state_key(layer, "weight")] = (module.codebook, module.index(), layer_kind(module))
    return found


def _codebook_blobs(stored, codebook, index, bits):
    """(file codebook, position stream, index stream) of one layer: only the weights `stored` marks are stored."""
    fields, filler = encode_positions(stored, bits)
    used, real = np.unique(index.cpu().numpy()[stored], return_inverse=True)
    values = codebook.detach().float().cpu().numpy()[used]
    indices = np.empty(len(fields), np.int64)
    indices[~filler] = real
    if filler.any():
        zero = np.flatnonzero(values == 0)
        if not zero.size:
            values, zero = np.append(values, np.float32(0)), [len(values)]
        indices[filler] = zero[0]
    return values.astype("<f4").tobytes(), huffman_encode(fields), huffman_encode(indices)


def _sparse_blobs(flat, stored, bits):
    """(float32 values of the stored entries, position stream) of a pruned layer without a codebook."""
    fields, filler = encode_positions(stored, bits)
    values = np.zeros(len(fields), "<f4")
    values[~filler] = flat[stored]
    return values.tobytes(), huffman_encode(fields)


def _raw(tensor):
    """The tensor's raw little-endian bytes."""
    return tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def _widths(stored, fixed):
    """The relative-index widths worth trying for a layer: `fixed` alone, else 1 up to the first without fillers."""
    if fixed is not None:
        return [fixed]
    nonzero = np.flatnonzero(stored)
    longest = int(np.diff(nonzero, prepend=-1, append=stored.size).max())  # the last "gap" spans the tail
    return range(1, min(16, max(1, (longest - 1).bit_length())) + 1)


def _smallest(encode, stored, fixed):
    """(bits, blobs) of encode(bits) for the width in _widths that gives the fewest bytes (ties: the narrowest)."""
    return min(((bits, encode(bits)) for bits in _widths(stored, fixed)), key=lambda found: sum(map(len, found[1])))


def _torchvision_architecture(model):
    """{"torchvision": builder name, "num_classes": n} if a torchvision builder makes `model`'s tensors, else None.

    The candidates are the builders of the model's own torchvision module (resnet18 … wide_resnet101_2 for a
    ResNet); each is built on the "meta" device, without memory, with the classes of the model's last Linear
    layer, and the first whose state_dict has the model's names and shapes is recorded.
    """
    module = type(model).__module__
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not module.startswith("torchvision.models.") or not linears:
        return None
    shapes = [(k, v.shape) for k, v in model.state_dict().items()]
    classes = linears[-1].out_features
    for name in torchvision.models.list_models(module=torchvision.models):
        if torchvision.models.get_model_builder(name).__module__ != module:
            continue
        with torch.device("meta"):
            candidate = torchvision.models.get_model(name, weights=None, num_classes=classes)
        if [(k, v.shape) for k, v in candidate.state_dict().items()] == shapes:
            return {"torchvision": name, "num_classes": classes}
    return None


def _linear_layers(model):
    """{layer name: its settings} of the LinearQuantizedLayers (linear or log scheme) of `model`."""
    return {name: {"bits": module.bits, "scheme": module.scheme, "per_channel": module.per_channel,
                   "input": module.input_scale is not None}
            for name, module in model.named_modules() if isinstance(module, LinearQuantizedLayer)}


def _with_linear_layers(model, settings):
    """The float `model`, or a copy whose layers named in `settings` are LinearQuantizedLayers of those settings.

    Their stored buffers (integer codes, scales, input quantization) are placeholders until a state_dict is loaded.
    """
    def make(name, layer):
        if name not in settings:
            return None
        s = settings[name]
        return LinearQuantizedLayer(layer, s["bits"], s["scheme"], s["per_channel"], (0.0, 1.0) if s["input"] else None)
    return replace_layers(model, make) if settings else model


def _warn_float_weights(model, entries):
    """Warn, naming them, about the weight tensors (2 or more dimensions) stored as raw floats."""
    types = {name: type(module).__name__ for name, module in model.named_modules()}
    raw = [f"{e['name']} ({types.get(e['name'].rpartition('.')[0], '?')}, {e['blobs'][0]:,} B)" for e in entries
           if e["kind"] == "plain" and len(e["shape"]) >= 2 and DTYPES[e["dtype"]].is_floating_point]
    if raw:
        warnings.warn(f"save_compressed stored {len(raw)} weight tensor(s) as raw floats, neither shared, quantized "
                      f"nor pruned: {', '.join(raw)}", UncompressedWeightWarning, stacklevel=3)


def save_compressed(model, path, position_bits=None):
    """Write `model` as one .kdz file at `path` (atomically); return the file's size in bytes.

    Shared (`share_weights`) and quantized (`quantize_model`) layers are stored as a codebook and
    Huffman-coded indices and relative positions; everything else (biases, BatchNorm, float layers) as raw
    tensors. Each layer's relative-index field width is the one that makes it smallest; `position_bits`
    fixes it instead for "conv" and/or "fc" layers (the paper's: {"conv": 8, "fc": 5}).
    Models made by `build_model`, and torchvision models, record their architecture, so `load_compressed(path)`
    can rebuild them. Weight tensors stored as raw floats (layers nothing compressed) are named in an
    UncompressedWeightWarning.
    """
    check_module(model)
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    fixed = {"conv": None, "fc": None}
    if position_bits is not None and (not isinstance(position_bits, dict) or not set(position_bits) <= set(fixed)
                                      or not all(type(b) is int and 1 <= b <= 16 for b in position_bits.values())):
        raise ValueError(f"position_bits must map 'conv' and/or 'fc' to ints in 1..16, got {position_bits!r}")
    fixed.update(position_bits or {})
    books, linear = codebook_layers(model), _linear_layers(model)
    stored_model = dequantize_model(model, keep_linear=True)  # linear-quantized layers keep their integers
    kinds = weight_kinds(stored_model)
    entries, blobs = [], []
    for key, tensor in stored_model.state_dict().items():
        entry = {"name": key, "shape": list(tensor.shape)}
        if key in books:
            codebook, index, kind = books[key]
            stored = (tensor.reshape(-1) != 0).cpu().numpy()  # the non-zero weights, found once for every width
            bits, parts = _smallest(lambda b: _codebook_blobs(stored, codebook, index, b), stored, fixed[kind])
            entry.update(kind="codebook", position_bits=bits)
        else:
            if str(tensor.dtype).removeprefix("torch.") not in DTYPES:
                raise ValueError(f"model tensor {key} has dtype {tensor.dtype}; allowed: {', '.join(DTYPES)}")
            parts = (_raw(tensor),)
            entry.update(kind="plain", dtype=str(tensor.dtype).removeprefix("torch."))
            if key in kinds and tensor.dtype == torch.float32:
                flat = tensor.reshape(-1).cpu().numpy()
                stored = flat != 0
                bits, sparse = _smallest(lambda b: _sparse_blobs(flat, stored, b), stored, fixed[kinds[key]])
                if sum(map(len, sparse)) < len(parts[0]):
                    parts = sparse
                    entry = {"name": key, "shape": list(tensor.shape), "kind": "sparse", "position_bits": bits}
        entry["blobs"] = [len(part) for part in parts]
        entries.append(entry)
        blobs += parts
    _warn_float_weights(model, entries)
    architecture = getattr(model, "kdlab_architecture", None) or \
        _torchvision_architecture(dequantize_model(stored_model) if linear else stored_model)
    header = {"architecture": architecture, "tensors": entries, **({"linear": linear} if linear else {})}
    header = zlib.compress(json.dumps(header).encode(), 9)
    body = MAGIC + bytes([VERSION]) + len(header).to_bytes(4, "big") + header + b"".join(blobs)
    atomic_write(path, body + zlib.crc32(body).to_bytes(4, "big"))
    return len(body) + 4


def read_compressed(path):
    """(architecture, entries, file bytes) of a .kdz file, each entry its header dict plus its "data" blobs.

    Checks the magic, the version, the CRC-32 and the header's structure; CompressedFormatError otherwise.
    """
    architecture, _, entries, size = _read(path)
    return architecture, entries, size


def _read(path):
    """(architecture, linear-quantized layers' settings, entries, file bytes) of a .kdz file: read_compressed."""
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    data = Path(path).read_bytes()
    if data[:len(MAGIC)] != MAGIC:
        raise CompressedFormatError(f"{path} is not a kdlab .kdz file (bad magic bytes)")
    if len(data) < PREAMBLE + 4:
        raise CompressedFormatError(f"{path} is truncated: {len(data)} bytes")
    if data[len(MAGIC)] != VERSION:
        raise CompressedFormatError(f"{path} has format version {data[len(MAGIC)]}; this kdlab reads version "
                                    f"{VERSION}: upgrade kdlab to read it")
    if zlib.crc32(data[:-4]) != int.from_bytes(data[-4:], "big"):
        raise CompressedFormatError(f"{path} is damaged or truncated (CRC-32 mismatch)")
    size = int.from_bytes(data[len(MAGIC) + 1:PREAMBLE], "big")
    if size > len(data) - PREAMBLE - 4:
        raise CompressedFormatError(f"{path}: header length {size} runs past the end of the file")
    try:
        header = json.loads(zlib.decompress(data[PREAMBLE:PREAMBLE + size]))
        architecture, entries, linear = header["architecture"], header["tensors"], header.get("linear", {})
        for entry in entries:
            _check_entry(entry)
        for settings in linear.values():
            _check_linear(settings)
    except (ValueError, KeyError, TypeError, RecursionError, zlib.error) as error:
        raise CompressedFormatError(f"{path}: the header is damaged ({error})") from None
    at, end = PREAMBLE + size, len(data) - 4
    if sum(sum(entry["blobs"]) for entry in entries) != end - at:
        raise CompressedFormatError(f"{path}: the header's blob lengths do not add up to the file's size")
    for entry in entries:
        entry["data"] = []
        for length in entry["blobs"]:
            entry["data"].append(data[at:at + length])
            at += length
    return architecture, linear, entries, len(data)


def _check_linear(settings):
    """Raise ValueError unless `settings` are a linear-quantized layer's, as _linear_layers writes them."""
    if settings["bits"] not in range(2, 9) or settings["scheme"] not in ("linear", "log") or \
            not isinstance(settings["per_channel"], bool) or not isinstance(settings["input"], bool):
        raise ValueError(f"bad linear-quantized layer settings {settings!r}")


def _check_entry(entry):
    """Raise ValueError unless `entry` is a well-formed header entry."""
    kind, shape, blobs = entry["kind"], entry["shape"], entry["blobs"]
    if not isinstance(entry["name"], str) or not all(isinstance(n, int) and n >= 0 for n in shape + blobs):
        raise ValueError(f"bad entry {entry!r}")
    if kind == "plain":
        if entry["dtype"] not in DTYPES or len(blobs) != 1:
            raise ValueError(f"bad plain entry {entry['name']}")
        if blobs[0] != math.prod(shape) * DTYPES[entry["dtype"]].itemsize:
            raise ValueError(f"{entry['name']} holds {blobs[0]} bytes, not the {shape} {entry['dtype']} it claims")
    elif kind not in ("codebook", "sparse") or len(blobs) != {"codebook": 3, "sparse": 2}[kind] or blobs[0] % 4 \
            or entry["position_bits"] not in range(1, 17):
        raise ValueError(f"bad {kind} entry {entry['name']}")


def _tensor(entry):
    """The float tensor an entry stands for."""
    if entry["kind"] == "plain":
        return torch.frombuffer(bytearray(entry["data"][0]), dtype=DTYPES[entry["dtype"]]).reshape(entry["shape"])
    values, positions, *indices = entry["data"]
    codebook = np.frombuffer(values, "<f4")
    where = decode_positions(huffman_decode(positions), math.prod(entry["shape"]), entry["position_bits"])
    which = huffman_decode(indices[0]) if indices else np.arange(len(codebook))
    if len(which) != len(where) or (which.size and which.max() >= len(codebook)):
        raise CompressedFormatError(f"{entry['name']}: {len(which)} values or indices for {len(where)} positions, "
                                    f"or an index past the {len(codebook)}-entry codebook")
    weight = np.zeros(math.prod(entry["shape"]), np.float32)
    weight[where] = codebook[which]
    return torch.from_numpy(weight).reshape(entry["shape"])


def load_compressed(path, model=None):
    """The network stored in a .kdz file, whose outputs equal the saved one's.

    It is an ordinary float nn.Module, but for linear- or log-quantized layers, which come back as the
    LinearQuantizedLayers they were (codes, scales and input quantization as saved).

    Without `model` it is rebuilt with build_model from the architecture the file records; with `model`
    (an ordinary float network of the same architecture) the weights are loaded into it instead.
    A damaged, truncated or foreign file raises CompressedFormatError. Shapes are checked against the
    architecture (built on the "meta" device, without memory) before any tensor is decoded.
    """
    if model is not None and not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module or None, got {type(model).__name__}")
    architecture, linear, entries, _ = _read(path)
    if model is None:
        if architecture is None:
            raise ValueError(f"{path} does not record an architecture (its model was made neither by build_model "
                             "nor by a torchvision builder): pass model=, a network of the same architecture")
        try:
            with torch.device("meta"):
                _check_shapes(path, _with_linear_layers(_build(architecture), linear), entries)
        except (ValueError, KeyError, TypeError, RuntimeError) as error:
            raise CompressedFormatError(f"{path}: the tensors do not fit the recorded architecture ({error})") from None
        state = {entry["name"]: _tensor(entry) for entry in entries}
        model = _with_linear_layers(_build(architecture), linear)
    else:
        try:
            structured = _with_linear_layers(model, linear)
        except (AttributeError, ValueError) as error:
            raise ValueError(f"model does not match the architecture stored in {path} ({error})") from None
        _check_shapes(path, structured, entries)
        state = {entry["name"]: _tensor(entry) for entry in entries}
        model = structured
    model.load_state_dict(state)
    return model


def _build(architecture):
    """The network that build_model, or the torchvision builder, makes from a file's recorded architecture."""
    if "torchvision" in architecture:
        return torchvision.models.get_model(architecture["torchvision"], weights=None,
                                            num_classes=architecture["num_classes"])
    return build_model(architecture["name"], architecture["num_classes"], architecture["in_shape"])


def _check_shapes(path, model, entries):
    """Raise ValueError unless the file's tensors are `model`'s state_dict tensors, of the same shapes.

    The order may differ: a weight whose parametrization was removed comes last in its module's state_dict.
    """
    target = model.state_dict()
    names = [entry["name"] for entry in entries]
    if sorted(target) != sorted(names) or any(list(target[e["name"]].shape) != e["shape"] for e in entries):
        raise ValueError(f"model does not match the architecture stored in {path}: its state_dict has "
                         f"{len(target)} tensors, the file {len(names)} (names and shapes must agree one by one)")
