import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kdlab.decoded import DecodedLayer, make_float_layer


class Halved(DecodedLayer):
    """A DecodedLayer storing its weight as a float buffer, decoded as half of it: enough to test the base."""

    def __init__(self, layer):
        super().__init__(layer)
        self.register_buffer("stored", layer.weight.detach() * 2)

    def decoded_weight(self):
        return self.stored / 2


@pytest.mark.parametrize("layer", [nn.Linear(6, 4), nn.Linear(6, 4, bias=False),
                                   nn.Conv2d(4, 6, 3, stride=2, padding=1, dilation=1, groups=2)])
def test_a_decoded_layer_runs_as_the_layer_and_converts_back(layer):
    torch.manual_seed(0)
    x = torch.randn(3, 6) if isinstance(layer, nn.Linear) else torch.randn(2, 4, 9, 9)
    decoded = Halved(layer)
    assert torch.allclose(decoded(x), layer(x), atol=1e-6)
    back = decoded.to_float()
    assert type(back) is type(layer) and torch.equal(back.weight, layer.weight)
    assert (back.bias is None) == (layer.bias is None) and torch.allclose(back(x), layer(x), atol=1e-6)
    assert layer.bias is None or decoded.bias is not layer.bias  # a copy


def test_make_float_layer_copies_weight_and_bias():
    weight, bias = torch.randn(5, 3), torch.randn(5)
    layer = make_float_layer("Linear", (5, 3), {}, weight, bias)
    weight.zero_()
    assert torch.equal(F.linear(torch.ones(1, 3), layer.weight, layer.bias), layer(torch.ones(1, 3)))
    assert layer.weight.abs().sum() > 0 and torch.equal(layer.bias, bias)


@pytest.mark.parametrize("layer, message", [
    (nn.ReLU(), r"^layer must be an nn\.Linear or nn\.Conv1d/2d/3d, got ReLU"),
    (nn.Conv2d(2, 2, 3, padding=1, padding_mode="circular"), r"^layer must pad with zeros to be quantized, got "
                                                             r"padding_mode='circular'"),
])
def test_bad_layers(layer, message):
    with pytest.raises(ValueError, match=message):
        Halved(layer)
