"""The base of the quantized layers: a Linear or Conv layer whose weight is decoded from stored integers as it runs."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import PRUNABLE, layer_type

CONVOLUTIONS = {"Conv1d": F.conv1d, "Conv2d": F.conv2d, "Conv3d": F.conv3d}


def make_float_layer(kind, shape, options, weight, bias):
    """A new nn.Linear or nn.Conv1d/2d/3d (`kind`), weight `shape`, conv `options`, with copies of weight and bias."""
    out_features, in_features, *kernel = shape
    if kind == "Linear":
        layer = nn.Linear(in_features, out_features, bias=bias is not None)
    else:
        layer = getattr(nn, kind)(in_features * options["groups"], out_features, tuple(kernel), bias=bias is not None,
                                  **options)
    layer.to(device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        layer.weight.copy_(weight)
        if bias is not None:
            layer.bias.copy_(bias)
    return layer


class DecodedLayer(nn.Module):
    """A Linear or Conv layer (`kind`, weight `shape`, conv `options`, float `bias`) whose subclass stores the weight.

    Subclasses register what they store and define decoded_weight(), the float weight tensor; forward runs the
    layer with it and to_float() gives the equivalent ordinary nn.Linear or nn.Conv1d/2d/3d.
    """

    def __init__(self, layer):
        super().__init__()
        if not isinstance(layer, PRUNABLE):
            raise ValueError(f"layer must be an nn.Linear or nn.Conv1d/2d/3d, got {type(layer).__name__}")
        if getattr(layer, "padding_mode", "zeros") != "zeros":
            raise ValueError(f"layer must pad with zeros to be quantized, got padding_mode={layer.padding_mode!r}")
        self.shape = tuple(layer.weight.shape)
        self.kind = layer_type(layer)
        self.options = ({} if isinstance(layer, nn.Linear) else
                        {key: getattr(layer, key) for key in ("stride", "padding", "dilation", "groups")})
        self.bias = None if layer.bias is None else nn.Parameter(layer.bias.detach().clone())

    def forward(self, x):
        """The layer's output with the decoded weight."""
        if self.kind == "Linear":
            return F.linear(x, self.decoded_weight(), self.bias)
        return CONVOLUTIONS[self.kind](x, self.decoded_weight(), self.bias, **self.options)

    def to_float(self):
        """The equivalent ordinary nn.Linear or nn.Conv1d/2d/3d."""
        return make_float_layer(self.kind, self.shape, self.options, self.decoded_weight(), self.bias)
