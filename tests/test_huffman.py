import heapq
import itertools
import time
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from kdlab.errors import CompressedFormatError
from kdlab.huffman import (MAX_LENGTH, _varint, canonical_codes, huffman_code_lengths, huffman_decode,
                           huffman_encode)


def heapq_huffman_lengths(counts):
    """Textbook Huffman: merge the two lightest trees until one is left; a leaf's depth is its length."""
    heap = [(c, i, [i]) for i, c in enumerate(counts) if c > 0]
    lengths = [0] * len(counts)
    if len(heap) == 1:
        lengths[heap[0][1]] = 1
    heapq.heapify(heap)
    while len(heap) > 1:
        c1, i1, leaves1 = heapq.heappop(heap)
        c2, _, leaves2 = heapq.heappop(heap)
        for leaf in leaves1 + leaves2:
            lengths[leaf] += 1
        heapq.heappush(heap, (c1 + c2, i1, leaves1 + leaves2))
    return np.array(lengths)


def fibonacci(k):
    out = [1, 1]
    while len(out) < k:
        out.append(out[-1] + out[-2])
    return np.array(out[:k])


def kraft(lengths):
    lengths = np.asarray(lengths)
    return sum(2.0 ** -int(length) for length in lengths[lengths > 0])


def cost(counts, lengths):
    return int(np.dot(np.asarray(counts, np.int64), np.asarray(lengths, np.int64)))


def resealed(stream):
    return stream[:-4] + zlib.crc32(stream[:-4]).to_bytes(4, "big")


def test_textbook_example_lengths():
    # CLRS 16.3: frequencies a..f = 45, 13, 12, 16, 9, 5 give codes of 1, 3, 3, 3, 4, 4 bits
    assert huffman_code_lengths([45, 13, 12, 16, 9, 5]).tolist() == [1, 3, 3, 3, 4, 4]
    assert heapq_huffman_lengths([45, 13, 12, 16, 9, 5]).tolist() == [1, 3, 3, 3, 4, 4]


@pytest.mark.parametrize("seed", range(20))
def test_lengths_cost_the_same_as_heapq_huffman(seed):
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 1000, rng.integers(2, 300))
    counts[rng.random(len(counts)) < 0.2] = 0
    counts[:2] += 1
    ours, reference = huffman_code_lengths(counts), heapq_huffman_lengths(counts)
    assert reference.max() <= MAX_LENGTH
    assert cost(counts, ours) == cost(counts, reference)
    assert np.array_equal(ours > 0, counts > 0)


def test_single_and_absent_symbols():
    assert huffman_code_lengths([0, 5, 0]).tolist() == [0, 1, 0]
    assert huffman_code_lengths([0, 0]).tolist() == [0, 0]
    assert huffman_code_lengths([]).tolist() == []
    assert huffman_code_lengths([3, 3]).tolist() == [1, 1]


@pytest.mark.parametrize("seed", range(10))
def test_kraft_equality(seed):
    counts = np.random.default_rng(seed).geometric(0.01, 500)
    assert kraft(huffman_code_lengths(counts)) == 1.0


def test_fibonacci_counts_are_limited_to_max_length():
    counts = fibonacci(45)
    assert heapq_huffman_lengths(counts).max() == 44
    lengths = huffman_code_lengths(counts)
    assert lengths.max() == MAX_LENGTH
    assert kraft(lengths) == 1.0
    assert np.all(np.diff(lengths.astype(int)) <= 0)  # heavier symbols never get longer codes


@pytest.mark.parametrize("counts, limit", [(fibonacci(12), 5), (fibonacci(10), 4), ([1, 1, 2, 3, 50, 60, 70, 80], 3),
                                           ([7, 1, 1, 1, 1, 1, 1, 1, 1], 4)])
def test_length_limited_lengths_are_optimal(counts, limit):
    counts = np.asarray(counts)
    descending = np.sort(counts)[::-1]
    best = min(cost(descending, lengths)
               for lengths in itertools.combinations_with_replacement(range(1, limit + 1), len(counts))
               if kraft(lengths) <= 1)
    lengths = huffman_code_lengths(counts, max_length=limit)
    assert lengths.max() <= limit
    assert cost(counts, lengths) == best


def test_canonical_codes_of_rfc1951():
    # RFC 1951 §3.2.2: lengths (3, 3, 3, 3, 3, 2, 4, 4) for A..H give 010 011 100 101 110 00 1110 1111
    codes = canonical_codes([3, 3, 3, 3, 3, 2, 4, 4])
    assert codes.tolist() == [0b010, 0b011, 0b100, 0b101, 0b110, 0b00, 0b1110, 0b1111]


@pytest.mark.parametrize("seed", range(10))
def test_codes_are_canonical_and_prefix_free(seed):
    rng = np.random.default_rng(seed)
    counts = rng.geometric(0.05, 200) * (rng.random(200) < 0.8)
    lengths = huffman_code_lengths(counts).astype(int)
    codes = canonical_codes(lengths).astype(int)
    order = sorted(np.flatnonzero(lengths), key=lambda s: (lengths[s], s))
    expected = 0
    for previous, symbol in zip([None] + order, order):
        if previous is not None:
            expected = (codes[previous] + 1) << (lengths[symbol] - lengths[previous])
        assert codes[symbol] == expected
    words = sorted(format(codes[s], f"0{lengths[s]}b") for s in order)
    assert all(not b.startswith(a) for a, b in zip(words, words[1:]))
    assert np.all(codes[lengths == 0] == 0)


