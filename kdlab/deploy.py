"""Deployment: a compressed kdlab network as an inference-only module that really runs faster on the CPU.

kdlab's training and storage forms do not run faster than the float network they came from: a pruned layer still
multiplies its zeros, a shared layer (`share_weights`) recomputes W = C[I] * M in every forward pass and holds the
int64 indices and the float mask beside the codebook (three times the float weight's memory), and the layers of
`quantize_model` decode their integers back to float on every call. `deploy` decodes every weight once, drops
everything training needs, and puts the layers on kernels that exploit what compression made of them:

- form="sparse": each pruned nn.Linear becomes a `SparseLinear`, its weight a torch.sparse_csr tensor with int32
  indices, multiplied by torch.addmv (one input) or torch.addmm (a batch); PyTorch runs both through MKL's sparse
  BLAS. Deep Compression §6.3 measured such kernels ~3x faster than dense on the CPU for pruned fc layers.
- form="int8": static int8 of every Linear and Conv layer, torch.ao's FX graph-mode post-training quantization
  (`prepare_fx` / `convert_fx` with the default qconfig of `backend`; "x86": fbgemm / oneDNN kernels, VNNI where
  the CPU has it): int8 weights per output channel, uint8 activations (7-bit range, reduce_range) from histograms
  calibrated on `calibration_data`, Conv-BN-ReLU and Linear-ReLU fused. The integers flow from layer to layer;
  only the input is quantized and the output dequantized.
- form="dynamic": torch.ao.quantization.quantize_dynamic on every nn.Linear (int8 weights, each input quantized
  on the fly); conv layers stay float.
- form="float": the decoded float network alone.

Channel pruning (`kdlab.prune_channels`, then retraining) makes a conv net smaller before any of these; `deploy`
takes the pruned network as it is. With `script=True` the result is compiled by TorchScript and frozen
(torch.jit.script + torch.jit.freeze), which removes the Python cost of calling each module: at batch 1 on
LeNet-300-100 that cost is a third of the time or more. Which form is fastest depends on the network, the batch
and the machine: `python -m kdlab.bench --deploy` measures them side by side.

PyTorch 2.14 marks torch.ao.quantization and torch.jit deprecated; their successors are not what measured fastest
here (torchao is not a kdlab dependency; torch.compile of the float LeNet-300-100 took 17 s to compile and ran
batch 1 no faster than eager PyTorch on this project's 2-core machine), so `deploy` uses them and silences
those notices while it runs them.
"""
from __future__ import annotations

import contextlib
import time
import warnings

import torch
from torch import nn

from .checks import check_module, is_number
from .codebook import dequantize_model
from .errors import UncompressedWeightWarning
from .layers import CONV, compressible_weights, replaceable_layers
from .linear import _input_batches
from .timing import median_seconds

FORMS = ("float", "sparse", "dynamic", "int8")
BACKENDS = ("x86", "fbgemm", "onednn", "qnnpack")
FLOAT_TYPES = (nn.Embedding, nn.EmbeddingBag, nn.RNNBase, nn.MultiheadAttention)  # int8 leaves these float
TORCH_NOTICES = (r"torch\.ao\.quantization is deprecated", r"torch\.quantize_per_tensor, torch\.quantize_per_channel",
                 r"`torch\.jit\.", r"Sparse CSR tensor support is in beta", r"Please use quant_min and quant_max",
                 r"The TorchScript type system doesn't support instance-level annotations")
TIMED_BLOCK = 0.002  # seconds of dense calls per timed block when `example_input` chooses dense or sparse
TIMED_REPEATS = 7


@contextlib.contextmanager
def _quiet_torch():
    """Silence PyTorch's deprecation and beta notices of the APIs `deploy` uses, and nothing else."""
    with warnings.catch_warnings():
        for message in TORCH_NOTICES:
            warnings.filterwarnings("ignore", message=message)
        yield


