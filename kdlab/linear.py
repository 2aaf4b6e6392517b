"""Affine (linear) and log quantization of weights and activations: integer weights, calibrated activation ranges.

Affine quantization (Jacob et al. 2018, "Quantization and Training of Neural Networks for Efficient
Integer-Arithmetic-Only Inference", CVPR; their eq. 1 is r = S (q - Z)) maps a real value r to an integer q
with a scale S and a zero point Z, and back:

    q = clip(round(r / S) + Z, q_min, q_max),        r ≈ S (q - Z)

Weights of 2..8 bits are stored as signed integers, bit-packed (a byte each at 8 bits), with float scales:
symmetric per output channel (S_c = max|W_c| / (2^(b-1) - 1), Z = 0) or affine per tensor (over [min W, max W]).
A layer's input (activation) is quantized to uint8 over a range calibrated on sample inputs: post-training
quantization (PTQ). Here the integer arithmetic is simulated: the forward pass decodes the weights and
fake-quantizes the input, so the outputs are those of the integer model while the stored state_dict really holds
the packed integers.

Log quantization (Miyashita, Lee & Murmann 2016, "Convolutional Neural Networks using Logarithmic Data
Representation") keeps only the sign and a power-of-two exponent of each weight:

    q = sign(r) · 2^clip(round(log2 |r|), e_min, e_max)
"""
from __future__ import annotations

import math

import torch
from torch.utils.data import DataLoader, Dataset

from .bitpack import pack_indices, unpack_indices
from .checks import is_int, is_number
from .data import make_loader
from .decoded import DecodedLayer
from .prune import current_weight, prunable_layers

SCHEMES = ("linear", "log")
MIN_BITS, MAX_BITS = 2, 8  # weights of 2..8 bits, stored in int8 tensors
ACTIVATION_BITS = 8  # inputs are simulated uint8
PERCENTILE = 99.99  # the "percentile" observer keeps the 0.01th..99.99th percentiles
CALIBRATION_BATCH = 256


def check_bits(value, name, top, low=1):
    """`value` as an int, checked to be in low..top; ValueError naming it `name` otherwise."""
    if not is_int(value) or not low <= value <= top:
        raise ValueError(f"{name} must be an int in {low}..{top}, got {value!r}")
    return int(value)


def check_per_channel(per_channel):
    """Raise ValueError unless `per_channel` is True or False."""
    if not isinstance(per_channel, bool):
        raise ValueError(f"per_channel must be True or False, got {per_channel!r}")


def check_observer(observer):
    """The percentile an observer keeps: None for "minmax", 99.99 for "percentile", or the number p in [50, 100]."""
    if isinstance(observer, str) and observer in ("minmax", "percentile"):
        return None if observer == "minmax" else PERCENTILE
    if is_number(observer) and 50 <= observer <= 100:
        return float(observer)
    raise ValueError(f"observer must be 'minmax', 'percentile' or a percentile in [50, 100], got {observer!r}")


def _rows(values, ndim):
    """A 0-d tensor as it is, a 1-D one (one value per output channel) shaped to broadcast along dim 0."""
    return values if values.ndim == 0 else values.reshape(-1, *(1,) * (ndim - 1))


def _nonzero(scale):
    """`scale` with zeros (an all-zero range: any scale will do) replaced by ones."""
    return torch.where(scale > 0, scale, torch.ones_like(scale))


def affine_qparams(low, high, qmin, qmax):
    """Scale and zero point mapping [low, high], widened to hold 0, onto the integers qmin..qmax (Jacob et al.).

    S = (high - low) / (qmax - qmin),  Z = qmin - round(low / S): zero is exactly representable (as Z), so
    pruned weights and ReLU zeros stay exact. Returns float32 S and int32 Z, the dtypes PyTorch's ops take.
    """
    low = torch.as_tensor(low, dtype=torch.float32).clamp(max=0)
    high = torch.as_tensor(high, dtype=torch.float32).clamp(min=0)
    scale = _nonzero((high - low) / (qmax - qmin))
    zero_point = (qmin - torch.round(low / scale)).clamp(qmin, qmax).to(torch.int32)
    return scale, zero_point


def weight_qparams(weight, bits, per_channel=True):
    """(S, Z, q_min, q_max) of a `bits`-bit weight: symmetric per output channel, or affine per tensor (Jacob et al.).

    Per channel (dim 0): S_c = max|W_c| / (2^(b-1) - 1), Z_c = 0, q in -(2^(b-1) - 1)..2^(b-1) - 1.
    Per tensor: `affine_qparams` of [min W, max W] onto -2^(b-1)..2^(b-1) - 1.
    """
    weight = weight.detach()
    if per_channel:
        qmax = 2 ** (bits - 1) - 1
        scale = _nonzero(weight.abs().amax(dim=tuple(range(1, weight.ndim))).float() / qmax)
        return scale, torch.zeros(scale.shape, dtype=torch.int32, device=scale.device), -qmax, qmax
    qmin, qmax = -2 ** (bits - 1), 2 ** (bits - 1) - 1
    return (*affine_qparams(weight.min(), weight.max(), qmin, qmax), qmin, qmax)


