"""Weight sharing (Deep Compression, Han, Mao & Dally 2016, §3): codebooks, their fine-tuning, quantized modules.

Two forms of a network whose weights are codebook values:

- *shared* (`share_weights`): each compressible weight (kdlab/layers.py: Linear, Conv, Embedding, attention
  and recurrent weights) becomes, through torch.nn.utils.parametrize,
  W = C[I] * M, with a trainable codebook C of the layer's surviving (non-zero) weights, fixed indices I and
  the fixed pruning mask M. This is the training form: autograd's gradient of C is the paper's eq. 3.
- *quantized* (`quantize_model`): each Linear/Conv layer is replaced by a module that stores only the indices,
  bit-packed into uint8, and the codebook, so its state_dict is small. This is the storage form.

`quantize_model(..., scheme="linear" or "log")` stores int8 affine or log codes instead (kdlab/linear.py), from a
float, shared, pruned or QAT (kdlab/qat.py) network. `dequantize_model` turns any of them back into an ordinary
float network.
"""
from __future__ import annotations

import math
import warnings

import torch
from torch import nn
from torch.nn.utils import parametrize

from .bitpack import pack_indices, unpack_indices
from .checks import check_module
from .decoded import DecodedLayer, make_float_layer
from .errors import UncompressedWeightWarning
from .kmeans import check_entropy_weight, kmeans_1d
from .layers import PRUNABLE, compressible_weights, layer_type, replaceable_layers, weight_key
from .linear import (MAX_BITS, MIN_BITS, LinearQuantizedLayer, calibrate, check_bits, check_observer,
                     check_per_channel)
from .prune import clone_model, current_weight, remove_masks
from .qat import input_ranges, qat_settings
from .train import cross_entropy, fit, make_optimizer

MAX_SHARE_BITS = 15  # a .kdz layer adds one codebook entry for zero to at most 2**bits centroids: <= 65,536 symbols
MAX_QUANTIZE_BITS = 16
SCHEMES = ("kmeans", "linear", "log")


class SharedWeight(nn.Module):
    """Parametrization W = C[I] * M: the weight from the codebook C (the parameter), indices I and mask M."""

    def __init__(self, index, mask):
        super().__init__()
        self.register_buffer("index", index)
        self.register_buffer("mask", mask)

    def forward(self, codebook):
        """The weight tensor: codebook[index] where the mask keeps a weight, zero elsewhere."""
        return codebook[self.index] * self.mask

    def right_inverse(self, weight):
        """The codebook that best gives `weight`: each centroid is the mean of its members (Lloyd's update)."""
        k = int(self.index.max()) + 1 if self.index.numel() else 1
        keep = self.mask.reshape(-1) != 0
        index = self.index.reshape(-1)[keep]
        sums = torch.zeros(k, dtype=weight.dtype, device=weight.device).index_add_(0, index,
                                                                                    weight.reshape(-1)[keep])
        counts = torch.bincount(index, minlength=k).clamp_min(1).to(weight.dtype)
        return sums / counts


def _bits_per_layer(names, bits, top, low=1, what="Linear or Conv layers"):
    """{name: bits in low..top} for an int (every one of `names`, the model's `what`) or a {name: bits} dict."""
    if isinstance(bits, dict):
        unknown = [str(name) for name in bits if name not in names]
        if unknown:
            raise ValueError(f"bits must name {what} of the model ({', '.join(sorted(names))}), "
                             f"got {', '.join(unknown)}")
        return {name: check_bits(bits[name], f"bits[{name!r}]", top, low) for name in names if name in bits}
    value = check_bits(bits, "bits", top, low)
    return {name: value for name in names}


def _layer_names(model):
    """The names of the Linear/Conv layers of `model` that quantize_model replaces."""
    return [name for name, _ in replaceable_layers(model)]


def shared_weights(model):
    """The (layer name, module, tensor name, SharedWeight) of every codebook-shared weight tensor of `model`."""
    check_module(model)
    return [(layer, module, name, p) for layer, module in model.named_modules() if parametrize.is_parametrized(module)
            for name, chain in module.parametrizations.items() for p in chain if isinstance(p, SharedWeight)]


