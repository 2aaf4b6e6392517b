import json

import numpy as np
import pytest
import torch

from kdlab import bench, huffman_decode, huffman_encode
from kdlab.bench_deploy import bench_deploy
from kdlab.bench_distill import bench_distill
from kdlab.bench_files import bench_files


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
    assert km["optimal_inertia"] <= km["inertia"] * (1 + 1e-9) and km["optimal_s"] > 0
    hf = bench.bench_huffman(n=20_000, alphabet=16, repeats=1)
    assert hf["encode_s"] > 0 and hf["decode_s"] > 0 and hf["stream_bytes"] >= hf["optimal_payload_bytes"]
    dm = bench.bench_damaged(count=5)
    assert dm["files"] == 20 and 0 < dm["refused"] <= 20 and dm["worst_s"] >= dm["median_s"] > 0
    text = bench.table({"kmeans": km, "huffman": hf, "damaged": dm})
    assert "kmeans_1d" in text and "method='optimal'" in text and "huffman decode" in text
    assert "damaged .kdz load, 20 files" in text


def test_files_of_a_transformer_shrink_with_the_entropy_weight_and_reload_exactly():
    rows = bench_files(models=("transformer",), entropy_weights=(0.0, 0.01))["rows"]
    assert [row["entropy_weight"] for row in rows] == [0.0, 0.01]
    assert all(row["reload_exact"] and not row["raw_weights"] and row["ratio"] > 8 for row in rows)
    assert rows[1]["kdz_bytes"] < 0.9 * rows[0]["kdz_bytes"]
    text = bench.table({"files": {"rows": rows}})
    assert ".kdz random-init transformer, s=1.0, 5 bits, entropy_weight 0.01" in text and ">= 8x" in text


def test_bench_files_refuses_bad_arguments():
    with pytest.raises(ValueError, match="^models must be a list of resnet18, mobilenet_v2, transformer, got"):
        bench_files(models=("vgg16",))
    with pytest.raises(ValueError, match="^entropy_weight must be a finite number >= 0, got -1"):
        bench_files(entropy_weights=(-1,))


def test_main_prints_the_table_and_writes_json(tmp_path, capsys):
    out = str(tmp_path / "b.json")
    results = bench.main(["--repeats", "1", "--values", "5000", "--symbols", "5000", "--damaged", "2", "--json", out,
                          "--only", "kmeans,huffman,damaged"])
    assert set(results) == {"kmeans", "huffman", "damaged", "torch_threads"}
    assert json.loads((tmp_path / "b.json").read_text())["kmeans"]["values"] == results["kmeans"]["values"]
    assert "benchmark" in capsys.readouterr().out


def test_training_benchmarks_run_on_digits_and_print_their_targets(capsys):
    results = bench.main(["--only", "ptq,distill", "--dataset", "digits"])
    assert set(results) == {"ptq", "distill", "torch_threads"}
    methods = results["distill"]["methods"]
    assert list(methods) == ["scratch", "logits", "features", "relations"]
    assert all(0.5 < run["accuracy"] <= 1 and run["seconds"] > 0 for run in methods.values())
    assert results["distill"]["dataset"] == "digits" and results["ptq"]["dataset"] == "digits"
    out = capsys.readouterr().out
    assert "linear PTQ lenet5 8-bit" in out and "<= 0.3 pt, < 30%" in out
    assert "features lenet300 from lenet5, 4 epochs" in out and ">= 92%" in out


def test_bench_distill_refuses_bad_arguments():
    with pytest.raises(ValueError, match="^methods must be a list of logits, features, relations, got 'features'"):
        bench_distill("digits", methods="features")
    with pytest.raises(ValueError, match="^student must be one of"):
        bench_distill("digits", student="vgg")
    with pytest.raises(ValueError, match="^epochs must be a non-negative integer, got -1"):
        bench_distill("digits", epochs=-1)


@pytest.mark.parametrize("argv, message", [(["--values", "0"], "--values must be >= 1"),
                                           (["--only", "kmeans,speed"], "--only must list some of kmeans,"),
                                           (["--only", ","], "--only must list some of kmeans,")])
def test_main_refuses_bad_options(capsys, argv, message):
    with pytest.raises(SystemExit):
        bench.main(argv)
    assert message in capsys.readouterr().err


def test_bench_deploy_measures_every_form_on_digits():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # on a busy 2-core machine two threads wait for each other on every small op
    try:
        results = bench_deploy("digits", sizes=(1, 4), repeats=1, resnet_size=32, lenet300_epochs=1, lenet5_epochs=1,
                               sensitivities=(1.0,), retrain_epochs=1, fc6=False, memory=False)
    finally:
        torch.set_num_threads(threads)
    assert results["torch_threads"] == 1
    forms = {(row["network"], row["form"]) for row in results["rows"]}
    for network in ("lenet300", "lenet5", "resnet18"):
        assert {(network, "float"), (network, "torch quantize_dynamic"), (network, "kdlab sparse"),
                (network, "kdlab int8")} <= forms
    assert ("lenet5", "kdlab channels+int8") in forms and ("lenet300", "shared (training form)") in forms
    assert all(row["ms"] > 0 and row["speedup"] > 0 for row in results["rows"])
    assert all(0.1 < row["accuracy"] <= 1 for row in results["rows"] if row["network"] != "resnet18")
    assert [(t["network"], t["batch"]) for t in results["targets"]] == [("lenet300", 1)]  # no batch 32 here
    text = bench.table({"deploy": results})
    assert "deploy lenet300 batch 1" in text and "median ms" in text and "torch threads:" in text
