"""Bit-packing: integers of `bits` bits each stored back to back in uint8 bytes, as the quantized layers keep them."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def pack_indices(index, bits):
    """Bit-pack a 1-D tensor of indices < 2**bits into uint8 bytes, each index MSB first, no gaps between."""
    if bits == 8:
        return index.reshape(-1).to(torch.uint8)
    shifts = torch.arange(bits - 1, -1, -1, device=index.device, dtype=torch.int32)
    stream = ((index.reshape(-1, 1).int() >> shifts) & 1).to(torch.uint8).reshape(-1)
    stream = F.pad(stream, (0, -stream.numel() % 8))
    place = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.uint8, device=index.device)
    return (stream.reshape(-1, 8) * place).sum(1, dtype=torch.uint8)


def unpack_indices(packed, bits, count):
    """The `count` indices of `bits` bits each stored by `pack_indices` in `packed`, as int64."""
    if bits == 8:
        return packed[:count].long()
    shifts = torch.arange(7, -1, -1, device=packed.device, dtype=torch.uint8)
    stream = ((packed.reshape(-1, 1) >> shifts) & 1).reshape(-1)[:count * bits]
    place = 1 << torch.arange(bits - 1, -1, -1, device=packed.device, dtype=torch.int64)
    return (stream.reshape(count, bits).long() * place).sum(1)
