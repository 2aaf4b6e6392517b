import pytest
from torch import nn

from kdlab.layers import compressible_weights, layer_kind, layer_type, replaceable_layers, weight_kinds, weight_names


@pytest.mark.parametrize("module, names", [
    (nn.Linear(3, 2), ["weight"]), (nn.Conv1d(2, 2, 3), ["weight"]), (nn.Conv3d(1, 2, 3, groups=1), ["weight"]),
    (nn.Embedding(5, 3), ["weight"]), (nn.EmbeddingBag(5, 3), ["weight"]),
    (nn.MultiheadAttention(4, 2), ["in_proj_weight"]),
    (nn.MultiheadAttention(4, 2, kdim=3, vdim=5), ["q_proj_weight", "k_proj_weight", "v_proj_weight"]),
    (nn.LSTM(3, 4, num_layers=2, bidirectional=True, proj_size=2),
     ["weight_ih_l0", "weight_hh_l0", "weight_hr_l0", "weight_ih_l0_reverse", "weight_hh_l0_reverse",
      "weight_hr_l0_reverse", "weight_ih_l1", "weight_hh_l1", "weight_hr_l1", "weight_ih_l1_reverse",
      "weight_hh_l1_reverse", "weight_hr_l1_reverse"]),
    (nn.GRU(3, 4), ["weight_ih_l0", "weight_hh_l0"]), (nn.RNN(3, 4, bias=False), ["weight_ih_l0", "weight_hh_l0"]),
    (nn.LayerNorm(4), []), (nn.BatchNorm2d(3), []), (nn.ConvTranspose2d(2, 2, 3), []), (nn.Bilinear(2, 2, 2), []),
])
def test_weight_names_of_every_layer_type(module, names):
    assert weight_names(module) == names


def test_keys_state_keys_kinds_and_the_layers_another_module_can_replace():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.MultiheadAttention(4, 2), nn.LSTM(3, 4), nn.Linear(4, 2))
    assert [key for key, _, _ in compressible_weights(model)] == ["0", "1.in_proj_weight", "1.out_proj",
                                                                  "2.weight_ih_l0", "2.weight_hh_l0", "3"]
    assert weight_kinds(model) == {"0.weight": "conv", "1.in_proj_weight": "fc", "1.out_proj.weight": "fc",
                                   "2.weight_ih_l0": "fc", "2.weight_hh_l0": "fc", "3.weight": "fc"}
    assert [name for name, _ in replaceable_layers(model)] == ["0", "3"]  # attention reads out_proj.weight itself
    assert [name for name, _ in replaceable_layers(nn.MultiheadAttention(4, 2))] == []
    assert [key for key, _, _ in compressible_weights(nn.Linear(2, 2))] == [""]
    assert layer_type(nn.Conv3d(1, 1, 1)) == "Conv3d" and layer_type(model[1].out_proj) == "Linear"
    assert layer_kind(nn.Conv1d(1, 1, 1)) == "conv" and layer_kind(nn.Embedding(2, 2)) == "fc"


def test_a_model_must_be_a_module():
    with pytest.raises(ValueError, match=r"^model must be a torch\.nn\.Module"):
        compressible_weights("resnet18")