def shared_layers(model):
    """The (key, module, SharedWeight) triples of the weights of `model` that are codebook-shared."""
    return [(weight_key(layer, name), module, shared) for layer, module, name, shared in shared_weights(model)]


def share_weights(model, bits=5, init="linear", seed=0, entropy_weight=0.0):
    """Share each layer's surviving weights through a codebook of at most 2**bits k-means centroids (§3.1).

    `bits` is an int for every compressible weight (kdlab.layers: Linear, Conv, Embedding, attention and
    recurrent weights), or {key: bits} for just those (keys as in kdlab.sparsity). The
    non-zero weights of a layer are clustered by `kmeans_1d` from the `init` initialisation ("linear",
    "density" or "random" drawn with `seed`, §3.2); zeros (pruned weights) stay exactly zero. entropy_weight > 0
    clusters them by entropy-constrained k-means instead, for shorter Huffman codes (see kmeans_1d). Pruning
    masks of torch.nn.utils.prune are folded in first. Works in place and returns `model`.
    """
    if any(True for _ in shared_weights(model)):
        raise ValueError("model already has shared weights: share the weights of a float network")
    check_entropy_weight(entropy_weight)
    per_layer = _bits_per_layer([key for key, _, _ in compressible_weights(model)], bits, MAX_SHARE_BITS,
                                what="compressible weights")
    remove_masks(model)
    for key, module, name in compressible_weights(model):
        if key not in per_layer:
            continue
        weight = getattr(module, name).detach()
        keep = weight != 0
        index = torch.zeros(weight.shape, dtype=torch.long, device=weight.device)
        if keep.any():
            _, labels = kmeans_1d(weight[keep], 1 << per_layer[key], init=init, seed=seed,
                                  entropy_weight=entropy_weight)
            index[keep] = labels
        parametrize.register_parametrization(module, name, SharedWeight(index, keep.to(weight.dtype)))
    return model


def codebooks(model):
    """The codebook parameters of the shared layers of `model`, in layer order."""
    return [module.parametrizations[name].original for _, module, name, _ in shared_weights(model)]


def finetune_codebook(model, loader, epochs=1, lr=1e-4, optimizer="adam", momentum=0.9, device="auto",
                      loss_fn=cross_entropy):
    """Retrain only the codebooks of a shared model; indices and masks stay fixed (§3.3, eq. 3).

    The gradient of centroid k is the sum of the gradients of the weights that share it,
    dL/dC_k = sum_ij dL/dW_ij * 1(I_ij = k), which autograd gives through W = C[I] * M. The other
    parameters are frozen while it runs; `loss_fn(logits, inputs, labels)` is the loss. Returns fit's history.
    """
    books = codebooks(model)
    if not books:
        raise ValueError("model has no shared weights: call share_weights(model, bits) first")
    frozen = [p for p in model.parameters() if p.requires_grad and all(p is not b for b in books)]
    for p in frozen:
        p.requires_grad_(False)
    try:
        return fit(model, loader, epochs, optimizer=make_optimizer(books, optimizer, lr, momentum),
                   loss_fn=loss_fn, device=device, desc="codebook")
    finally:
        for p in frozen:
            p.requires_grad_(True)


class QuantizedLayer(DecodedLayer):
    """A Linear or Conv2d whose weight is stored as bit-packed codebook indices (uint8 bytes) and a codebook."""

    def __init__(self, layer, bits, init="linear", seed=0):
        super().__init__(layer)
        check_bits(bits, "bits", MAX_QUANTIZE_BITS)
        weight = layer.weight.detach()
        self.bits = bits
        codebook, index = _quantize(weight.reshape(-1), 1 << bits, init, seed)
        self.register_buffer("codebook", codebook)
        self.register_buffer("packed", pack_indices(index, bits))

    def index(self):
        """The codebook index of every weight, flattened (int64)."""
        return unpack_indices(self.packed, self.bits, math.prod(self.shape))

    def decoded_weight(self):
        """The float weight tensor: codebook[index]."""
        return self.codebook[self.index()].reshape(self.shape)

    def extra_repr(self):
        return f"{self.kind}, shape={self.shape}, bits={self.bits}"


