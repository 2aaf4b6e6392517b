"""ONNX export of every kdlab form, keeping its compact storage, checked against onnxruntime.

`export_onnx(model, example_input, path)` writes a .onnx file for a float, pruned, shared (`share_weights`),
k-means quantized, linear or log quantized (`quantize_model`) or QAT (`prepare_qat`) network; `run_onnx` runs one
with onnxruntime. The file stores what kdlab stores, and the graph decodes it with plain ONNX ops:

- k-means quantized: the codebook (float32) and the indices, `bits` bits each, bit-packed in uint8 bytes, unpacked by
  integer ops (Gather, Mul, Div, Mod on int32) and looked up with a Gather;
- shared: the same, the codebook being the trained centroids plus, for a pruned layer, one entry for zero;
- linear / log quantized: the integer weights, bit-packed the same way (one byte each at 8 bits), with their float
  scales and zero points or exponent offsets, decoded as S (q - Z) or sign(q) 2^(|q| + offset); the input of each
  layer is fake-quantized to uint8 as in eager PyTorch;
- QAT: as `quantize_model(model, bits, scheme="linear")` stores it, the integers it trained for;
- pruned (and any float Linear/Conv weight with enough zeros, `sparse=True`): the surviving weights (float32) and a
  1-bit mask, scattered back by a CumSum and a Gather;
- float: as it is.
Indices and integer codes are stored as a 1-bit mask of the weights whose symbol is not the most common one (zero
in a pruned layer) plus those symbols, when that is smaller. onnxruntime folds the decoding subgraphs (their inputs
are all initializers) into float weights once, when it loads the file, so the model then runs as fast as float.

The exporter is torch.onnx.export(dynamo=True). The TorchScript exporter constant-folds every decoding subgraph
into float32 weights by default (a 4-bit k-means LeNet-5: 891 kB instead of 234 kB, an 8-bit linear one 1.73 MB
instead of 455 kB, the float size), cannot export the log scheme (aten::exp2), cannot write custom ONNX nodes
(torch.onnx.ops.symbolic, used for qdq=True) and is deprecated. The dynamo exporter's own optimizer would fold
tensors of up to 8192 elements (small layers): here it folds none bigger than FOLD_LIMIT.

Linear-PTQ models and onnxruntime. Exported naively (by the dynamo exporter as it is), a uint8-input model gives a
QuantizeLinear/DequantizeLinear pair before each layer and a float weight; onnxruntime's QDQ optimizer then turns each
such Conv/Gemm into QLinearConv/QGemm, quantizing the (already dequantized) float weight and the bias again with
scales of its own and requantizing the output: it runs another integer network than kdlab's (8-bit per-channel
LeNet-300-100 and LeNet-5: max |diff| 1.2% and 1.4% of the logits; with onnxruntime's graph optimizations off,
2e-7). A DequantizeLinear weight feeding a MatMul fares no better: onnxruntime makes it a MatMulNBits, which quantizes
the input too. And QuantizeLinear rounds x / S, where PyTorch's fake quantization rounds x * (1 / S): the two differ
next to a rounding boundary. So by default (`qdq=False`) the graph spells out what eager PyTorch computes: weights
decoded by Cast, Sub and Mul, inputs by Mul (by the float32 1 / S), Round (half to even, as PyTorch's nearbyint),
Add, Clip, Sub and Mul, bit for bit PyTorch's fake_quantize_per_tensor_affine. onnxruntime then has no Q/DQ pattern
to rewrite and agrees with eager to float rounding (TOLERANCE; ROUNDING_TOLERANCE for big networks). `qdq=True`
writes the standard QDQ form instead (int8 weights through DequantizeLinear, uint8 inputs through QuantizeLinear /
DequantizeLinear), which onnxruntime runs with its integer kernels (QLinearConv, QGemm), rounding the bias, the
accumulator and x / S its own way (QDQ_TOLERANCE).

onnx, onnxruntime and onnxscript are optional dependencies (the "deploy" extra), imported only when needed.
"""
from __future__ import annotations

import contextlib
import io
import math
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from .bitpack import pack_indices
from .checks import check_module
from .codebook import QuantizedLayer, quantize_model, shared_weights, swap_layers
from .files import atomic_write
from .layers import PRUNABLE, layer_type
from .linear import ACTIVATION_BITS, LinearQuantizedLayer
from .prune import clone_model, current_weight, remove_masks
from .qat import qat_settings