ROUND_TRIPS = {
    "empty": np.zeros(0, np.int64),
    "one symbol": np.array([7]),
    "one value repeated": np.full(5000, 65535),
    "two symbols": np.array([0, 1, 1, 0, 1]),
    "full alphabet": np.random.default_rng(0).permutation(np.r_[np.arange(65536), np.arange(100)]),
    "fibonacci skew": np.random.default_rng(1).permutation(np.repeat(np.arange(28), fibonacci(28))),
    "geometric": np.random.default_rng(2).geometric(0.3, 100_000) - 1,
    "uint8": np.random.default_rng(3).integers(0, 256, 777).astype(np.uint8),
    "int16": np.random.default_rng(4).integers(0, 9, 1000).astype(np.int16),
    "uint64": np.array([2**16 - 1, 0, 5], np.uint64),
    "list": [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5],
    "empty list": [],
}


@pytest.mark.parametrize("name", ROUND_TRIPS)
def test_round_trip(name):
    symbols = ROUND_TRIPS[name]
    decoded = huffman_decode(huffman_encode(symbols))
    assert decoded.dtype == np.int64
    assert np.array_equal(decoded, np.asarray(symbols, np.int64))


@settings(max_examples=200, deadline=None)
@given(arrays(st.sampled_from([np.uint8, np.uint16, np.int32, np.int64]), st.integers(0, 400),
              elements=st.integers(0, 255) | st.integers(0, 3)))
def test_round_trip_property(symbols):
    assert np.array_equal(huffman_decode(huffman_encode(symbols)), symbols.astype(np.int64))


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 65535), max_size=200))
def test_round_trip_property_wide_alphabet(symbols):
    assert np.array_equal(huffman_decode(huffman_encode(symbols)), np.array(symbols, np.int64))


def test_decodes_bytes_like_objects():
    stream = huffman_encode([1, 2, 3, 3])
    for data in (bytearray(stream), memoryview(stream), np.frombuffer(stream, np.uint8)):
        assert huffman_decode(data).tolist() == [1, 2, 3, 3]


def optimal_bytes(symbols):
    counts = np.bincount(symbols)
    return cost(counts, huffman_code_lengths(counts)) / 8


def test_size_within_one_percent_of_the_huffman_payload():
    symbols = np.minimum(np.random.default_rng(5).geometric(0.25, 1_000_000) - 1, 31)
    optimum = optimal_bytes(symbols)
    assert optimum < len(huffman_encode(symbols)) <= 1.01 * optimum + 64


@pytest.mark.parametrize("p", [0.75, 0.9])
def test_size_of_benchmark_inputs_within_4_kib(p):
    probabilities = p ** np.arange(32) / np.sum(p ** np.arange(32))
    symbols = np.random.default_rng(0).choice(32, 300_000, p=probabilities)
    assert len(huffman_encode(symbols)) <= optimal_bytes(symbols) + 4096


@pytest.mark.parametrize("symbols, message", [
    ([-1, 2], "symbols must be integers in 0..65535"),
    ([65536], "symbols must be integers in 0..65535"),
    (np.array([1.0, 2.0]), "symbols must be integers"),
    (np.array([True]), "symbols must be integers"),
    (np.zeros((2, 2), int), "symbols must be a 1-D array"),
    (np.int64(3), "symbols must be a 1-D array"),
])
def test_encode_rejects_bad_symbols(symbols, message):
    with pytest.raises(ValueError, match=message):
        huffman_encode(symbols)


@pytest.mark.parametrize("call, message", [
    (lambda: huffman_code_lengths([1, -1]), "counts must be >= 0"),
    (lambda: huffman_code_lengths([[1, 2]]), "counts must be a 1-D array of integers"),
    (lambda: huffman_code_lengths([0.5, 1.0]), "counts must be a 1-D array of integers"),
    (lambda: huffman_code_lengths([1, 1, 1, 1, 1], max_length=2), "max_length must be an integer >= 3"),
    (lambda: huffman_code_lengths([1, 1], max_length=0), "max_length must be an integer >= 1"),
    (lambda: huffman_code_lengths([1, 1], max_length=2.0), "max_length must be an integer >= 1"),
    (lambda: huffman_code_lengths([5], max_length=-1), "max_length must be an integer >= 1"),
    (lambda: canonical_codes([1, 1, 1]), "lengths must satisfy Kraft's inequality"),
    (lambda: canonical_codes([33, 1]), "lengths must be in 0..32"),
    (lambda: canonical_codes([-1, 1]), "lengths must be in 0..32"),
    (lambda: canonical_codes([1.0]), "lengths must be a 1-D array of integers"),
])
def test_argument_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


SMALL = np.random.default_rng(6).geometric(0.4, 300) - 1


