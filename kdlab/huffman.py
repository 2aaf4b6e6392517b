"""Canonical Huffman coding of 1-D integer arrays, vectorised with numpy (Deep Compression, Han et al. 2016, §4).

Byte format of `huffman_encode` (varint = unsigned LEB128; other integers big-endian):

    b"HF", version byte 1     magic and format version
    varint n                  number of symbols; the stream ends here (but for the CRC) when n = 0
    varint a                  alphabet size: the largest symbol + 1, in 1..65536
    varint t, then t bytes    zlib of the a code lengths, one byte per symbol 0..a-1 (0 for absent symbols)
    byte k                    symbols per sync block K = 2**k, k in 5..16
    varint total_bits         payload length in bits
    sync table                only when there are B = ceil(n / K) > 1 blocks: varint base, byte width, then the
                              bit lengths of blocks 0..B-2 minus base, `width` bits each, MSB first
    payload                   the codes, MSB first, zero-padded to a whole byte
    4 bytes                   zlib.crc32 of everything before

Codes are canonical (RFC 1951 §3.2.2), so the lengths define them, and at most MAX_LENGTH bits long
(package-merge). The sync table gives each block's first bit, so all blocks decode in lockstep: K numpy steps.
"""
from __future__ import annotations

import contextlib
import zlib

import numpy as np

from .checks import is_int
from .errors import CompressedFormatError

ALPHABET = 1 << 16
MAX_LENGTH = 20
MAGIC, VERSION = b"HF", 1
MIN_LOG_BLOCK, MAX_LOG_BLOCK = 5, 16
CHUNK = 1 << 14
SYNC_BUDGET = 2048  # bytes for code table + sync table: at most this and 1% of the payload, at least 0.2% of it


def huffman_code_lengths(counts, max_length=MAX_LENGTH):
    """Code length per symbol for frequencies `counts`: optimal among prefix codes of at most `max_length` bits.

    Absent symbols (count 0) get length 0, a single present symbol gets length 1. Package-merge
    (Larmore & Hirschberg 1990) gives Huffman's optimum sum(count x length) whenever the limit does not bind.
    """
    counts = np.asarray(counts)
    if counts.ndim != 1 or (counts.size and counts.dtype.kind not in "iu"):
        raise ValueError(f"counts must be a 1-D array of integers, got shape {counts.shape} and dtype {counts.dtype}")
    if counts.size and counts.min() < 0:
        raise ValueError(f"counts must be >= 0, got {counts.min()}")
    present = np.flatnonzero(counts)
    needed = max(1, (len(present) - 1).bit_length())
    if not is_int(max_length) or max_length < needed:
        raise ValueError(f"max_length must be an integer >= {needed}, enough for the {len(present)} present "
                         f"symbols, got {max_length}")
    lengths = np.zeros(len(counts), np.uint8)
    if len(present) == 1:
        lengths[present] = 1
    elif len(present) > 1:
        order = present[np.argsort(counts[present], kind="stable")]
        lengths[order] = _package_merge(counts[order].astype(np.int64), min(max_length, len(present) - 1))
    return lengths


def _package_merge(weights, levels):
    """Code lengths of at most `levels` bits for ascending `weights` (the coin collector's problem).

    Each symbol has one coin of each denomination 2**-1 .. 2**-levels, worth its weight; the cheapest coins
    of total denomination n - 1 are found from the smallest denomination up: pair consecutive items of the
    sorted list into packages of the next denomination and merge them with its coins (coins first on ties);
    then take the 2n - 2 cheapest items of denomination 1/2 and unpack them level by level. A symbol's code
    length is the number of its coins taken.
    """
    n = len(weights)
    leaf_slots = [np.arange(n)]
    merged = weights
    for _ in range(levels - 1):
        items = np.concatenate((weights, merged[0:-1:2] + merged[1::2]))
        order = np.argsort(items, kind="stable")
        merged = items[order]
        leaf_slots.append(np.flatnonzero(order < n))
    lengths = np.zeros(n, np.int64)
    take = 2 * n - 2
    for leaf_at in reversed(leaf_slots):
        leaves = int(np.searchsorted(leaf_at, take))
        lengths[:leaves] += 1
        take = 2 * (take - leaves)
    return lengths