def quantize_affine(r, scale, zero_point, qmin, qmax):
    """q = clip(round(r / S) + Z, qmin, qmax) (Jacob et al.) as int8; S and Z are 0-d or one per output channel.

    r / S is computed as r · (1 / S) in float32 and rounded half to even, as PyTorch's quantize and fake-quantize
    kernels do, so the integers are exactly theirs. qmin..qmax must lie in -128..127.
    """
    scale, zero_point = _rows(scale, r.ndim), _rows(zero_point, r.ndim)
    return (torch.round(r.float() * (1.0 / scale)) + zero_point).clamp(qmin, qmax).to(torch.int8)


def dequantize_affine(q, scale, zero_point):
    """r ≈ S (q - Z) (Jacob et al.) in float32; S and Z are 0-d or one per output channel."""
    return (q.float() - _rows(zero_point, q.ndim)) * _rows(scale, q.ndim)


def log_quantize(weight, bits, per_channel=True):
    """(codes as int8, exponent offsets as int16) of the log quantization of a weight (Miyashita et al.).

    q = sign(r) · 2^clip(round(log2 |r|), e_min, e_max), with e_max = round(log2 max|r|) of the output channel
    (or of the tensor) and e_min = e_max - (2^(b-1) - 2): 2^(b-1) - 1 powers of two a side. The code of r is
    sign(r) · (e - e_min + 1), in -(2^(b-1) - 1)..2^(b-1) - 1, and 0 for weights whose exponent falls below
    e_min (zero stays zero); the offset is e_min - 1, so r ≈ sign(code) · 2^(|code| + offset).
    """
    weight = weight.detach().float()
    levels = 2 ** (bits - 1) - 1
    top = weight.abs().amax(dim=tuple(range(1 if per_channel else 0, weight.ndim)))
    e_max = torch.where(top > 0, torch.round(torch.log2(top)), torch.zeros_like(top))
    offset = e_max - levels
    index = (torch.round(torch.log2(weight.abs())) - _rows(offset, weight.ndim)).clamp(max=levels)
    codes = torch.where(index >= 1, index, torch.zeros_like(index)) * torch.sign(weight)
    return codes.to(torch.int8), offset.to(torch.int16)


def log_dequantize(codes, offset):
    """r ≈ sign(q) · 2^(|q| + offset), 0 where q = 0 (Miyashita et al.); offset is 0-d or one per output channel."""
    return torch.sign(codes).float() * torch.exp2((codes.abs().int() + _rows(offset, codes.ndim)).float())


def activation_qparams(low, high):
    """Scale and zero point of the uint8 quantization of an activation range [low, high] (Jacob et al., q in 0..255)."""
    return affine_qparams(low, high, 0, 2 ** ACTIVATION_BITS - 1)


def fake_quantize_activation(x, scale, zero_point):
    """x through uint8 and back, S (clip(round(x / S) + Z, 0, 255) - Z), by PyTorch's op (its backward is the STE)."""
    return torch.fake_quantize_per_tensor_affine(x.float(), scale, zero_point, 0, 2 ** ACTIVATION_BITS - 1).to(x.dtype)


def _input_batches(calibration_data):
    """The input batches of a DataLoader or Dataset (of inputs or (input, label) pairs), or of a tensor of inputs."""
    if isinstance(calibration_data, torch.Tensor):
        batches = calibration_data.split(CALIBRATION_BATCH) if calibration_data.ndim and len(calibration_data) else ()
    elif isinstance(calibration_data, (Dataset, DataLoader)):
        batches = (calibration_data if isinstance(calibration_data, DataLoader)
                   else make_loader(calibration_data, CALIBRATION_BATCH))
    else:
        raise ValueError(f"calibration_data must be a DataLoader, Dataset or tensor of inputs, "
                         f"got {type(calibration_data).__name__}")
    if len(batches) == 0:
        raise ValueError("calibration_data is empty")
    return (batch[0] if isinstance(batch, (tuple, list)) else batch for batch in batches)


def _percentile(ordered, q):
    """The q-th percentile of sorted values, interpolated linearly between neighbours as numpy.percentile does."""
    position = (len(ordered) - 1) * q / 100
    below = math.floor(position)
    above = min(below + 1, len(ordered) - 1)
    return float(ordered[below] + (ordered[above] - ordered[below]) * (position - below))