FOLD_LIMIT = 64  # the exporter's optimizer may fold ops whose constant inputs have at most this many elements
# max |onnxruntime - eager| / max |eager output| of an exported model (qdq=False): float rounding alone. Measured
# <= 1e-6 for every form of LeNet-300-100, LeNet-5 and resnet18, quantized inputs included while no activation rounds
# the other way (below)
TOLERANCE = 1e-4
# the same for a network whose layers quantize their inputs to uint8 (linear/log PTQ, QAT) and that is big enough for
# an activation to fall within float rounding of a rounding boundary: it rounds the other way (one uint8 step) in
# onnxruntime, as it does in eager PyTorch between batch sizes, and the step spreads to later layers. torchvision
# resnet18 at 64x64: 0 to 2.1% (a single input of its third layer, of 32768, rounding the other way); eager PyTorch
# against itself, a batch of 2 against two batches of 1: 0 to 1.6%
ROUNDING_TOLERANCE = 0.05
# the same for qdq=True, where onnxruntime runs integer kernels of its own (measured <= 1.3%)
QDQ_TOLERANCE = 0.05
MAX_ONNX_BYTES = 2 ** 31 - 1  # a single .onnx protobuf holds less than 2 GiB
_CONVOLUTIONS = {"Conv1d": F.conv1d, "Conv2d": F.conv2d, "Conv3d": F.conv3d}
_WINDOW = 3  # bytes read for one index: an index of <= 16 bits starting at any bit of a byte spans <= 3 bytes


def _check_flag(value, name):
    """Raise ValueError unless `value` is True or False."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")


def _group_bytes(packed, bits, count):
    """`packed` (a `pack_indices` stream of `count` indices) padded with zero bytes to whole groups of 8 indices."""
    size = count if bits == 8 else math.ceil(count / 8) * bits
    return F.pad(packed.reshape(-1), (0, size - packed.numel()))


class _Unpacker(nn.Module):
    """Unpacks `count` indices of `bits` bits from a `pack_indices` stream with ops that export to plain ONNX.

    Eight indices take `bits` bytes, so each group of `bits` bytes holds 8 indices at fixed bit offsets: index j
    starts at bit j·bits of its group, inside the 3-byte window from byte ⌊j·bits / 8⌋, and is
    ⌊window / 2^(24 - j·bits mod 8 - bits)⌋ mod 2^bits. Reshape, Pad, Gather, Mul, Add, Div and Mod, all on int32.
    """

    def __init__(self, bits, count):
        super().__init__()
        self.bits, self.count = bits, count
        starts = [j * bits // 8 for j in range(8)]
        self.register_buffer("columns", torch.tensor([s + k for s in starts for k in range(_WINDOW)]), persistent=False)
        self.register_buffer("divisors", torch.tensor([2 ** (8 * _WINDOW - j * bits % 8 - bits) for j in range(8)],
                                                      dtype=torch.int32), persistent=False)
        self.register_buffer("place", torch.tensor([2 ** (8 * k) for k in reversed(range(_WINDOW))],
                                                   dtype=torch.int32), persistent=False)

    def forward(self, packed):
        """The indices (int32, 1-D) stored in the uint8 bytes `packed` (padded by `_group_bytes`)."""
        if self.bits == 8:
            return packed.to(torch.int32)
        groups = F.pad(packed.to(torch.int32).reshape(-1, self.bits), (0, _WINDOW - 1))
        windows = (groups[:, self.columns].reshape(-1, 8, _WINDOW) * self.place).sum(-1)
        index = torch.div(windows, self.divisors, rounding_mode="floor") % (1 << self.bits)
        return index.reshape(-1)[:self.count]


def _bits_for(size):
    """The bits an index into `size` values takes (at least 1)."""
    return max(1, math.ceil(math.log2(max(size, 1))))


class _Symbols(nn.Module):
    """A 1-D tensor of small non-negative integers (codebook indices, integer codes) stored in as few bytes as it can.

    Either densely, `bits` bits each (`pack_indices`), or, when fewer bytes, as a 1-bit mask of the symbols that
    differ from the most common one (zero, in a pruned layer), those symbols packed, and the common one: the
    position of each kept symbol among them is the CumSum of the mask. forward() gives them back as int32.
    """

    def __init__(self, symbols):
        super().__init__()
        symbols = symbols.reshape(-1).long()
        self.count = symbols.numel()
        bits = _bits_for(int(symbols.max()) + 1) if self.count else 1
        common = int(torch.bincount(symbols).argmax()) if self.count else 0
        keep = symbols != common
        kept = symbols[keep]
        kept_bits = _bits_for(int(kept.max()) + 1) if kept.numel() else 1
        dense = math.ceil(self.count * bits / 8)
        self.masked = math.ceil(self.count / 8) + math.ceil(kept.numel() * kept_bits / 8) + 4 < dense
        if self.masked:
            self.register_buffer("mask", _group_bytes(pack_indices(keep.int(), 1), 1, self.count))
            self.register_buffer("kept", _group_bytes(pack_indices(kept, kept_bits), kept_bits, kept.numel()))
            self.register_buffer("common", torch.tensor([common], dtype=torch.int32))
            self.unpack_mask = _Unpacker(1, self.count)
            self.unpack = _Unpacker(kept_bits, kept.numel())
        else:
            self.register_buffer("packed", _group_bytes(pack_indices(symbols, bits), bits, self.count))
            self.unpack = _Unpacker(bits, self.count)

    def forward(self):
        if not self.masked:
            return self.unpack(self.packed)
        keep = self.unpack_mask(self.mask)
        symbols = torch.cat([self.common, self.unpack(self.kept)])
        return torch.index_select(symbols, 0, torch.cumsum(keep, 0, dtype=torch.int32) * keep)


class _StoredLayer(nn.Module):
    """A Linear or Conv layer of an export form: its subclass stores the weight and gives it by weight()."""

    def __init__(self, layer):
        super().__init__()
        if isinstance(layer, PRUNABLE):
            self.kind, self.shape = layer_type(layer), tuple(layer.weight.shape)
            self.options = ({} if self.kind == "Linear" else
                            {key: getattr(layer, key) for key in ("stride", "padding", "dilation", "groups")})
        else:
            self.kind, self.shape, self.options = layer.kind, tuple(layer.shape), dict(layer.options)
        self.bias = None if layer.bias is None else nn.Parameter(layer.bias.detach().clone(), requires_grad=False)
        self.count = math.prod(self.shape)

    def forward(self, x):
        """The layer's output with the decoded weight."""
        if self.kind == "Linear":
            return F.linear(x, self.weight(), self.bias)
        return _CONVOLUTIONS[self.kind](x, self.weight(), self.bias, **self.options)


