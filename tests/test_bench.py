import json

import numpy as np
import pytest

from kdlab import bench, huffman_decode, huffman_encode


def test_plain_reference_codec_round_trips_and_is_optimal():
    symbols = bench.bell_indices(5000, 32).tolist()
    data, num_bits, codes = bench.plain_huffman_encode(symbols)
    assert bench.plain_huffman_decode(data, num_bits, codes) == symbols
    assert 8 * len(huffman_encode(np.array(symbols))) >= num_bits
    assert np.array_equal(huffman_decode(huffman_encode(np.array(symbols))), symbols)


def test_benchmarks_measure_on_small_inputs():
    km = bench.bench_kmeans(n=20_000, k=8, repeats=1)
    assert km["values"] == 20_000 and km["clusters"] == 8
    assert km["inertia_ratio"] <= 1 + 1e-9
    hf = bench.bench_huffman(n=20_000, alphabet=16, repeats=1)
    assert hf["encode_s"] > 0 and hf["decode_s"] > 0 and hf["stream_bytes"] >= hf["optimal_payload_bytes"]
    dm = bench.bench_damaged(count=5)
    assert dm["files"] == 20 and 0 < dm["refused"] <= 20 and dm["worst_s"] >= dm["median_s"] > 0
    text = bench.table({"kmeans": km, "huffman": hf, "damaged": dm})
    assert "kmeans_1d" in text and "huffman decode" in text and "damaged .kdz load, 20 files" in text


def test_main_prints_the_table_and_writes_json(tmp_path, capsys):
    out = str(tmp_path / "b.json")
    results = bench.main(["--repeats", "1", "--values", "5000", "--symbols", "5000", "--damaged", "2", "--json", out])
    assert json.loads((tmp_path / "b.json").read_text())["kmeans"]["values"] == results["kmeans"]["values"]
    assert "benchmark" in capsys.readouterr().out


def test_main_refuses_bad_sizes(capsys):
    with pytest.raises(SystemExit):
        bench.main(["--values", "0"])
    assert "--values must be >= 1" in capsys.readouterr().err
