"""Property-based tests across kdlab: Huffman and gap coding, codebook error bounds, .kdz save/load identity."""
import math

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from torch import nn

import kdlab
from kdlab.huffman import huffman_decode, huffman_encode
from kdlab.sparse import decode_positions, encode_positions

IN_SHAPE = (3, 8, 8)
SEEDS = st.integers(0, 2**32 - 1)


@st.composite
def skewed_symbols(draw):
    """Up to 5000 symbols, geometric, one dominant, long runs or uniform, over a sparse alphabet in 0..65535."""
    top, n = draw(st.sampled_from([16, 256, 65536])), draw(st.integers(0, 5000))
    rng = np.random.default_rng(draw(SEEDS))
    alphabet = rng.choice(top, min(top, draw(st.integers(1, 3000))), replace=False)
    shape = draw(st.sampled_from(["geometric", "dominant", "runs", "uniform"]))
    if shape == "geometric":
        ranks = np.minimum(rng.geometric(draw(st.floats(0.05, 0.95)), n) - 1, len(alphabet) - 1)
    elif shape == "dominant":
        ranks = np.where(rng.random(n) < draw(st.floats(0.9, 1)), 0, rng.integers(0, len(alphabet), n))
    elif shape == "runs":
        ranks = np.repeat(rng.integers(0, len(alphabet), n), rng.geometric(1 / draw(st.integers(1, 3000)), n))[:n]
    else:
        ranks = rng.integers(0, len(alphabet), n)
    return alphabet[ranks].astype(draw(st.sampled_from([np.uint16, np.int32, np.int64])))


def entropy_bits(symbols):
    """n x the empirical entropy of `symbols`: no prefix code takes fewer bits, Huffman's takes < n more."""
    counts = np.bincount(symbols)
    counts = counts[counts > 0]
    return float(np.sum(counts * np.log2(len(symbols) / counts)))


def read_varint(data, at):
    value = shift = 0
    while data[at] & 0x80:
        value |= (data[at] & 0x7F) << shift
        at, shift = at + 1, shift + 7
    return value | data[at] << shift, at + 1


def code_table_size(stream):
    """The code table's byte count, from the documented header: magic, version, n, alphabet, table size."""
    n, at = read_varint(stream, 3)
    if n == 0:
        return 0
    return read_varint(stream, read_varint(stream, at)[1])[0]


# For n <= 5000 symbols: magic and version (3 bytes), the varints n (<= 2), alphabet size, table size and
# total_bits (<= 3 each), the block-size byte and the CRC (4); a sync table, when there is one, holds at most 1%
# of the payload in fields, plus its base varint (<= 3) and width byte.
HUFFMAN_OVERHEAD = 3 + 2 + 3 + 3 + 3 + 1 + 4 + 3 + 1


@settings(max_examples=150, deadline=None)
@given(skewed_symbols())
@example(np.zeros(0, np.int64))
@example(np.full(5000, 65535))
@example(np.repeat([0, 65535, 7], [4000, 1, 999]))
def test_huffman_round_trip_within_one_bit_per_symbol_of_the_entropy(symbols):
    stream = huffman_encode(symbols)
    decoded = huffman_decode(stream)
    assert decoded.dtype == np.int64 and np.array_equal(decoded, symbols.astype(np.int64))
    n, entropy = len(symbols), entropy_bits(symbols)
    payload = math.ceil((entropy + n) / 8)  # n < 28657 never needs codes over 20 bits: Huffman lengths, < H + 1
    assert entropy / 8 <= len(stream) <= HUFFMAN_OVERHEAD + code_table_size(stream) + 1.01 * payload


@st.composite
def masks(draw):
    """Boolean layers of up to 20,000 weights with a density drawn from 0..1 (often very sparse)."""
    rng = np.random.default_rng(draw(SEEDS))
    return rng.random(draw(st.integers(0, 20_000))) < draw(st.floats(0, 1) | st.floats(0, 1e-3))


@settings(max_examples=100, deadline=None)
@given(masks(), st.integers(1, 16))
@example(np.zeros(1000, bool), 5)
@example(np.ones(1000, bool), 1)
@example(np.arange(70_000) == 50_000, 3)
@example(np.arange(70_000) == 69_999, 3)
def test_gap_fields_locate_every_nonzero_and_cover_the_layer(mask, bits):
    fields, filler = encode_positions(mask, bits)
    positions = decode_positions(fields, mask.size, bits)
    assert fields.dtype == np.uint16 and np.all(fields < 2**bits)
    assert np.array_equal(positions[~filler], np.flatnonzero(mask))
    assert not mask[positions[filler]].any()
    assert np.all(fields[filler] == 2**bits - 1)  # a filler always spans a whole field
    assert mask.size - 1 - (positions[-1] if positions.size else -1) < 2**bits


def random_model(name, seed, sensitivity=0.0, grid=None):
    """A random network in eval mode: weights on a `grid`, random BatchNorm, pruned by std unless sensitivity 0."""
    torch.manual_seed(seed)
    model = kdlab.build_model(name, in_shape=IN_SHAPE)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.normal_(1, 0.2)
                module.bias.normal_(0, 0.2)
                module.running_mean.normal_(0, 0.2)
                module.running_var.uniform_(0.5, 1.5)
            elif grid and isinstance(module, (nn.Linear, nn.Conv2d)):
                module.weight.copy_(torch.round(module.weight / grid) * grid)
    if sensitivity:
        kdlab.prune_by_std(model, sensitivity)
    return model.eval()