class _CodebookLayer(_StoredLayer):
    """A QuantizedLayer for export: its codebook (float) and indices (`_Symbols`), weight = codebook[index]."""

    def __init__(self, layer):
        super().__init__(layer)
        self.register_buffer("codebook", layer.codebook.detach().clone())
        self.index = _Symbols(layer.index())

    def weight(self):
        return torch.index_select(self.codebook, 0, self.index()).reshape(self.shape)


class _SparseLayer(_StoredLayer):
    """A float layer with zeros for export: the non-zero weights in order and a 1-bit mask of where they are."""

    def __init__(self, layer, weight):
        super().__init__(layer)
        keep = weight.reshape(-1) != 0
        self.register_buffer("values", torch.cat([weight.new_zeros(1), weight.reshape(-1)[keep]]))
        self.register_buffer("mask", _group_bytes(pack_indices(keep.int(), 1), 1, self.count))
        self.unpack = _Unpacker(1, self.count)

    def weight(self):
        """values[k] at the k-th kept position (CumSum of the mask), values[0] = 0 elsewhere."""
        keep = self.unpack(self.mask)
        return torch.index_select(self.values, 0, torch.cumsum(keep, 0, dtype=torch.int32) * keep).reshape(self.shape)


def _dequantize_linear(q, scale, zero_point):
    """The ONNX DequantizeLinear of int8 `q` (per tensor, or per output channel along axis 0)."""
    return torch.onnx.ops.symbolic("::DequantizeLinear", (q, scale, zero_point), {"axis": 0}, dtype=torch.float32,
                                   shape=q.shape)