@torch.no_grad()
def calibrate(model, calibration_data, observer="minmax"):
    """{layer name: (low, high)}: the range of each Linear/Conv2d layer's input over `calibration_data`.

    `calibration_data` is a DataLoader, a Dataset or a tensor of inputs. The model runs on them in eval mode while
    forward hooks observe its layers' inputs: "minmax" keeps the smallest and largest values, "percentile" (or a
    number p) the (100 - p)th and p-th percentiles of all of them (p = 99.99), ignoring rare outliers; the
    percentile observer keeps every value, so give it a few thousand inputs at most.
    """
    percentile = check_observer(observer)
    batches = _input_batches(calibration_data)
    seen = {}

    def observe(name):
        def hook(module, inputs, output):
            x = inputs[0].detach().float()
            seen.setdefault(name, []).append(torch.stack([x.min(), x.max()]) if percentile is None else x.reshape(-1))
        return hook

    handles = [layer.register_forward_hook(observe(name)) for name, layer in prunable_layers(model)]
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    was_training = model.training
    model.eval()
    try:
        for inputs in batches:
            try:
                model(inputs.to(device))
            except RuntimeError as error:  # a shape or dtype the model does not take
                raise ValueError(f"calibration_data must hold inputs the model accepts, got a batch of shape "
                                 f"{tuple(inputs.shape)}: {error}") from error
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    if percentile is None:
        pairs = {name: torch.stack(values) for name, values in seen.items()}
        return {name: (float(v[:, 0].min()), float(v[:, 1].max())) for name, v in pairs.items()}
    ordered = {name: torch.cat(values).double().sort().values for name, values in seen.items()}
    return {name: (_percentile(v, 100 - percentile), _percentile(v, percentile)) for name, v in ordered.items()}


def _check_range(input_range):
    """`input_range` as a (low, high) pair of floats, checked to be finite with low <= high."""
    pair = tuple(input_range) if isinstance(input_range, (tuple, list)) else ()
    if len(pair) != 2 or not all(is_number(v) and math.isfinite(v)
                                 for v in pair) or pair[0] > pair[1]:
        raise ValueError(f"input_range must be None or a (low, high) pair of finite numbers, low <= high, "
                         f"got {input_range!r}")
    return float(pair[0]), float(pair[1])


class LinearQuantizedLayer(DecodedLayer):
    """A Linear or Conv2d whose weight is stored as `bits`-bit integers (affine or log codes) with float scales.

    The integers q (in -2^(b-1)..2^(b-1) - 1) are kept as q + 2^(b-1), bit-packed into the uint8 buffer
    `weight_packed` (`pack_indices`): one byte per weight at 8 bits, half a byte at 4. The bias stays float.

    `scheme` "linear" stores q, S and Z of the affine quantization (`weight_qparams`), "log" the codes and
    exponent offsets of `log_quantize`. With `input_range` = (low, high) the input is fake-quantized to uint8
    over that range (`activation_qparams`) before the layer runs; without, only the weight is quantized.
    """

    def __init__(self, layer, bits=8, scheme="linear", per_channel=True, input_range=None):
        super().__init__(layer)
        check_bits(bits, "bits", MAX_BITS, MIN_BITS)
        if scheme not in SCHEMES:
            raise ValueError(f"scheme must be one of {', '.join(map(repr, SCHEMES))}, got {scheme!r}")
        check_per_channel(per_channel)
        weight = current_weight(layer)
        self.bits, self.scheme, self.per_channel = bits, scheme, per_channel
        if scheme == "linear":
            scale, zero_point, qmin, qmax = weight_qparams(weight, bits, per_channel)
            codes = quantize_affine(weight, scale, zero_point, qmin, qmax)
            self.register_buffer("weight_scale", scale)
            self.register_buffer("weight_zero_point", zero_point)
        else:
            codes, offset = log_quantize(weight, bits, per_channel)
            self.register_buffer("weight_exponent", offset)
        self.register_buffer("weight_packed", pack_indices(codes.reshape(-1).int() + 2 ** (bits - 1), bits))
        self.register_buffer("input_scale", None)
        self.register_buffer("input_zero_point", None)
        if input_range is not None:
            scale, zero_point = activation_qparams(*_check_range(input_range))
            self.input_scale, self.input_zero_point = scale.to(weight.device), zero_point.to(weight.device)

    @property
    def weight_q(self):
        """The integer weights (affine q or log codes) as int8, unpacked from `weight_packed`."""
        offsets = unpack_indices(self.weight_packed, self.bits, math.prod(self.shape))
        return (offsets - 2 ** (self.bits - 1)).to(torch.int8).reshape(self.shape)

    def decoded_weight(self):
        """The float weight tensor: S (q - Z), or sign(q) · 2^(|q| + offset) for the log scheme."""
        if self.scheme == "linear":
            return dequantize_affine(self.weight_q, self.weight_scale, self.weight_zero_point)
        return log_dequantize(self.weight_q, self.weight_exponent)

    def forward(self, x):
        """The layer's output with the decoded weight, from the uint8-simulated input when a range was given."""
        if self.input_scale is not None:
            x = fake_quantize_activation(x, self.input_scale, self.input_zero_point)
        return super().forward(x)

    def extra_repr(self):
        return (f"{self.kind}, shape={self.shape}, bits={self.bits}, scheme={self.scheme!r}, "
                f"per_channel={self.per_channel}, input={'uint8' if self.input_scale is not None else 'float'}")
