"""Relative-index (gap) encoding of the non-zero positions, with filler entries (Han et al. 2016, Fig. 2).

Convention: over the flattened weight, the non-zeros sit at positions p_0 < p_1 < ...; gap_i = p_i - p_{i-1}
with p_{-1} = -1, so every gap is >= 1. A field of `bits` bits stores gap - 1, so it holds gaps 1..2**bits.
A longer gap g is written as ceil(g / 2**bits) - 1 filler entries of gap 2**bits followed by the remainder;
a filler stands for a zero weight at its position, which is harmless: the weight there is zero anyway.
Fillers also cover the zeros after the last non-zero until fewer than 2**bits remain, so the fields account for
the whole layer: a reader can check a layer's size against them before allocating it.
(Fig. 2 of the paper, with 3 bits, writes the gaps 1..8 and counts the first one from position 0; here it
counts from -1, so that a non-zero at position 0 is stored too.)
"""
from __future__ import annotations

import numpy as np

from .checks import is_int
from .errors import CompressedFormatError


def encode_positions(mask, bits=5):
    """(fields, filler): gap - 1 of each stored entry as np.uint16, and True where the entry is a filler.

    `mask` is a boolean array or CPU tensor of any shape (flattened in C order), True at the non-zeros.
    """
    span = 1 << _checked_bits(bits)
    flat = np.asarray(mask).reshape(-1)
    if flat.dtype != bool:
        raise ValueError(f"mask must be a boolean array (True at the non-zeros), got dtype {flat.dtype}")
    nonzero = np.flatnonzero(flat)
    gaps = np.diff(nonzero, prepend=-1)
    entries = -(-gaps // span)
    real = np.cumsum(entries) - 1
    tail = (flat.size - 1 - (nonzero[-1] if nonzero.size else -1)) // span  # fillers over the trailing zeros
    fields = np.full(int(entries.sum()) + tail, span - 1, np.uint16)
    fields[real] = gaps - (entries - 1) * span - 1
    filler = np.ones(len(fields), bool)
    filler[real] = False
    return fields, filler


def decode_positions(fields, size, bits=5):
    """Flat positions (np.int64) of all stored entries, fillers included: cumsum(fields + 1) - 1.

    Raises CompressedFormatError if a field does not fit in `bits` bits, a position falls outside the
    `size` weights, or 2**bits or more weights follow the last position (the encoder covers them with fillers).
    """
    span = 1 << _checked_bits(bits)
    fields = np.asarray(fields)
    if fields.ndim != 1 or (fields.size and fields.dtype.kind not in "iu"):
        raise ValueError(f"fields must be a 1-D array of integers, got shape {fields.shape} and dtype {fields.dtype}")
    if not is_int(size) or size < 0:
        raise ValueError(f"size must be an integer >= 0, got {size!r}")
    if fields.size and not 0 <= fields.min() <= fields.max() < span:
        raise CompressedFormatError(f"position fields must be in 0..{span - 1} for bits={bits}, "
                                    f"got values in {fields.min()}..{fields.max()}")
    positions = np.cumsum(fields.astype(np.int64) + 1) - 1
    last = int(positions[-1]) if positions.size else -1
    if last >= size:
        raise CompressedFormatError(f"positions run to {last}, past the last of {size} weights")
    if size - 1 - last >= span:
        raise CompressedFormatError(f"{size - 1 - last} weights follow the last stored position, more than a "
                                    f"{bits}-bit field covers: the fields do not account for {size} weights")
    return positions


def _checked_bits(bits):
    """`bits`, checked to be an int in 1..16."""
    if not is_int(bits) or not 1 <= bits <= 16:
        raise ValueError(f"bits must be an int in 1..16, got {bits!r}")
    return int(bits)