class _IntegerLayer(_StoredLayer):
    """A LinearQuantizedLayer for export: its integers, scales and input range, decoded as eager PyTorch does.

    With `qdq` (linear scheme only), the weight goes through DequantizeLinear and the input through
    QuantizeLinear/DequantizeLinear when exported (the QDQ form onnxruntime runs with integer kernels); eager outputs
    are the same either way.
    """

    def __init__(self, layer, qdq=False):
        super().__init__(layer)
        # log codes have no DequantizeLinear: given a float weight, onnxruntime would quantize it again (module doc)
        self.bits, self.scheme, self.qdq = layer.bits, layer.scheme, qdq and layer.scheme == "linear"
        rows = (-1, *(1,) * (len(self.shape) - 1))
        self.codes_stored = _Symbols(layer.weight_q.reshape(-1).long() + 2 ** (self.bits - 1))
        if self.scheme == "linear":
            scale, zero_point = layer.weight_scale.detach(), layer.weight_zero_point.detach()
            self.register_buffer("weight_scale", scale.reshape(rows) if scale.ndim else scale.clone())
            self.register_buffer("weight_zero_point", (zero_point.reshape(rows) if zero_point.ndim else zero_point)
                                 .float())
            self.register_buffer("weight_scale_1d", scale.clone(), persistent=False)
            self.register_buffer("weight_zero_point_1d", zero_point.to(torch.int8), persistent=False)
        else:
            offset = layer.weight_exponent.detach()
            self.register_buffer("weight_exponent", (offset.reshape(rows) if offset.ndim else offset).float())
        self.has_input = layer.input_scale is not None
        if self.has_input:
            scale = layer.input_scale.detach().float()
            self.register_buffer("input_scale", scale.clone())
            self.register_buffer("input_inverse", 1.0 / scale)  # float32, as PyTorch's fake-quantize kernel has it
            self.register_buffer("input_zero_point", layer.input_zero_point.detach().float())
            self.register_buffer("input_zero_point_uint8", layer.input_zero_point.detach().to(torch.uint8),
                                 persistent=False)

    def codes(self):
        """The integer weights (int32), shaped as the weight."""
        return (self.codes_stored() - 2 ** (self.bits - 1)).reshape(self.shape)

    def weight(self):
        """S (q - Z), or sign(q) · 2^(|q| + offset) for the log scheme: what LinearQuantizedLayer decodes."""
        q = self.codes()
        if self.scheme == "log":
            return torch.sign(q).float() * torch.exp2(q.abs().float() + self.weight_exponent)
        if self.qdq and torch.onnx.is_in_onnx_export():
            return _dequantize_linear(q.to(torch.int8), self.weight_scale_1d, self.weight_zero_point_1d)
        return (q.float() - self.weight_zero_point) * self.weight_scale

    def quantize_input(self, x):
        """x through uint8 and back: S (clip(round(x · (1 / S)) + Z, 0, 255) - Z), PyTorch's fake quantization."""
        top = 2 ** ACTIVATION_BITS - 1
        if self.qdq and torch.onnx.is_in_onnx_export():
            q = torch.onnx.ops.symbolic("::QuantizeLinear", (x, self.input_scale, self.input_zero_point_uint8), {},
                                        dtype=torch.uint8, shape=x.shape)
            return torch.onnx.ops.symbolic("::DequantizeLinear", (q, self.input_scale, self.input_zero_point_uint8),
                                           {}, dtype=torch.float32, shape=x.shape)
        q = torch.clamp(torch.round(x * self.input_inverse) + self.input_zero_point, 0, top)
        return (q - self.input_zero_point) * self.input_scale

    def forward(self, x):
        if self.has_input:
            x = self.quantize_input(x.float())
        return super().forward(x)


class _PackedSharedWeight(nn.Module):
    """A SharedWeight for export: W = [C, 0][I'], masked (pruned) weights pointing at the zero entry (`_Symbols`)."""

    def __init__(self, shared):
        super().__init__()
        index, keep = shared.index.reshape(-1), shared.mask.reshape(-1) != 0
        self.shape = tuple(shared.index.shape)
        self.size = int(index.max()) + 1 if index.numel() else 1  # the codebook's length
        self.zero = not bool(keep.all())
        self.index = _Symbols(torch.where(keep, index, torch.full_like(index, self.size)))

    def forward(self, codebook):
        book = torch.cat([codebook, codebook.new_zeros(1)]) if self.zero else codebook
        return torch.index_select(book, 0, self.index()).reshape(self.shape)