def _quantize(flat, k, init, seed):
    """(codebook of exactly k sorted values, indices): k-means of the weights, zero kept exact if present.

    When some weights are exactly zero (pruned) and k > 1, zero is one codebook entry and the non-zero
    weights share the other k - 1. Short codebooks are padded by repeating their largest value, so the
    state_dict's shapes depend only on the architecture and `bits`.
    """
    zero = flat == 0
    if k == 1 or not zero.any() or zero.all():
        centroids, index = kmeans_1d(flat, k, init=init, seed=seed)
    else:
        centroids, labels = kmeans_1d(flat[~zero], k - 1, init=init, seed=seed)
        at = int(torch.searchsorted(centroids, flat.new_zeros(1)))
        centroids = torch.cat([centroids[:at], flat.new_zeros(1), centroids[at:]])
        index = torch.full(flat.shape, at, dtype=torch.long, device=flat.device)
        index[~zero] = labels + (labels >= at).long()
    codebook = torch.cat([centroids, centroids[-1:].expand(k - len(centroids))])
    return codebook.to(flat.dtype), index


def float_layer(layer):
    """A plain float copy of a Linear/Conv layer (pruned, shared or QAT: its effective weight) or of a quantized one."""
    if isinstance(layer, (QuantizedLayer, LinearQuantizedLayer)):
        return layer.to_float()
    options = ({} if isinstance(layer, nn.Linear) else
               {key: getattr(layer, key) for key in ("stride", "padding", "dilation", "groups", "padding_mode")})
    bias = None if layer.bias is None else layer.bias.detach()
    return make_float_layer(layer_type(layer), tuple(layer.weight.shape), options, current_weight(layer), bias)


def swap_layers(model, make):
    """`model` with each layer that make(name, layer) maps to a module replaced by it, in place.

    A model that is itself such a layer (a bare nn.Linear) is returned replaced whole.
    """
    for name, layer in list(model.named_modules()):
        new = make(name, layer)
        if new is not None and not name:
            return new
        if new is not None:
            model.set_submodule(name, new)
    return model


def replace_layers(model, make):
    """A copy of `model` in which each layer that make(name, layer) maps to a module is replaced by it.

    The copied layers are replaced, never changed in place: copies of a parametrized module share its
    class with the original, so removing a parametrization from a copy would break the original.
    """
    return swap_layers(clone_model(model), make)


def _check_qat(model, bits, scheme, per_channel):
    """Raise ValueError unless a QAT model is quantized as it trained: scheme "linear", its bits and per_channel."""
    trained = qat_settings(model)
    if not trained:
        return
    if scheme != "linear":
        raise ValueError(f"scheme must be 'linear' for a model prepared for QAT, got {scheme!r}: quantize "
                         f"dequantize_model(model) to drop what it learned")
    per_layer = _bits_per_layer(_layer_names(model), bits, MAX_BITS, MIN_BITS)
    for name, (trained_bits, trained_per_channel) in trained.items():
        if name in per_layer and (per_layer[name], per_channel) != (trained_bits, trained_per_channel):
            raise ValueError(f"bits and per_channel must be those layer {name!r} trained with in QAT "
                             f"({trained_bits}, {trained_per_channel}), got ({per_layer[name]}, {per_channel})")


