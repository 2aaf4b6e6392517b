"""Quantization-aware training (QAT): fake-quantized weights and inputs, trained through the straight-through estimator.

A QAT layer computes its output from S (clip(round(r / S) + Z, q_min, q_max) - Z) of its weight and of its input
(Jacob et al. 2018, §3), so the network learns weights that survive quantization. round has zero gradient almost
everywhere; the straight-through estimator (STE) passes the gradient through it unchanged inside the range and
zeroes it where clip cuts: d fq(r) / dr = 1(q_min <= round(r / S) + Z <= q_max). PyTorch's
torch.fake_quantize_per_channel_affine / torch.fake_quantize_per_tensor_affine implement exactly this, forward
and backward. `quantize_model(qat_model, bits, scheme="linear")` then stores the trained network as int8.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils import parametrize

from .linear import (MAX_BITS, MIN_BITS, activation_qparams, check_bits, check_per_channel, fake_quantize_activation,
                     weight_qparams)
from .prune import clone_model, prunable_layers, remove_masks

OBSERVER_MOMENTUM = 0.01  # as torch.ao.quantization.MovingAverageMinMaxObserver's averaging_constant


class FakeQuantWeight(nn.Module):
    """Parametrization W -> S (clip(round(W / S) + Z, q_min, q_max) - Z), S and Z from W (`weight_qparams`)."""

    def __init__(self, bits=8, per_channel=True):
        super().__init__()
        self.bits, self.per_channel = bits, per_channel

    def forward(self, weight):
        """The weight as its `bits`-bit quantization decodes it; the gradient passes straight through (STE)."""
        scale, zero_point, qmin, qmax = weight_qparams(weight, self.bits, self.per_channel)
        if self.per_channel:
            return torch.fake_quantize_per_channel_affine(weight, scale, zero_point, 0, qmin, qmax)
        return torch.fake_quantize_per_tensor_affine(weight, scale, zero_point, qmin, qmax)

    def extra_repr(self):
        return f"bits={self.bits}, per_channel={self.per_channel}"


class InputObserver(nn.Module):
    """A layer's input range, a moving average of each training batch's min and max, and its uint8 fake quantization.

    In training mode each batch moves (low, high) by OBSERVER_MOMENTUM towards the batch's (min, max), the first
    batch setting them; in eval mode they stay fixed. Until a batch has been seen the input passes unchanged.
    """

    def __init__(self):
        super().__init__()
        self.register_buffer("low", torch.tensor(math.inf))
        self.register_buffer("high", torch.tensor(-math.inf))

    def forward(self, x):
        """x fake-quantized to uint8 over (low, high) (`fake_quantize_activation`), after updating them in training."""
        if self.training:
            with torch.no_grad():
                for bound, value in ((self.low, x.detach().min().float()), (self.high, x.detach().max().float())):
                    bound.copy_(torch.where(bound.isfinite(), bound.lerp(value, OBSERVER_MOMENTUM), value))
        if not self.low.isfinite():
            return x
        return fake_quantize_activation(x, *activation_qparams(self.low, self.high))

    def input_range(self):
        """The observed (low, high) as floats, or None before any training batch."""
        return (float(self.low), float(self.high)) if self.low.isfinite() else None


def _quantize_input(module, args):
    """Forward pre-hook of a QAT layer: its input through its InputObserver."""
    return (module.input_observer(args[0]), *args[1:])


def prepare_qat(model, bits=8, per_channel=True):
    """A copy of `model` whose Linear/Conv2d layers fake-quantize their weights and their inputs in forward (QAT).

    Each weight gets a FakeQuantWeight parametrization (torch.nn.utils.parametrize: `bits` bits, symmetric per output
    channel or affine per tensor), each input an InputObserver (uint8 over a moving-average min/max range). The
    parameters stay ordinary float tensors (each weight under `parametrizations.weight.original`), so `fit` and
    `DistillModel` train the copy as they are; pruning masks are folded into the weights first.
    """
    check_bits(bits, "bits", MAX_BITS, MIN_BITS)
    check_per_channel(per_channel)
    model = remove_masks(clone_model(model))
    if any(isinstance(module, InputObserver) for module in model.modules()):
        raise ValueError("model is already prepared for QAT: prepare a float network")
    for _, layer in prunable_layers(model):
        parametrize.register_parametrization(layer, "weight", FakeQuantWeight(bits, per_channel))
        layer.input_observer = InputObserver().to(layer.weight.device)
        layer.register_forward_pre_hook(_quantize_input)
    return model


def input_ranges(model):
    """{layer name: (low, high)}: the input ranges learned by the QAT layers of `model` that have trained."""
    found = {name: layer.input_observer.input_range() for name, layer in prunable_layers(model)
             if isinstance(getattr(layer, "input_observer", None), InputObserver)}
    return {name: pair for name, pair in found.items() if pair is not None}


def qat_settings(model):
    """{layer name: (bits, per_channel)} of the layers of `model` that prepare_qat fake-quantizes."""
    return {name: (p.bits, p.per_channel) for name, layer in prunable_layers(model)
            if parametrize.is_parametrized(layer, "weight")
            for p in layer.parametrizations.weight if isinstance(p, FakeQuantWeight)}