def _worth_sparse(weight):
    """True if storing a float weight as its non-zero values and a 1-bit mask takes fewer bytes than dense."""
    kept = int(torch.count_nonzero(weight))
    return weight.is_floating_point() and (kept + 1) * weight.element_size() + weight.numel() / 8 < \
        weight.numel() * weight.element_size()


def onnx_form(model, qdq=False, sparse=True):
    """A copy of `model`, in eval mode, made of modules whose ONNX export keeps kdlab's compact storage.

    Its eager outputs are those of `model` in eval mode. QAT models become `quantize_model(model, bits,
    scheme="linear")` (the bits and per_channel they trained with), pruning masks are folded, shared weights and
    quantized layers store packed indices and integers (see the module doc), and, with `sparse`, float Linear/Conv
    weights with enough zeros their non-zero values and a bit mask. `qdq` as in `export_onnx`.
    """
    check_module(model)
    _check_flag(qdq, "qdq")
    _check_flag(sparse, "sparse")
    settings = qat_settings(model)
    if settings:
        per_channel = {trained for _, trained in settings.values()}
        if len(per_channel) != 1:
            raise ValueError("model must be prepared for QAT with one per_channel setting to be exported")
        model = quantize_model(model, {name: bits for name, (bits, _) in settings.items()}, scheme="linear",
                               per_channel=per_channel.pop())
    else:
        model = clone_model(model)
    remove_masks(model)
    for _, module, name, shared in shared_weights(model):
        chain = module.parametrizations[name]
        chain[next(i for i, p in enumerate(chain) if p is shared)] = _PackedSharedWeight(shared)

    def make(layer):
        if isinstance(layer, QuantizedLayer):
            return _CodebookLayer(layer)
        if isinstance(layer, LinearQuantizedLayer):
            return _IntegerLayer(layer, qdq)
        if (sparse and isinstance(layer, PRUNABLE) and not parametrize.is_parametrized(layer)
                and getattr(layer, "padding_mode", "zeros") == "zeros" and _worth_sparse(current_weight(layer))):
            return _SparseLayer(layer, current_weight(layer))
        return None

    return swap_layers(model, lambda name, layer: make(layer)).eval()


def _as_inputs(example_input):
    """`example_input` as a tuple of tensors (one tensor, or a non-empty tuple or list of them)."""
    inputs = (example_input,) if isinstance(example_input, torch.Tensor) else example_input
    if not isinstance(inputs, (tuple, list)) or not inputs or not all(isinstance(t, torch.Tensor) for t in inputs):
        raise ValueError(f"example_input must be a tensor or a non-empty tuple of tensors, "
                         f"got {type(example_input).__name__}")
    if any(t.ndim == 0 or len(t) == 0 for t in inputs):
        raise ValueError(f"example_input must have a batch dimension of size >= 1, got shape(s) "
                         f"{', '.join(str(tuple(t.shape)) for t in inputs)}")
    return tuple(inputs)


def _check_path(path):
    """`path` as a Path, checked to be a str or os.PathLike that is not a folder."""
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise ValueError(f"path must be a file path (str or os.PathLike), got {path!r}")
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"path must be a file path, got the folder {str(path)!r}")
    return path


def _names(kind, count):
    """ONNX names of `count` inputs or outputs: "input", or "input_0", "input_1", ..."""
    return [kind] if count == 1 else [f"{kind}_{i}" for i in range(count)]


def _output_names(outputs):
    """The names of the outputs of a model that returned `outputs`: one tensor or a tuple of them (else None)."""
    if isinstance(outputs, torch.Tensor):
        return _names("output", 1)
    if isinstance(outputs, (tuple, list)) and all(isinstance(t, torch.Tensor) for t in outputs):
        return _names("output", len(outputs))
    return None