def flat_weights(model):
    """{layer name: its effective weight, flattened, as float64}."""
    return {name: kdlab.current_weight(module).double().numpy().ravel()
            for name, module in kdlab.prunable_layers(model)}


def nearest_distance(values, centroids):
    """Distance from each value to its nearest centroid (`centroids` sorted ascending)."""
    right = np.searchsorted(centroids, values).clip(max=len(centroids) - 1)
    left = (right - 1).clip(min=0)
    return np.minimum(np.abs(values - centroids[left]), np.abs(values - centroids[right]))


COMPRESSIBLE = dict(name=st.sampled_from(["mlp30", "mlp100", "lenet5"]), seed=SEEDS, sensitivity=st.floats(0, 2),
                    bits=st.integers(1, 8), grid=st.sampled_from([None, 1 / 64, 1 / 1024]))


@settings(max_examples=40, deadline=None)
@given(**COMPRESSIBLE)
def test_quantized_weights_are_their_nearest_codebook_values(name, seed, sensitivity, bits, grid):
    model = random_model(name, seed, sensitivity, grid)
    weights = flat_weights(model)
    quantized = kdlab.quantize_model(model, bits)
    for layer, deq in flat_weights(kdlab.dequantize_model(quantized)).items():
        w, book = weights[layer], quantized.get_submodule(layer).codebook.double().numpy()
        pruned = w == 0
        used = np.unique(deq[~pruned])  # k-means leaves no centroid without members
        assert book.shape == (2**bits,)
        assert set(book.tolist()) == set(used.tolist()) | ({0.0} if pruned.any() else set())
        assert np.all(deq[pruned] == 0)
        if used.size:
            w, error = w[~pruned], np.abs(w - deq)[~pruned]
            np.testing.assert_allclose(error, nearest_distance(w, used), rtol=0, atol=1e-12)
            inside = (w >= used[0]) & (w <= used[-1])
            assert np.all(error[inside] <= np.diff(used).max(initial=0) / 2 + 1e-12)
            assert np.allclose(error[~inside], np.minimum(np.abs(w - used[0]), np.abs(w - used[-1]))[~inside])


@settings(max_examples=40, deadline=None)
@given(**COMPRESSIBLE)
def test_shared_weights_are_their_clusters_means(name, seed, sensitivity, bits, grid):
    model = random_model(name, seed, sensitivity, grid)
    weights = flat_weights(model)
    shared = kdlab.share_weights(model, bits)
    plain = flat_weights(kdlab.dequantize_model(shared))
    for layer, module, parametrization in kdlab.shared_layers(shared):
        w, deq = weights[layer], plain[layer]
        book = module.parametrizations.weight.original.detach().double().numpy()
        kept = w != 0
        index = parametrization.index.numpy().ravel()[kept]
        assert len(book) <= 2**bits and np.all(deq[~kept] == 0) and np.array_equal(deq[kept], book[index])
        if kept.any():
            w, tol = w[kept], 1e-6 * np.abs(w).max()
            counts = np.bincount(index, minlength=len(book))
            assert np.all(counts > 0)  # no nearest-value check: the means are one Lloyd update past k-means' centroids
            np.testing.assert_allclose(book, np.bincount(index, w, len(book)) / counts, rtol=1e-5, atol=tol)
            order = np.argsort(w, kind="stable")
            steps = np.diff(index[order])
            assert np.all(steps >= 0) and np.all(steps[np.diff(w[order]) == 0] == 0)  # clusters are intervals
            low, high = np.full(len(book), np.inf), np.full(len(book), -np.inf)
            np.minimum.at(low, index, w)
            np.maximum.at(high, index, w)
            assert np.all(np.abs(w - book[index]) <= (high - low)[index] + tol)


@pytest.fixture(scope="module")
def kdz_path(tmp_path_factory):
    return tmp_path_factory.mktemp("properties") / "model.kdz"


@settings(max_examples=5, deadline=None)
@given(name=st.sampled_from(kdlab.MODELS), seed=SEEDS, sensitivity=st.just(0.0) | st.floats(0, 2),
       compression=st.none() | st.tuples(st.sampled_from(["share", "quantize"]), st.integers(1, 8)))
@example(name="lenet300", seed=0, sensitivity=0.0, compression=None)
@example(name="lenet5", seed=1, sensitivity=1.0, compression=("share", 1))
@example(name="mlp100", seed=2, sensitivity=0.3, compression=("quantize", 8))
@example(name="mlp30", seed=3, sensitivity=2.0, compression=("share", 8))
@example(name="resnet18", seed=4, sensitivity=0.5, compression=("share", 3))
@example(name="resnet10", seed=5, sensitivity=0.0, compression=("quantize", 2))
def test_save_load_gives_the_same_network(kdz_path, name, seed, sensitivity, compression):
    model = random_model(name, seed, sensitivity)
    if compression and compression[0] == "share":
        kdlab.share_weights(model, compression[1])
    elif compression:
        model = kdlab.quantize_model(model, compression[1]).eval()
    kdlab.save_compressed(model, kdz_path)
    loaded = kdlab.load_compressed(kdz_path).eval()
    expected, state = kdlab.dequantize_model(model).state_dict(), loaded.state_dict()
    assert list(state) == list(expected)
    assert all(state[key].dtype == expected[key].dtype and torch.equal(state[key], expected[key]) for key in state)
    x = torch.randn(2, *IN_SHAPE, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