def canonical_codes(lengths):
    """Canonical code value per symbol for code `lengths` (0 for absent symbols), as in RFC 1951 §3.2.2.

    Symbols sorted by (length, symbol) take consecutive slices of [0, 1): code_i = 2**l_i * sum_{j<i} 2**-l_j.
    """
    lengths = np.asarray(lengths)
    if lengths.ndim != 1 or (lengths.size and lengths.dtype.kind not in "iu"):
        raise ValueError(f"lengths must be a 1-D array of integers, got shape {lengths.shape} "
                         f"and dtype {lengths.dtype}")
    if lengths.size and not 0 <= lengths.min() <= lengths.max() <= 32:
        raise ValueError(f"lengths must be in 0..32, got values in {lengths.min()}..{lengths.max()}")
    codes = np.zeros(len(lengths), np.uint32)
    present = np.flatnonzero(lengths)
    if present.size == 0:
        return codes
    order = present[np.argsort(lengths[present], kind="stable")]
    sorted_lengths = lengths[order].astype(np.int64)
    top = int(sorted_lengths[-1])
    widths = np.left_shift(1, top - sorted_lengths)
    if widths.sum() > 1 << top:
        raise ValueError(f"lengths must satisfy Kraft's inequality sum(2**-length) <= 1, "
                         f"got {widths.sum() / (1 << top)}")
    codes[order] = (np.cumsum(widths) - widths) >> (top - sorted_lengths)
    return codes


