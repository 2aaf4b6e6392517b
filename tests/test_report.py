import math
import os

import numpy as np
import pytest

import kdlab
from kdlab.report import compression_report


@pytest.fixture(scope="module")
def shared_lenet300():
    kdlab.set_seed(0)
    model = kdlab.build_model("lenet300")
    kdlab.prune_by_std(model, 1.2)
    return kdlab.share_weights(model, 5)


def test_ratio_is_float32_parameter_bytes_over_the_file_on_disk(tmp_path, shared_lenet300):
    path = tmp_path / "m.kdz"
    kdlab.save_compressed(shared_lenet300, path)
    report = compression_report(path)
    assert isinstance(report, kdlab.CompressionReport)
    float32 = 4 * kdlab.count_parameters(kdlab.dequantize_model(shared_lenet300))
    assert report.file_bytes == os.path.getsize(path)
    assert report.float32_bytes == float32
    assert report.ratio == float32 / os.path.getsize(path)
    assert report.total["bytes"] == report.file_bytes
    assert sum(row["bytes"] for row in report.rows) < report.file_bytes


def test_rows_match_the_model_and_the_streams(tmp_path, shared_lenet300):
    path = tmp_path / "m.kdz"
    kdlab.save_compressed(shared_lenet300, path)
    report = compression_report(path)
    sparsity = {row["layer"]: row for row in kdlab.sparsity(kdlab.dequantize_model(shared_lenet300))}
    _, entries, _ = kdlab.read_compressed(path)
    streams = {e["name"].rpartition(".")[0]: e for e in entries if e["kind"] == "codebook"}
    assert [row["layer"] for row in report.rows] == ["1", "3", "5"]
    for row in report.rows:
        assert row["weights"] == sparsity[row["layer"]]["weights"]
        assert row["kept"] == pytest.approx(sparsity[row["layer"]]["kept"])
        assert row["index_bits"] == 5 and row["position_bits"] == 5
        _, positions, indices = streams[row["layer"]]["data"]
        stored = len(kdlab.huffman_decode(indices))
        assert row["index_bits_huffman"] == 8 * len(indices) / stored
        assert row["position_bits_huffman"] == 8 * len(positions) / stored
        assert row["bytes"] == sum(streams[row["layer"]]["blobs"]) + 4 * math.prod(
            [e for e in entries if e["name"] == f"{row['layer']}.bias"][0]["shape"])


def test_a_model_is_reported_through_a_real_file(tmp_path, shared_lenet300):
    kdlab.save_compressed(shared_lenet300, tmp_path / "m.kdz")
    assert compression_report(shared_lenet300).to_dict() == compression_report(tmp_path / "m.kdz").to_dict()


def test_float_layers_count_32_bits_and_no_huffman():
    kdlab.set_seed(0)
    report = compression_report(kdlab.build_model("mlp30", in_shape=(1, 8, 8)))
    assert all(row["index_bits"] == 32 and row["index_bits_huffman"] is None for row in report.rows)
    assert report.ratio < 1


def test_the_table_has_the_papers_columns_and_totals(shared_lenet300):
    text = str(compression_report(shared_lenet300))
    lines = text.splitlines()
    for title in ("#weights", "weight bits (P+Q)", "weight bits (P+Q+H)", "index bits (P+Q+H)", "compress rate"):
        assert title in lines[0]
    assert lines[-2].startswith("total") and "ratio" in lines[-1]


def test_bad_argument():
    with pytest.raises(ValueError, match="model_or_path must be"):
        compression_report(np.zeros(3))
    with pytest.raises(kdlab.CompressedFormatError):
        compression_report(__file__)