class SparseLinear(nn.Module):
    """y = x W^T + b with W stored as a torch.sparse_csr tensor (int32 indices): a pruned nn.Linear at nnz cost.

    One input vector goes through torch.addmv, a batch through torch.addmm on the transposed input: W (out × in,
    CSR) @ x^T (in × N), so the sparse matrix is the left operand, the case MKL's sparse BLAS handles. Inputs of
    any shape (..., in_features) work, as for nn.Linear. The stored bytes are 8 per non-zero weight plus 4 per
    output row, against 4 per weight dense: smaller below a density of about one half.
    """

    def __init__(self, weight, bias=None):
        super().__init__()
        if not isinstance(weight, torch.Tensor) or weight.ndim != 2 or not weight.is_floating_point():
            raise ValueError(f"weight must be a 2-D float tensor, got {_describe(weight)}")
        if bias is not None and (not isinstance(bias, torch.Tensor) or bias.shape != weight.shape[:1]):
            raise ValueError(f"bias must be None or a tensor of shape ({weight.shape[0]},), got {_describe(bias)}")
        weight = weight.detach()
        with _quiet_torch():
            csr = weight.to_sparse_csr()
            csr = torch.sparse_csr_tensor(csr.crow_indices().int(), csr.col_indices().int(), csr.values(),
                                          weight.shape, check_invariants=True)
        self.out_features, self.in_features = weight.shape
        self.register_buffer("weight", csr)
        self.register_buffer("bias", None if bias is None else bias.detach().clone())

    @classmethod
    def from_linear(cls, layer):
        """A SparseLinear computing what the nn.Linear `layer` computes (its weight as it is now)."""
        if not isinstance(layer, nn.Linear):
            raise ValueError(f"layer must be an nn.Linear, got {type(layer).__name__}")
        return cls(layer.weight, layer.bias)

    def __deepcopy__(self, memo):
        """A copy built from the dense weight: copy.deepcopy cannot reach a sparse CSR tensor's storage."""
        copied = SparseLinear(self.weight.to_dense(), self.bias).train(self.training)
        memo[id(self)] = copied
        return copied

    def density(self):
        """The fraction of the weights that are stored (non-zero)."""
        return self.weight.values().numel() / max(self.out_features * self.in_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x W^T + b for x of shape (..., in_features)."""
        flat = x.reshape(-1, self.in_features)
        bias = self.bias
        if flat.shape[0] == 1:
            row = flat[0]
            y = (torch.mv(self.weight, row) if bias is None else torch.addmv(bias, self.weight, row)).unsqueeze(0)
        else:
            columns = flat.t()
            y = (torch.mm(self.weight, columns) if bias is None
                 else torch.addmm(bias.unsqueeze(1), self.weight, columns)).t()
        if x.dim() == 2:
            return y
        return y.reshape(list(x.shape[:-1]) + [self.out_features])

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, density={self.density():.3f}"


def _describe(value):
    """A short description of `value` for error messages: a tensor's shape and dtype, else its type."""
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    return type(value).__name__


def _check_arguments(model, form, calibration_data, example_input, max_density, backend, script):
    """Raise ValueError naming the first argument of `deploy` that is not one it accepts; return the backend."""
    check_module(model)
    if isinstance(model, torch.jit.ScriptModule):
        raise ValueError("model must be an eager torch.nn.Module, got a TorchScript module (already deployed?)")
    if not isinstance(form, str) or form not in FORMS:
        raise ValueError(f"form must be one of {', '.join(map(repr, FORMS))}, got {form!r}")
    if not is_number(max_density) or not 0 < max_density <= 1:
        raise ValueError(f"max_density must be a number in (0, 1], got {max_density!r}")
    if not isinstance(script, bool):
        raise ValueError(f"script must be True or False, got {script!r}")
    if example_input is not None and (not isinstance(example_input, torch.Tensor) or example_input.ndim == 0):
        raise ValueError(f"example_input must be None or a tensor holding a batch of inputs, got "
                         f"{_describe(example_input)}")
    if form == "int8" and calibration_data is None:
        raise ValueError("calibration_data must be given for form='int8' (a DataLoader, Dataset or tensor of inputs "
                         "whose activations set the int8 ranges)")
    if form != "int8" and calibration_data is not None:
        raise ValueError(f"calibration_data must be None for form={form!r}: only form='int8' calibrates")
    supported = [name for name in BACKENDS if name in torch.backends.quantized.supported_engines]
    if backend is None:
        backend = torch.backends.quantized.engine
        if form in ("int8", "dynamic") and backend not in supported:
            raise ValueError(f"backend must be one of {', '.join(map(repr, supported))}: the current quantized engine "
                             f"{backend!r} is none of them")
    elif not isinstance(backend, str) or backend not in supported:
        raise ValueError(f"backend must be None or one of {', '.join(map(repr, supported))}, got {backend!r}")
    return backend


def _run(model, example_input):
    """model(example_input) without gradients, a failure reported as a ValueError about example_input."""
    try:
        with torch.no_grad():
            return model(example_input)
    except (RuntimeError, TypeError, ValueError) as error:
        raise ValueError(f"example_input must be an input the model accepts, got {_describe(example_input)}: "
                         f"{error}") from error


def _layer_inputs(model, names, example_input):
    """{name: the input the layer `name` of `model` receives when the model runs on `example_input`}."""
    seen, handles = {}, []
    for name in names:
        def hook(module, inputs, output, name=name):
            seen.setdefault(name, inputs[0].detach())
        handles.append(model.get_submodule(name).register_forward_hook(hook))
    try:
        _run(model, example_input)
    finally:
        for handle in handles:
            handle.remove()
    return seen


def _sparse_is_faster(layer, sparse, x):
    """True if `sparse` computes `layer`(x) in less median time than `layer`: TIMED_REPEATS blocks of each, timed
    round-robin, a block as many calls as take the dense layer about TIMED_BLOCK seconds (at least one)."""
    with torch.no_grad():
        layer(x)
        began = time.perf_counter()
        layer(x)
        calls = max(1, round(TIMED_BLOCK / max(time.perf_counter() - began, 1e-7)))

        def block(module):
            def run():
                for _ in range(calls):
                    module(x)
            return run

        seconds = median_seconds({"dense": block(layer), "sparse": block(sparse)}, TIMED_REPEATS)
    return seconds["sparse"] < seconds["dense"]


def _sparse(model, max_density, example_input):
    """Replace the pruned Linear layers of `model` by SparseLinear ones; {name: kernel}, {name: reason left dense}."""
    linear = [(name, layer) for name, layer in replaceable_layers(model) if isinstance(layer, nn.Linear)]
    inputs = _layer_inputs(model, [name for name, _ in linear], example_input) if example_input is not None else {}
    kernels, dense = {}, {}
    for name, layer in linear:
        weight = layer.weight.detach()
        density = int(torch.count_nonzero(weight)) / max(weight.numel(), 1)
        if density > max_density:
            dense[name] = f"Linear, density {density:.3f} > max_density {max_density}"
            continue
        sparse = SparseLinear.from_linear(layer)
        if name in inputs and not _sparse_is_faster(layer, sparse, inputs[name]):
            dense[name] = f"Linear, density {density:.3f}: dense measured faster on example_input"
            continue
        model.set_submodule(name, sparse)
        kernels[name] = f"sparse_csr (density {density:.3f})"
    return kernels, dense


def _dynamic(model, backend):
    """torch.ao's quantize_dynamic of every nn.Linear of `model`, in place (int8 weights)."""
    from torch.ao.quantization import default_dynamic_qconfig, quantize_dynamic

    with _engine(backend):
        return quantize_dynamic(model, {nn.Linear: default_dynamic_qconfig}, dtype=torch.qint8, inplace=True)


def _int8_kernels(model, kind):
    """{name: `kind`} of the torch.ao quantized modules with int8 weights in `model`."""
    from torch.ao.nn.quantized.modules.utils import WeightedQuantizedModule

    return {name: kind for name, module in model.named_modules() if isinstance(module, WeightedQuantizedModule)}


@contextlib.contextmanager
def _engine(backend):
    """torch.backends.quantized.engine set to `backend` while the block runs."""
    before = torch.backends.quantized.engine
    torch.backends.quantized.engine = backend
    try:
        yield
    finally:
        torch.backends.quantized.engine = before


def _int8(model, calibration_data, backend):
    """Static int8 of `model` by FX graph-mode PTQ: prepared, calibrated on `calibration_data`, converted."""
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    batches = iter(_input_batches(calibration_data))
    first = next(batches)
    mapping = get_default_qconfig_mapping(backend)
    for kind in FLOAT_TYPES:
        mapping.set_object_type(kind, None)
    with _engine(backend):
        try:
            prepared = prepare_fx(model, mapping, (first[:1],))
        except Exception as error:  # torch.fx raises many kinds of errors on what it cannot trace
            raise ValueError(f"model must be traceable by torch.fx for form='int8': {type(error).__name__}: "
                             f"{error}") from error
        with torch.no_grad():
            for batch in (first, *batches):
                try:
                    prepared(batch)
                except (RuntimeError, TypeError) as error:
                    raise ValueError(f"calibration_data must hold inputs the model accepts, got a batch of shape "
                                     f"{tuple(batch.shape)}: {error}") from error
        return convert_fx(prepared)


def _float_layout(model):
    """(weight key, module name, module type name) of each compressible weight of the float `model`."""
    return [(key, key if name == "weight" else key.rpartition(".")[0], type(module).__name__)
            for key, module, name in compressible_weights(model)]


def _left_float(layout, converted, dense):
    """{key: why} of the weights in `layout` that `converted` still computes with float weights."""
    left = {}
    for key, name, kind in layout:
        if name in dense:
            left[key] = dense[name]
            continue
        try:
            now = converted.get_submodule(name)
        except AttributeError:
            continue  # fused into a quantized neighbour (BatchNorm into its conv)
        if isinstance(now, (nn.Linear, *CONV, *FLOAT_TYPES)):
            left[key] = kind
    return left


def _compiled(model):
    """torch.jit.freeze(torch.jit.script(model)), or None with a warning if TorchScript cannot compile it."""
    try:
        with _quiet_torch():
            return torch.jit.freeze(torch.jit.script(model))
    except Exception as error:  # TorchScript raises many kinds of errors on Python it does not support
        warnings.warn(f"deploy could not compile the model with TorchScript ({type(error).__name__}: "
                      f"{str(error).splitlines()[0] if str(error) else ''}); it returns the eager module",
                      RuntimeWarning, stacklevel=3)
        return None


def deploy(model, form, calibration_data=None, example_input=None, max_density=0.3, backend=None, script=True):
    """An inference-only copy of `model` that runs in `form` ("float", "sparse", "dynamic" or "int8") on the CPU.

    `model` is any kdlab network: float, pruned (torch.nn.utils.prune masks), shared (`share_weights`), quantized
    (`quantize_model`, any scheme), QAT-trained or channel-pruned (`prune_channels`). Its weights are decoded once
    (`dequantize_model`), so the result holds only the weights it runs on, not codebook indices and masks;
    `model` itself is not changed. Then, by `form`:

    - "sparse": every nn.Linear with at most `max_density` non-zero weights becomes a `SparseLinear` (CSR). With
      `example_input` (a batch like the ones the model will see), each such layer is timed on the input it gets
      (median of TIMED_REPEATS blocks of calls, timed round-robin) and stays dense where dense measures faster.
    - "int8": static int8 of every Linear and Conv layer (torch.ao FX PTQ for `backend`), activation ranges from
      `calibration_data` (a DataLoader, Dataset or tensor of inputs; required).
    - "dynamic": torch.ao.quantization.quantize_dynamic of every nn.Linear.
    - "float": the decoded float network.

    `backend` is the quantized engine ("x86", "fbgemm", "onednn", "qnnpack", those this PyTorch supports; default:
    torch.backends.quantized.engine). With `script` the result is TorchScript, frozen; if TorchScript cannot compile
    the model, a RuntimeWarning says so and the eager module is returned. Weights the form does not put on its own
    kernel (conv layers under "sparse" and "dynamic", Linear layers denser than `max_density`, Embedding, recurrent
    and attention weights under every form but "float") stay float, named in an UncompressedWeightWarning. The
    result is in eval mode without gradients and carries `kdlab_deploy`: {"form", "kernels" {layer: kernel},
    "left_float" {weight: why}, "scripted"}.
    """
    backend = _check_arguments(model, form, calibration_data, example_input, max_density, backend, script)
    with _quiet_torch():
        decoded = dequantize_model(model).cpu().eval().requires_grad_(False)
    if example_input is not None:
        example_input = example_input.cpu()
        _run(decoded, example_input)
    layout = _float_layout(decoded)
    kernels, dense = {}, {}
    with _quiet_torch():
        if form == "sparse":
            converted = decoded
            kernels, dense = _sparse(converted, max_density, example_input)
        elif form == "dynamic":
            converted = _dynamic(decoded, backend)
            kernels = _int8_kernels(converted, "int8 dynamic")
        elif form == "int8":
            converted = _int8(decoded, calibration_data, backend)
            kernels = _int8_kernels(converted, "int8 static")
        else:
            converted = decoded
    left = {} if form == "float" else _left_float(layout, converted, dense)
    if left:
        warnings.warn(f"deploy(form={form!r}) left {len(left)} weight tensor(s) as float: "
                      f"{', '.join(f'{key} ({why})' for key, why in left.items())}", UncompressedWeightWarning,
                      stacklevel=2)
    converted.eval()
    compiled = _compiled(converted) if script else None
    result = converted if compiled is None else compiled
    result.kdlab_deploy = {"form": form, "kernels": kernels, "left_float": left, "scripted": compiled is not None}
    return result