def huffman_encode(symbols):
    """Canonical Huffman code a 1-D array of integers in 0..65535 into self-contained bytes (format above)."""
    symbols, counts = _symbols_and_counts(symbols)
    n = len(symbols)
    stream = bytearray(MAGIC) + bytes([VERSION]) + _varint(n)
    if n == 0:
        return _sealed(stream)
    lengths = huffman_code_lengths(counts)
    table = zlib.compress(lengths.tobytes(), 9)
    total_bits = int(counts @ lengths)
    payload, marks = _pack_codes(symbols, canonical_codes(lengths), lengths, total_bits)
    budget = max(len(payload) // 512, min(len(payload) // 100, SYNC_BUDGET) - len(table))
    log_block, sync = _sync_table(marks, n, budget)
    stream += _varint(len(lengths)) + _varint(len(table)) + table + bytes([log_block]) + _varint(total_bits)
    return _sealed(stream + sync + payload)


def _symbols_and_counts(symbols):
    """`symbols` as a 1-D intp array and the count of each value; ValueError unless they are integers in 0..65535."""
    array = np.asarray(symbols)
    if array.ndim != 1:
        raise ValueError(f"symbols must be a 1-D array, got {array.ndim} dimensions")
    if array.size == 0:
        return np.zeros(0, np.intp), np.zeros(0, np.int64)
    if array.dtype.kind not in "iu":
        raise ValueError(f"symbols must be integers in 0..{ALPHABET - 1}, got dtype {array.dtype}")
    if array.max() < ALPHABET:
        array = array.astype(np.intp, copy=False)
        with contextlib.suppress(ValueError):  # np.bincount raises it for negative values
            return array, np.bincount(array)
    raise ValueError(f"symbols must be integers in 0..{ALPHABET - 1}, got values in {array.min()}..{array.max()}")


def _pack_codes(symbols, codes, lengths, total_bits):
    """The codes of `symbols` concatenated MSB first, and the first bit of every 32nd symbol.

    A code left-aligned in 64 bits, shifted right by its offset in the 32-bit word where it starts, is what it
    adds to that word and the next; the codes that start in the same word are OR-ed together (reduceat).
    Codes are at most 32 bits long, so every word from the first to the last holds the start of a code.
    Symbols go two at a time where they can (`_code_units`), CHUNK units at a time through reused buffers.
    """
    units, code_of, length_of, per_unit = _code_units(symbols, codes.astype(np.uint64), lengths.astype(np.int64))
    aligned_code_of = code_of << (64 - length_of).astype(np.uint64)
    per_mark = 32 // per_unit
    words = np.zeros(total_bits // 32 + 2, np.uint64)
    marks = np.empty(-(-len(units) // per_mark), np.int64)
    sizes, starts, offsets = np.empty(CHUNK + 1, np.int64), np.empty(CHUNK + 1, np.int64), np.empty(CHUNK, np.int64)
    windows, new_word = np.empty(CHUNK, np.uint64), np.ones(CHUNK, bool)
    done = 0
    for first in range(0, len(units), CHUNK):
        part = units[first:first + CHUNK]
        count = len(part)
        sizes[0] = done
        np.take(length_of, part, out=sizes[1:count + 1], mode="clip")
        np.cumsum(sizes[:count + 1], out=starts[:count + 1])
        start, done = starts[:count], int(starts[count])
        marks[first // per_mark:-(-(first + count) // per_mark)] = start[::per_mark]
        window = np.take(aligned_code_of, part, out=windows[:count], mode="clip")
        window >>= np.bitwise_and(start, 31, out=offsets[:count]).view(np.uint64)
        start >>= 5
        np.not_equal(start[1:], start[:-1], out=new_word[1:count])
        merged = np.bitwise_or.reduceat(window, np.flatnonzero(new_word[:count]))
        word = int(start[0])
        words[word:word + len(merged)] |= merged >> np.uint64(32)
        words[word + 1:word + 1 + len(merged)] |= merged & np.uint64(0xFFFFFFFF)
    return words.astype(">u4").tobytes()[:-(-total_bits // 8)], marks


def _code_units(symbols, code_of, length_of):
    """(units, their codes, their lengths, symbols per unit): symbol pairs when pair codes fit 32 bits and the
    pair table is no larger than the input (nor 65536 entries), else single symbols.

    A pair (a, b) is unit a * (alphabet + 1) + b with code code_a << length_b | code_b; an odd last symbol is
    paired with the extra symbol `alphabet`, whose code is empty.
    """
    alphabet = len(code_of)
    if length_of.max() > 16 or (alphabet + 1) ** 2 > min(len(symbols), ALPHABET):
        return symbols, code_of, length_of, 1
    code_of, length_of = np.append(code_of, np.uint64(0)), np.append(length_of, 0)
    pair_codes = (code_of[:, None] << length_of.astype(np.uint64) | code_of).ravel()
    pair_lengths = (length_of[:, None] + length_of).ravel()
    pairs = symbols[::2] * (alphabet + 1)
    pairs[:len(symbols) // 2] += symbols[1::2]
    if len(symbols) % 2:
        pairs[-1] += alphabet
    return pairs, pair_codes, pair_lengths, 2


def _sync_table(marks, n, budget):
    """(log2 of the block size K, sync table bytes) for the smallest K whose table fits in `budget` bytes.

    The caller's budget keeps code table + sync table within 1% of the payload and within SYNC_BUDGET bytes
    where the code table allows, and never below 0.2% of the payload: smaller blocks decode faster, as the
    lockstep takes K steps.
    """
    for log_block in range(MIN_LOG_BLOCK, MAX_LOG_BLOCK + 1):
        if 1 << log_block >= n:
            return log_block, b""
        block_bits = np.diff(marks[:: 1 << (log_block - MIN_LOG_BLOCK)])
        base = int(block_bits.min())
        width = int(block_bits.max() - base).bit_length()
        if len(block_bits) * width <= 8 * budget or log_block == MAX_LOG_BLOCK:
            return log_block, _varint(base) + bytes([width]) + _pack_fields(block_bits - base, width)


def _pack_fields(values, width):
    """`values` as `width`-bit fields, MSB first, zero-padded to a whole byte."""
    bits = (values[:, None] >> np.arange(width - 1, -1, -1)) & 1
    return np.packbits(bits.astype(np.uint8)).tobytes()


def _unpack_fields(data, width, count):
    """The `count` `width`-bit fields packed by `_pack_fields`."""
    bits = np.unpackbits(np.frombuffer(data, np.uint8))[:count * width].reshape(count, width)
    return bits.astype(np.int64) @ (1 << np.arange(width - 1, -1, -1))


def _varint(value):
    """`value` as an unsigned LEB128 varint."""
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _sealed(stream):
    """`stream` with its CRC-32 appended."""
    return bytes(stream) + zlib.crc32(stream).to_bytes(4, "big")


def huffman_decode(data):
    """The int64 array encoded by `huffman_encode`; CompressedFormatError if `data` is not such a stream."""
    if not isinstance(data, (bytes, bytearray, memoryview, np.ndarray)):
        raise ValueError(f"data must be bytes-like (bytes, bytearray, memoryview or a uint8 array), "
                         f"got {type(data).__name__}")
    data = bytes(data)
    if len(data) < 8:  # magic, version, n = 0 and the CRC
        raise CompressedFormatError(f"Huffman stream is {len(data)} bytes, shorter than any valid stream")
    if data[:2] != MAGIC:
        raise CompressedFormatError("not a kdlab Huffman stream (bad magic bytes)")
    if data[2] != VERSION:
        raise CompressedFormatError(f"Huffman stream has format version {data[2]}, this kdlab reads version {VERSION}")
    if zlib.crc32(data[:-4]) != int.from_bytes(data[-4:], "big"):
        raise CompressedFormatError("Huffman stream is damaged or truncated (CRC-32 mismatch)")
    reader = _Reader(data, 3, len(data) - 4)
    n = reader.varint("symbol count", 0, 8 * len(data))
    if n == 0:
        reader.finish()
        return np.zeros(0, np.int64)
    alphabet = reader.varint("alphabet size", 1, ALPHABET)
    table = _inflate(reader.take(reader.varint("code table size", 1, len(data)), "code table"), alphabet)
    symbols = np.flatnonzero(table)
    lengths = table[symbols].astype(np.int64)
    if not 1 <= len(symbols) <= n or lengths.max() > MAX_LENGTH:
        raise CompressedFormatError(f"Huffman code table must give 1..{n} symbols code lengths in 1..{MAX_LENGTH}")
    shortest, longest = int(lengths.min()), int(lengths.max())
    if np.sum(1 << (MAX_LENGTH - lengths)) != 1 << MAX_LENGTH and not (len(symbols) == 1 and longest == 1):
        raise CompressedFormatError("Huffman code lengths do not form a complete prefix code (Kraft sum != 1)")
    block = 1 << reader.byte("log2 block size", MIN_LOG_BLOCK, MAX_LOG_BLOCK)
    total_bits = reader.varint("payload bit count", n * shortest, n * longest)
    blocks = -(-n // block)
    offsets = np.zeros(blocks, np.int64)
    if blocks > 1:
        base = reader.varint("sync base", block * shortest, block * longest)
        width = reader.byte("sync field width", 0, (block * (longest - shortest)).bit_length())
        block_bits = base + _unpack_fields(reader.take(-(-(blocks - 1) * width // 8), "sync table"), width, blocks - 1)
        offsets[1:] = np.cumsum(block_bits)
        if block_bits.max() > block * longest or offsets[-1] + (n - (blocks - 1) * block) * shortest > total_bits:
            raise CompressedFormatError("Huffman sync table points outside the payload")
    payload = reader.take(-(-total_bits // 8), "payload")
    reader.finish()
    if len(symbols) == 1:
        if any(payload):
            raise CompressedFormatError("Huffman payload of a one-symbol stream must be all zero bits")
        return np.full(n, symbols[0], np.int64)
    return _decode_blocks(payload, symbols, lengths, offsets, block, n, total_bits)


def _decode_blocks(payload, symbols, lengths, offsets, block, n, total_bits):
    """Decode the blocks of `block` symbols that start at bits `offsets`, all in lockstep, one symbol per step.

    Each block must end exactly where the next one starts, and the last one at `total_bits`.
    """
    steps = min(block, n)
    length_at, symbol_at = _codes_at_every_bit(payload, symbols, lengths, total_bits, steps)
    rows = np.empty((steps, len(offsets)), symbol_at.dtype)
    at = offsets.copy()
    last = n - (len(offsets) - 1) * block
    for step in range(steps):
        np.take(symbol_at, at, out=rows[step], mode="clip")
        at += length_at[at]
        if step + 1 == last:
            last_end = int(at[-1])
    if not (np.array_equal(at[:-1], offsets[1:]) and last_end == total_bits):
        raise CompressedFormatError("Huffman payload does not decode to whole blocks (damaged stream)")
    return np.array(rows.T, np.int64, order="C").reshape(-1)[:n]


def _codes_at_every_bit(payload, symbols, lengths, total_bits, steps):
    """Length and symbol of the code that would start at each payload bit, and length 1 past the payload's end.

    Past the end means far enough for `steps` steps: a step moves by at most one code, then by 1.

    Codes of at most T bits come from `_nibble_tables`: 2 lookups per payload byte. T is the smallest size
    from 9 bits up (at most 16) where longer codes cover at most 1/16 of the code space; those are resolved
    from the canonical intervals: with L the longest length, a code of length l covers 2**(L - l) consecutive
    L-bit windows, the codes in (length, symbol) order one after the other.
    """
    order = np.lexsort((symbols, lengths))
    sorted_lengths = lengths[order]
    sorted_symbols = symbols[order].astype(np.uint8 if symbols[-1] < 256 else np.uint16)
    longest = int(sorted_lengths[-1])
    count_upto = np.searchsorted(sorted_lengths, np.arange(longest + 1), side="right")
    limit = np.concatenate(([0], np.cumsum(1 << (longest - sorted_lengths))))[count_upto]
    bits = min(longest, 16, max(9, int(np.argmax(16 * limit >= 15 << longest))))
    length4, symbol4 = _nibble_tables(sorted_lengths[:count_upto[bits]], sorted_symbols[:count_upto[bits]], bits)
    windows = np.ndarray(len(payload), ">u4", payload + bytes(3), strides=(1,))
    length_at = np.empty(8 * len(payload) + longest + steps, np.uint8)
    symbol_at = np.empty(len(length_at), sorted_symbols.dtype)
    length4_at = length_at[:8 * len(payload)].view(length4.dtype).reshape(-1, 2)
    symbol4_at = symbol_at[:8 * len(payload)].view(symbol4.dtype).reshape(-1, 2)
    buffer = np.empty((CHUNK, 2), np.intp)
    for begin in range(0, len(payload), CHUNK):
        stop = min(begin + CHUNK, len(payload))
        window, nibbles = windows[begin:stop].astype(np.uint32), buffer[:stop - begin]
        np.right_shift(window, 29 - bits, out=nibbles[:, 0])
        np.right_shift(window, 25 - bits, out=nibbles[:, 1])
        nibbles &= (1 << (bits + 3)) - 1
        np.take(length4, nibbles, out=length4_at[begin:stop], mode="clip")
        np.take(symbol4, nibbles, out=symbol4_at[begin:stop], mode="clip")
        if bits < longest:
            at = 8 * begin + np.flatnonzero(length_at[8 * begin:8 * stop] == 0)
            code = (windows[at >> 3].astype(np.int64) >> (32 - longest - (at & 7))) & ((1 << longest) - 1)
            length = np.searchsorted(limit[1:], code, side="right") + 1
            length_at[at] = length
            symbol_at[at] = sorted_symbols[count_upto[length - 1] + ((code - limit[length - 1]) >> (longest - length))]
    length_at[total_bits:] = 1
    return length_at, symbol_at


def _nibble_tables(lengths, symbols, bits):
    """Tables over `bits` + 3 payload bits: the lengths and the symbols of the codes that start at the first 4 of
    those bits, 4 to an entry (4 x uint8 as a uint32, 4 symbols in one unsigned integer); length 0 for codes
    longer than `bits`."""
    repeats = 1 << (bits - lengths)
    short_length, short_symbol = np.zeros(1 << bits, np.uint8), np.zeros(1 << bits, symbols.dtype)
    short_length[:repeats.sum()] = np.repeat(lengths, repeats)
    short_symbol[:repeats.sum()] = np.repeat(symbols, repeats)
    prefixes = (np.arange(1 << (bits + 3))[:, None] >> np.arange(3, -1, -1)) & ((1 << bits) - 1)
    return (short_length[prefixes].view(np.uint32).ravel(),
            short_symbol[prefixes].view(f"u{4 * symbols.itemsize}").ravel())


def _inflate(blob, size):
    """zlib-decompress `blob` to exactly `size` bytes, as a uint8 array."""
    inflater = zlib.decompressobj()
    try:
        table = inflater.decompress(blob, size)
    except zlib.error as error:
        raise CompressedFormatError(f"Huffman code table is damaged ({error})") from None
    if len(table) != size or not inflater.eof or inflater.unused_data or inflater.unconsumed_tail:
        raise CompressedFormatError(f"Huffman code table must hold {size} bytes")
    return np.frombuffer(table, np.uint8)


class _Reader:
    """Bounds-checked reads from data[start:stop]; every failure is a CompressedFormatError."""

    def __init__(self, data, start, stop):
        self.data, self.at, self.stop = data, start, stop

    def take(self, count, what):
        if count > self.stop - self.at:
            raise CompressedFormatError(f"Huffman stream is truncated: {what} needs {count} bytes, "
                                        f"{self.stop - self.at} are left")
        self.at += count
        return self.data[self.at - count:self.at]

    def byte(self, what, low, high):
        return self._checked(self.take(1, what)[0], what, low, high)

    def varint(self, what, low, high):
        value = 0
        for shift in range(0, 64, 7):
            part = self.take(1, what)[0]
            value |= (part & 0x7F) << shift
            if part < 0x80:
                return self._checked(value, what, low, high)
        raise CompressedFormatError(f"Huffman stream {what} is not a valid varint")

    def finish(self):
        if self.at != self.stop:
            raise CompressedFormatError(f"Huffman stream has {self.stop - self.at} unexpected bytes after its payload")

    @staticmethod
    def _checked(value, what, low, high):
        if not low <= value <= high:
            raise CompressedFormatError(f"Huffman stream {what} {value} is out of range {low}..{high}")
        return value