def test_every_truncation_is_rejected():
    stream = huffman_encode(SMALL)
    for cut in range(len(stream)):
        with pytest.raises(CompressedFormatError):
            huffman_decode(stream[:cut])


def test_every_single_byte_corruption_is_caught_by_the_crc():
    stream = huffman_encode(SMALL)
    rng = np.random.default_rng(7)
    for _ in range(300):
        damaged = bytearray(stream)
        damaged[rng.integers(len(stream))] ^= int(rng.integers(1, 256))
        with pytest.raises(CompressedFormatError):
            huffman_decode(bytes(damaged))


@pytest.mark.parametrize("seed", range(3))
def test_corruptions_behind_a_valid_crc_raise_only_format_errors(seed):
    rng = np.random.default_rng(seed)
    symbols = rng.geometric(0.3, 3000) - 1
    stream = huffman_encode(symbols)
    for _ in range(300):
        damaged = bytearray(stream)
        for at in rng.integers(len(stream) - 4, size=rng.integers(1, 4)):
            damaged[at] = int(rng.integers(256))
        try:
            huffman_decode(resealed(bytes(damaged)))
        except CompressedFormatError:
            pass


def read_varint(data, at):
    value, shift = 0, 0
    while True:
        value |= (data[at] & 0x7F) << shift
        shift += 7
        at += 1
        if data[at - 1] < 0x80:
            return value, at


def sync_base_at(stream):
    """Where the sync table's base varint starts, reading the documented byte format."""
    at = read_varint(stream, 3)[1]  # symbol count
    at = read_varint(stream, at)[1]  # alphabet size
    table_size, at = read_varint(stream, at)
    return read_varint(stream, at + table_size + 1)[1]  # skip the table and the block size, read total_bits


@pytest.mark.parametrize("shift, message", [(1, "whole blocks"), (-1, "whole blocks"), (10**6, "sync base")])
def test_shifted_sync_offsets_are_caught(shift, message):
    stream = huffman_encode(np.random.default_rng(8).geometric(0.3, 5000) - 1)
    at = sync_base_at(stream)
    base, end = read_varint(stream, at)
    with pytest.raises(CompressedFormatError, match=message):
        huffman_decode(resealed(stream[:at] + _varint(base + shift) + stream[end:]))


def test_payload_bit_flips_behind_a_valid_crc_are_often_caught_by_the_block_ends():
    symbols = np.random.default_rng(9).geometric(0.3, 5000) - 1
    stream = huffman_encode(symbols)
    caught = 0
    for bit in range(200):
        damaged = bytearray(stream)
        damaged[-5 - bit] ^= 1 << (bit % 8)
        try:
            assert len(huffman_decode(resealed(bytes(damaged)))) == len(symbols)
        except CompressedFormatError:
            caught += 1
    assert caught > 50


def test_huge_claimed_count_fails_fast():
    stream = resealed(b"HF\x01" + _varint(10**12) + bytes(100) + bytes(4))
    start = time.perf_counter()
    with pytest.raises(CompressedFormatError, match="symbol count"):
        huffman_decode(stream)
    assert time.perf_counter() - start < 0.5


def test_one_symbol_stream_with_nonzero_payload_is_an_error():
    stream = bytearray(huffman_encode(np.full(100, 3)))
    stream[-5] = 1
    with pytest.raises(CompressedFormatError, match="all zero bits"):
        huffman_decode(resealed(bytes(stream)))


@pytest.mark.parametrize("data, message", [
    (b"", "shorter than any valid stream"),
    (b"PK\x03\x04" + bytes(20), "bad magic"),
    (resealed(b"HF\x02" + _varint(0) + bytes(4)), "format version 2"),
    (b"HF\x01" + _varint(0) + bytes(4), "CRC-32"),
    (resealed(b"HF\x01" + _varint(0) + b"\x00" + bytes(4)), "unexpected bytes"),
])
def test_foreign_and_newer_streams(data, message):
    with pytest.raises(CompressedFormatError, match=message):
        huffman_decode(data)


def test_a_block_running_off_the_end_of_the_payload_is_an_error():
    # symbol 0 has code 0, symbols 1..16 have 5-bit codes; 33 symbols in blocks of 32 + 1; the second block is
    # said to start at the last payload bit, a 1 that opens a 5-bit code reaching 4 bits past the end
    table = zlib.compress(bytes([1] + [5] * 16))
    header = b"HF\x01" + _varint(33) + _varint(17) + _varint(len(table)) + table + b"\x05" + _varint(40)
    stream = resealed(header + _varint(39) + b"\x00" + bytes([0, 0, 0, 0, 1]) + bytes(4))
    with pytest.raises(CompressedFormatError, match="whole blocks"):
        huffman_decode(stream)


def test_incomplete_code_is_rejected():
    table = zlib.compress(bytes([1, 2]))  # lengths 1 and 2: Kraft sum 3/4
    body = b"HF\x01" + _varint(2) + _varint(2) + _varint(len(table)) + table + b"\x05" + _varint(3) + b"\x40"
    with pytest.raises(CompressedFormatError, match="Kraft"):
        huffman_decode(resealed(body + bytes(4)))