def quantize_model(model, bits=8, init="linear", seed=0, scheme="kmeans", per_channel=True, calibration_data=None,
                   observer="minmax"):
    """A copy of `model` whose Linear/Conv layers store `bits`-bit integers: codebook indices, affine or log codes.

    `bits` is an int or {layer name: bits} for just those layers. Shared, pruned or QAT models are read through
    their effective weights. Biases, BatchNorm and other parameters stay float; so do the weights of other layers
    (Embedding, attention and recurrent weights, the out_proj attention reads directly), named in an
    UncompressedWeightWarning: share_weights and save_compressed compress those.

    scheme="kmeans" (bits 1..16): each layer's weights are clustered by `kmeans_1d` (from `init`, with `seed` for
    "random") into 2**bits shared values stored as bit-packed indices and a codebook, zero kept exact when the
    layer is pruned; a model whose layers have at most 2**bits distinct values is stored exactly.

    scheme="linear" or "log" (bits 2..8): `LinearQuantizedLayer`s with int8 weights, affine r ≈ S (q - Z) per output
    channel (`per_channel`) or per tensor (Jacob et al. 2018), or signed powers of two (Miyashita et al. 2016).
    The inputs of the layers are simulated uint8 over ranges calibrated on `calibration_data` (a DataLoader,
    Dataset or tensor of inputs) by the `observer` ("minmax", "percentile" or a percentile p), or learned by a
    QAT model (`prepare_qat`), which must be quantized with the "linear" scheme, bits and per_channel it trained with;
    with neither, only the weights are quantized. At 2 bits the symmetric per-channel codes are ternary
    ({-S_c, 0, S_c}): per_channel=False (affine, 4 levels) usually keeps more accuracy there.
    """
    if not isinstance(scheme, str) or scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {', '.join(map(repr, SCHEMES))}, got {scheme!r}")
    check_per_channel(per_channel)
    check_observer(observer)
    _check_qat(model, bits, scheme, per_channel)
    if scheme == "kmeans":
        if calibration_data is not None:
            raise ValueError("calibration_data must be None for scheme='kmeans': it calibrates the inputs of the "
                             "'linear' and 'log' schemes")
        model = dequantize_model(model)
        per_layer = _bits_per_layer(_layer_names(model), bits, MAX_QUANTIZE_BITS)
        _warn_left_float(model)
        return replace_layers(model, lambda name, layer: QuantizedLayer(layer, per_layer[name], init, seed)
                              if name in per_layer else None)
    ranges = input_ranges(model)
    model = dequantize_model(model)
    per_layer = _bits_per_layer(_layer_names(model), bits, MAX_BITS, MIN_BITS)
    _warn_left_float(model)
    if calibration_data is not None:
        ranges = calibrate(model, calibration_data, observer)
    return replace_layers(model, lambda name, layer: LinearQuantizedLayer(layer, per_layer[name], scheme, per_channel,
                                                                          ranges.get(name))
                          if name in per_layer else None)


def _warn_left_float(model):
    """Warn, naming them, about the compressible weights of `model` that quantize_model cannot replace."""
    replaced = set(_layer_names(model))
    left = [key for key, _, _ in compressible_weights(model) if key not in replaced]
    if left:
        warnings.warn(f"quantize_model left {len(left)} weight tensor(s) as float (it replaces Linear and Conv layers; "
                      f"share_weights compresses the others): {', '.join(left)}", UncompressedWeightWarning,
                      stacklevel=3)


def dequantize_model(model, keep_linear=False):
    """A copy of `model` as an ordinary float network: quantized layers (any scheme) back to nn.Linear/nn.Conv2d,
    shared weights, pruning masks and QAT fake quantization folded into plain weight tensors.

    With `keep_linear`, LinearQuantizedLayers (linear and log schemes) stay as they are: save_compressed stores
    their integers."""
    kinds = (QuantizedLayer, *PRUNABLE) if keep_linear else (QuantizedLayer, LinearQuantizedLayer, *PRUNABLE)
    return _fold_other_weights(replace_layers(model, lambda name, layer: float_layer(layer)
                                              if isinstance(layer, kinds) else None))


def _fold_other_weights(model):
    """`model` with the shared weights and pruning masks of its Embedding, attention and recurrent weights folded."""
    for _, module, name in compressible_weights(model):
        if parametrize.is_parametrized(module, name):
            cls = type(module)  # a copy shares its parametrized class with the original: give the copy its own
            module.__class__ = type(cls.__name__, cls.__bases__, dict(cls.__dict__))
            parametrize.remove_parametrizations(module, name)
    return remove_masks(model)
