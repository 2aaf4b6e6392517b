"""What one inference costs: multiply-accumulates counted by forward hooks, and energy from Han et al.'s 45 nm table.

Deep Compression (Han, Mao & Dally 2016) §1 and Fig. 1 take their energy per operation from Horowitz (2014),
45 nm CMOS: a 32-bit DRAM access costs 640 pJ, a 32-bit SRAM access 5 pJ, a 32-bit float multiply 3.7 pJ and
add 0.9 pJ, a 32-bit integer multiply 3.1 pJ and add 0.1 pJ. A network whose weights fit on chip reads them
from SRAM at 1/128 of the DRAM cost: that, not fewer multiplications, is why the paper compresses.
"""
from __future__ import annotations

import torch
from torch import nn

from .checks import check_module, is_int, is_number
from .layers import PRUNABLE

PICOJOULES = {"dram": 640.0, "sram": 5.0, "fp32_mult": 3.7, "fp32_add": 0.9, "int32_mult": 3.1, "int32_add": 0.1}
ARITHMETIC = ("fp32", "int")
MEMORY = ("dram", "sram")


def count_macs(model, example_input, nonzero=False):
    """{layer name: multiply-accumulates} of one forward pass of `example_input` through the Linear/Conv layers.

    Each output element of a layer costs one MAC per weight of its output channel (in_features, or in_channels /
    groups x the kernel): the layer's weights x the positions it runs at. With `nonzero`, only the non-zero
    weights count: the work a sparse kernel does.
    Layers quantize_model replaced count the same way through their decoded weight.
    """
    check_module(model)
    if not isinstance(example_input, torch.Tensor):
        raise ValueError(f"example_input must be a torch.Tensor the model takes, got {type(example_input).__name__}")
    if not isinstance(nonzero, bool):
        raise ValueError(f"nonzero must be True or False, got {nonzero!r}")
    counts = {}

    def hook(name):
        def count(module, inputs, output):
            weight = module.decoded_weight() if hasattr(module, "decoded_weight") else module.weight
            work = int(torch.count_nonzero(weight)) if nonzero else weight.numel()
            linear = isinstance(module, nn.Linear) or getattr(module, "kind", None) == "Linear"
            counts[name] = work * (output.numel() // output.shape[-1 if linear else 1])  # x the positions it runs at
        return count

    layers = [(name, m) for name, m in model.named_modules()
              if isinstance(m, PRUNABLE) or hasattr(m, "decoded_weight")]
    handles = [m.register_forward_hook(hook(name)) for name, m in layers]
    try:
        with torch.inference_mode():
            model(example_input)
    finally:
        for handle in handles:
            handle.remove()
    return counts


def energy_per_inference(macs, weight_bytes, batch=1, memory="dram", arithmetic="fp32"):
    """Estimated picojoules per image: the weights read once per batch from `memory`, plus the arithmetic.

    E = weight_bytes / 4 x E_access(memory) / batch + macs x (E_mult + E_add), with Han et al.'s 45 nm costs
    (PICOJOULES): fp32 arithmetic, or 32-bit integer arithmetic for int forms (an upper bound for int8).
    Activations are left out: the same for every form of one network.
    """
    for name, value in (("macs", macs), ("weight_bytes", weight_bytes)):
        if not is_number(value) or value < 0:
            raise ValueError(f"{name} must be a number >= 0, got {value!r}")
    if not is_int(batch) or batch < 1:
        raise ValueError(f"batch must be an int >= 1, got {batch!r}")
    if memory not in MEMORY:
        raise ValueError(f"memory must be one of {', '.join(map(repr, MEMORY))}, got {memory!r}")
    if arithmetic not in ARITHMETIC:
        raise ValueError(f"arithmetic must be one of {', '.join(map(repr, ARITHMETIC))}, got {arithmetic!r}")
    prefix = "fp32" if arithmetic == "fp32" else "int32"
    return weight_bytes / 4 * PICOJOULES[memory] / batch + macs * (PICOJOULES[f"{prefix}_mult"] +
                                                                   PICOJOULES[f"{prefix}_add"])