def export_onnx(model, example_input, path, *, qdq=False, sparse=True, dynamic_batch=True):
    """Write `model` (any kdlab form, see the module doc) to the ONNX file `path`; return the file's size in bytes.

    `example_input` is a tensor (or a tuple of tensors) the model takes, with a batch dimension first; with
    `dynamic_batch` the file takes any batch size. The model is exported in eval mode, by torch.onnx.export
    (dynamo=True), the file written atomically. With `qdq=False` (the default) the graph computes what eager PyTorch
    computes, and onnxruntime agrees to TOLERANCE relative to the largest output; with `qdq=True` linear-quantized
    layers are written as QuantizeLinear/DequantizeLinear for onnxruntime's integer kernels (QDQ_TOLERANCE).
    `sparse` stores float weights with zeros (pruned) as their non-zero values and a bit mask when that is smaller.
    """
    import onnxscript.optimizer

    check_module(model)
    inputs = _as_inputs(example_input)
    path = _check_path(path)
    _check_flag(qdq, "qdq")
    _check_flag(sparse, "sparse")
    _check_flag(dynamic_batch, "dynamic_batch")
    form = onnx_form(model, qdq=qdq, sparse=sparse)
    try:
        with torch.no_grad():
            outputs = form(*inputs)
    except (RuntimeError, TypeError, IndexError) as error:  # a shape, dtype or number of inputs the model refuses
        raise ValueError(f"example_input must be input(s) the model accepts, got shape(s) "
                         f"{', '.join(str(tuple(t.shape)) for t in inputs)}: {error}") from error
    dynamic_shapes = tuple({0: torch.export.Dim.DYNAMIC} for _ in inputs) if dynamic_batch else None
    with contextlib.redirect_stdout(io.StringIO()):  # the exporter prints its progress
        program = torch.onnx.export(form, inputs, dynamo=True, optimize=False, dynamic_shapes=dynamic_shapes,
                                    input_names=_names("input", len(inputs)), output_names=_output_names(outputs))
        onnxscript.optimizer.optimize(program.model, input_size_limit=FOLD_LIMIT, output_size_limit=FOLD_LIMIT)
    proto = program.model_proto
    for node in proto.graph.node:  # the exporter's debugging notes (stack traces, module names): ~1 kB a node
        del node.metadata_props[:]
        node.doc_string = ""
    if proto.ByteSize() > MAX_ONNX_BYTES:
        raise ValueError(f"model must fit in one 2 GiB ONNX file, got {proto.ByteSize()} bytes")
    data = proto.SerializeToString()
    atomic_write(path, data)
    return len(data)


def onnx_session(path, threads=None):
    """An onnxruntime InferenceSession of the ONNX file `path` on the CPU, with `threads` intra-op threads."""
    import onnxruntime

    if not isinstance(path, (str, os.PathLike)) or not Path(path).is_file():
        raise ValueError(f"path must be an existing ONNX file, got {path!r}")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be None or an int >= 1, got {threads!r}")
    options = onnxruntime.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_onnx(path, inputs, threads=None):
    """The output (a numpy array; a tuple of them for several) of the ONNX file `path` run by onnxruntime on `inputs`.

    `path` may also be an InferenceSession (`onnx_session`), kept to run many batches; `inputs` is a tensor or numpy
    array, or a tuple of them, one per input of the model.
    """
    session = path if hasattr(path, "get_inputs") and hasattr(path, "run") else onnx_session(path, threads)
    arrays = (inputs,) if isinstance(inputs, (torch.Tensor, np.ndarray)) else inputs
    if not isinstance(arrays, (tuple, list)) or not all(isinstance(a, (torch.Tensor, np.ndarray)) for a in arrays):
        raise ValueError(f"inputs must be a tensor or numpy array, or a tuple of them, got {type(inputs).__name__}")
    names = [node.name for node in session.get_inputs()]
    if len(arrays) != len(names):
        raise ValueError(f"inputs must be {len(names)} array(s), one per model input ({', '.join(names)}), "
                         f"got {len(arrays)}")
    feeds = {name: (a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else a) for name, a in zip(names, arrays)}
    outputs = session.run(None, feeds)
    return outputs[0] if len(outputs) == 1 else tuple(outputs)


def onnx_storage(path):
    """{ONNX data type name: bytes} of the initializers (the stored tensors) of the ONNX file `path`."""
    import onnx

    model = onnx.load(str(_check_path(path)), load_external_data=False)
    sizes = {}
    for tensor in model.graph.initializer:
        name = onnx.TensorProto.DataType.Name(tensor.data_type)
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)
        sizes[name] = sizes.get(name, 0) + math.prod(tensor.dims) * dtype.itemsize
    return sizes
