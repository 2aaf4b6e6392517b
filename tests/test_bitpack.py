import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kdlab.bitpack import pack_indices, unpack_indices


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 16), st.integers(0, 300), st.integers(0, 2**32 - 1))
def test_pack_indices_round_trip(bits, count, seed):
    index = torch.randint(0, 2**bits, (count,), generator=torch.Generator().manual_seed(seed))
    packed = pack_indices(index, bits)
    assert packed.dtype == torch.uint8 and packed.numel() == -(-count * bits // 8)
    assert torch.equal(unpack_indices(packed, bits, count), index)


def test_indices_are_written_msb_first_without_gaps():
    assert pack_indices(torch.tensor([1, 0, 3, 2]), 2).tolist() == [0b01001110]
    assert pack_indices(torch.tensor([5, 1, 7]), 3).tolist() == [0b10100111, 0b10000000]
    assert pack_indices(torch.tensor([0xABC, 0x123]), 12).tolist() == [0xAB, 0xC1, 0x23]


def test_eight_bits_are_the_bytes_themselves():
    index = torch.arange(256).flip(0)
    assert torch.equal(pack_indices(index, 8), index.to(torch.uint8))
    assert torch.equal(unpack_indices(index.to(torch.uint8), 8, 256), index)
