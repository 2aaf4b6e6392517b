import pytest
import torch
from torch import nn

import kdlab
from kdlab.energy import PICOJOULES, count_macs, energy_per_inference


def test_macs_of_lenet5_and_lenet300_by_hand():
    lenet300 = kdlab.build_model("lenet300")
    x = torch.zeros(1, 1, 28, 28)
    assert sum(count_macs(lenet300, x).values()) == 784 * 300 + 300 * 100 + 100 * 10
    conv = nn.Sequential(nn.Conv2d(1, 6, 5), nn.Conv2d(6, 4, 3, groups=2))
    counts = count_macs(conv, torch.zeros(2, 1, 12, 12))
    assert counts == {"0": 2 * 8 * 8 * 6 * 25, "1": 2 * 6 * 6 * 4 * 3 * 9}


def test_nonzero_macs_follow_pruning_and_quantized_layers_count_the_same():
    torch.manual_seed(0)
    model = kdlab.build_model("lenet300")
    x = torch.zeros(3, 1, 28, 28)
    kdlab.prune_by_std(model, 1.0)
    kept = {row["layer"]: row["nonzero"] for row in kdlab.sparsity(model)}
    assert count_macs(model, x, nonzero=True) == {name: 3 * n for name, n in kept.items() if name != "total"}
    quantized = kdlab.quantize_model(model, 6)
    assert count_macs(quantized, x, nonzero=True) == count_macs(model, x, nonzero=True)
    assert count_macs(quantized, x) == count_macs(model, x)


def test_energy_is_the_formula_and_sram_is_128_times_cheaper_to_read():
    assert energy_per_inference(1000, 4000) == 1000 * 640.0 + 1000 * (3.7 + 0.9)
    assert energy_per_inference(1000, 4000, batch=10, memory="sram", arithmetic="int") == \
        1000 * 5.0 / 10 + 1000 * (3.1 + 0.1)
    assert PICOJOULES["dram"] / PICOJOULES["sram"] == 128


@pytest.mark.parametrize("call, message", [
    (lambda: count_macs("net", torch.zeros(1)), r"^model must be a torch\.nn\.Module"),
    (lambda: count_macs(nn.Linear(2, 2), [1, 2]), r"^example_input must be a torch\.Tensor"),
    (lambda: count_macs(nn.Linear(2, 2), torch.zeros(1, 2), nonzero=1), r"^nonzero must be True or False"),
    (lambda: energy_per_inference(-1, 4), r"^macs must be a number >= 0, got -1"),
    (lambda: energy_per_inference(1, "4"), r"^weight_bytes must be a number >= 0"),
    (lambda: energy_per_inference(1, 4, batch=0), r"^batch must be an int >= 1, got 0"),
    (lambda: energy_per_inference(1, 4, memory="hbm"), r"^memory must be one of 'dram', 'sram', got 'hbm'"),
    (lambda: energy_per_inference(1, 4, arithmetic="int8"), r"^arithmetic must be one of 'fp32', 'int'"),
])
def test_bad_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call()
