"""Fuzzing the .kdz reader: a damaged file loads the identical network or raises CompressedFormatError."""
import collections
import time
import tracemalloc

import pytest
import torch

import kdlab
from kdlab.fuzz import corruptions, sample_model

COUNT = 150  # corruptions per family: raw, resealed, header, stream


def _outputs(model):
    with torch.no_grad():
        return model.eval()(torch.linspace(-2, 2, 4 * 28 * 28).reshape(4, 1, 28, 28))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A pruned LeNet-5 with shared fc layers: codebook, sparse and plain entries in one file."""
    model = sample_model()
    path = tmp_path_factory.mktemp("fuzz") / "model.kdz"
    kdlab.save_compressed(model, path)
    kinds = [entry["kind"] for entry in kdlab.read_compressed(path)[1]]
    assert {"codebook", "sparse", "plain"} <= set(kinds)
    return path.read_bytes(), _outputs(kdlab.load_compressed(path)), tmp_path_factory.mktemp("damaged")


def test_every_corruption_loads_the_same_network_or_raises_a_format_error(saved):
    data, expected, folder = saved
    outcomes = collections.Counter()
    tracemalloc.start()
    for number, (kind, damaged) in enumerate(corruptions(data, COUNT, seed=0)):
        family = kind.split("/")[0]
        path = folder / f"{number}.kdz"
        path.write_bytes(damaged)
        tracemalloc.reset_peak()
        began = time.perf_counter()
        try:
            model = kdlab.load_compressed(path)
        except kdlab.CompressedFormatError:
            outcomes[family, "refused"] += 1
        else:
            same = torch.equal(_outputs(model), expected)
            # a CRC-32 always sees raw damage; damage behind a recomputed CRC may load a different network
            assert same or family != "raw", f"{kind}: a damaged file loaded a different network"
            outcomes[family, "same" if same else "different"] += 1
        finally:
            seconds = time.perf_counter() - began
            peak = tracemalloc.get_traced_memory()[1]
        assert peak < 64 * len(damaged) + 2**24, f"{kind}: {peak:,} bytes allocated for a {len(damaged):,}-byte file"
        assert seconds < 10, f"{kind}: {seconds:.1f} s to load"  # a hang guard; the benchmark measures the time
    tracemalloc.stop()
    print(dict(outcomes))
    assert sum(outcomes.values()) == 4 * COUNT
    assert outcomes["raw", "refused"] + outcomes["raw", "same"] == COUNT
