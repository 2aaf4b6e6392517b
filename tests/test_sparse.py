import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from kdlab.errors import CompressedFormatError
from kdlab.sparse import decode_positions, encode_positions


def reference_fields(mask, bits):
    """The convention, one non-zero at a time: fillers of gap 2**bits while the gap is longer, then gap - 1;
    then fillers over the trailing zeros until fewer than 2**bits remain."""
    flat = np.asarray(mask).reshape(-1)
    fields, filler, previous = [], [], -1
    for position in np.flatnonzero(flat):
        gap = position - previous
        while gap > 2**bits:
            fields.append(2**bits - 1)
            filler.append(True)
            gap -= 2**bits
        fields.append(gap - 1)
        filler.append(False)
        previous = position
    while len(flat) - 1 - previous >= 2**bits:
        fields.append(2**bits - 1)
        filler.append(True)
        previous += 2**bits
    return fields, filler


def mask_of(size, positions):
    mask = np.zeros(size, bool)
    mask[positions] = True
    return mask


def test_worked_example_with_3_bit_fields():
    # non-zeros at 1, 4, 15: gaps 2, 3, 11; 11 > 2**3 becomes a filler of gap 8 (at position 12) and a gap of 3
    fields, filler = encode_positions(mask_of(16, [1, 4, 15]), bits=3)
    assert fields.tolist() == [1, 2, 7, 2]
    assert filler.tolist() == [False, False, True, False]
    assert decode_positions(fields, 16, bits=3).tolist() == [1, 4, 12, 15]


def test_output_types():
    fields, filler = encode_positions(mask_of(10, [3, 9]))
    assert fields.dtype == np.uint16 and filler.dtype == bool
    assert decode_positions(fields, 10).dtype == np.int64


@pytest.mark.parametrize("bits", [1, 2, 3, 5, 8, 16])
@pytest.mark.parametrize("seed", range(3))
def test_matches_the_one_entry_at_a_time_reference(bits, seed):
    rng = np.random.default_rng(seed)
    mask = rng.random(5000) < rng.choice([0.001, 0.05, 0.5])
    fields, filler = encode_positions(mask, bits)
    expected_fields, expected_filler = reference_fields(mask, bits)
    assert fields.tolist() == expected_fields
    assert filler.tolist() == expected_filler


def test_all_zero_mask_stores_only_fillers():
    fields, filler = encode_positions(np.zeros(100, bool), bits=4)
    assert fields.tolist() == [15] * 6 and filler.all()  # fillers at 15, 31, ..., 95: 4 zeros remain
    assert decode_positions(fields, 100, bits=4).tolist() == [15, 31, 47, 63, 79, 95]
    assert encode_positions(np.zeros(15, bool), bits=4)[0].size == 0


def test_dense_mask_has_no_fillers():
    fields, filler = encode_positions(np.ones(1000, bool), bits=1)
    assert np.all(fields == 0) and not filler.any()
    assert np.array_equal(decode_positions(fields, 1000, bits=1), np.arange(1000))


def test_gap_far_above_the_field():
    fields, filler = encode_positions(mask_of(10_001, [10_000]), bits=2)
    assert len(fields) == -(-10_001 // 4)  # ceil(gap / 2**bits) entries for a gap of 10_001
    assert filler[:-1].all() and not filler[-1]
    assert decode_positions(fields, 10_001, bits=2)[-1] == 10_000


@pytest.mark.parametrize("positions", [[0], [99], [0, 99], [0, 1, 98, 99]])
def test_first_and_last_positions(positions):
    fields, filler = encode_positions(mask_of(100, positions), bits=3)
    decoded = decode_positions(fields, 100, bits=3)
    assert decoded[~filler].tolist() == positions


def test_any_shape_and_cpu_tensors_are_flattened():
    mask = np.random.default_rng(0).random((4, 3, 5)) < 0.3
    expected = encode_positions(mask.reshape(-1), 3)
    for given_mask in (mask, torch.from_numpy(mask)):
        fields, filler = encode_positions(given_mask, 3)
        assert np.array_equal(fields, expected[0]) and np.array_equal(filler, expected[1])


@settings(max_examples=200, deadline=None)
@given(arrays(bool, st.integers(0, 600), elements=st.booleans() | st.just(False)), st.integers(1, 16))
def test_round_trip_property(mask, bits):
    fields, filler = encode_positions(mask, bits)
    positions = decode_positions(fields, len(mask), bits)
    assert np.all(fields < 2**bits)
    assert np.array_equal(positions[~filler], np.flatnonzero(mask))
    assert not mask[positions[filler]].any()  # fillers only ever stand for zero weights
    nonzero = np.flatnonzero(mask)
    gaps = np.diff(nonzero, prepend=-1)
    tail = (len(mask) - 1 - (nonzero[-1] if nonzero.size else -1)) // 2**bits
    assert len(fields) == np.sum(-(-gaps // 2**bits)) + tail
    assert len(mask) - 1 - (positions[-1] if positions.size else -1) < 2**bits  # the fields cover the layer


@pytest.mark.parametrize("bits", [0, 17, -3, 2.5, True, "5", None])
def test_bits_must_be_an_int_from_1_to_16(bits):
    with pytest.raises(ValueError, match="bits must be an int in 1..16"):
        encode_positions(np.ones(3, bool), bits)
    with pytest.raises(ValueError, match="bits must be an int in 1..16"):
        decode_positions(np.zeros(3, np.uint16), 3, bits)


@pytest.mark.parametrize("call, message", [
    (lambda: encode_positions(np.array([0, 1, 2])), "mask must be a boolean array"),
    (lambda: decode_positions(np.zeros((2, 2), np.uint16), 10), "fields must be a 1-D array of integers"),
    (lambda: decode_positions(np.array([0.5]), 10), "fields must be a 1-D array of integers"),
    (lambda: decode_positions(np.zeros(2, np.uint16), -1), "size must be an integer >= 0"),
    (lambda: decode_positions(np.zeros(2, np.uint16), 2.0), "size must be an integer >= 0"),
])
def test_argument_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("fields, size, bits", [
    ([0, 8], 100, 3),  # a field of 3 bits holds 0..7
    ([0, -1], 100, 3),
    ([7, 7, 7], 23, 3),  # positions 7, 15, 23 run past 23 weights
    ([0], 100, 3),  # 99 weights after position 0: the fields do not cover the layer
    ([], 2**16 + 1, 16),  # no fields for a layer longer than one 16-bit field covers
])
def test_damaged_fields_raise_format_errors(fields, size, bits):
    with pytest.raises(CompressedFormatError):
        decode_positions(np.array(fields), size, bits)
