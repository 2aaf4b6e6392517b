import math
import os

import numpy as np
import pytest

import kdlab
from kdlab.report import compression_report, journey_figure


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
        assert row["index_bits"] == 5 and row["position_bits"] == streams[row["layer"]]["position_bits"]
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


STAGES = [{"name": "teacher", "accuracy": 0.971, "bytes": 1_724_320, "seconds": 30.0},
          {"name": "student_scratch", "accuracy": 0.950, "bytes": 1_066_440, "seconds": 10.0},
          {"name": "student_distilled", "accuracy": 0.957, "bytes": 1_066_440, "seconds": 20.0},
          {"name": "pruned", "accuracy": 0.955, "bytes": 77_070, "seconds": 20.0},
          {"name": "shared", "accuracy": 0.954, "bytes": 18_010, "seconds": 1.0},
          {"name": "finetuned", "accuracy": 0.957, "bytes": 17_952, "seconds": 5.0},
          {"name": "reloaded", "accuracy": 0.957, "bytes": 17_952, "seconds": 0.1}]
# pruned, shared and finetuned within a few hundredths of a point and a few percent of size of each other
CROWDED = STAGES[:3] + [{"name": "pruned", "accuracy": 0.9555, "bytes": 20_070, "seconds": 1.0},
                        {"name": "shared", "accuracy": 0.9553, "bytes": 18_010, "seconds": 1.0},
                        {"name": "finetuned", "accuracy": 0.9557, "bytes": 17_952, "seconds": 1.0},
                        {"name": "reloaded", "accuracy": 0.9557, "bytes": 17_952, "seconds": 0.1}]


def _drawn(stages):
    """The journey figure of `stages`, drawn: (axes, the journey line or None, the reference lines by label,
    the point labels with their boxes on the canvas)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.text import Annotation

    figure = journey_figure(stages)
    renderer = FigureCanvasAgg(figure).get_renderer()
    figure.draw(renderer)
    axes = figure.axes[0]
    journey = [line for line in axes.lines if line.get_marker() == "o"]
    references = {line.get_label(): line for line in axes.lines if line.get_marker() != "o"}
    labels = [(text, text.get_window_extent(renderer)) for text in axes.texts if isinstance(text, Annotation)]
    return axes, (journey[0] if journey else None), references, labels


def test_journey_line_runs_through_the_compression_stages_only():
    _, journey, _, _ = _drawn(STAGES)
    assert list(journey.get_xdata()) == [s["bytes"] for s in STAGES[2:]]
    assert list(journey.get_ydata()) == pytest.approx([100 * s["accuracy"] for s in STAGES[2:]])
    assert 100 * STAGES[0]["accuracy"] not in journey.get_ydata()
    assert 100 * STAGES[1]["accuracy"] not in journey.get_ydata()


def test_scratch_and_teacher_are_horizontal_reference_lines():
    _, _, references, _ = _drawn(STAGES)
    for name, stage in (("student from scratch (float32)", STAGES[1]), ("teacher (float32)", STAGES[0])):
        (line,) = [line for label, line in references.items() if label.startswith(name)]
        assert list(line.get_xdata()) == [0, 1]  # axhline: across the whole axes
        assert list(line.get_ydata()) == pytest.approx([100 * stage["accuracy"]] * 2)
    (scratch,) = [line for label, line in references.items() if label.startswith("student from scratch")]
    assert scratch.get_linestyle() == "--"


@pytest.mark.parametrize("stages", [STAGES, CROWDED], ids=["realistic", "crowded"])
def test_point_labels_neither_overlap_nor_share_a_position(stages):
    _, _, _, labels = _drawn(stages)
    assert sorted(text.get_text() for text, _ in labels) == ["1", "2", "3", "4=5"]  # identical points: one label
    positions = [tuple(box.p0) for _, box in labels]
    assert len(set(positions)) == len(positions)
    for i, (_, box) in enumerate(labels):
        assert not any(box.overlaps(other) for _, other in labels[i + 1:])


def test_axes_units_log_size_and_an_accuracy_span_of_at_least_four_points():
    axes, _, _, _ = _drawn(STAGES)
    assert axes.get_xscale() == "log" and "bytes" in axes.get_xlabel() and "%" in axes.get_ylabel()
    assert axes.get_title()
    low, high = axes.get_ylim()
    assert high - low >= 4
    assert low < min(100 * s["accuracy"] for s in STAGES) and max(100 * s["accuracy"] for s in STAGES) < high
    assert high <= 100.5
    assert all(x > 0 for x in axes.get_xlim())


@pytest.mark.parametrize("names", [("teacher", "student_distilled", "pruned", "shared", "finetuned", "reloaded"),
                                   ("student_distilled",), ("teacher", "student_scratch"), ()],
                         ids=["no scratch", "one stage", "references only", "none"])
def test_missing_stages_still_draw(names):
    stages = [s for s in STAGES if s["name"] in names]
    axes, journey, references, labels = _drawn(stages)
    assert len(references) == sum(s["name"] in ("teacher", "student_scratch") for s in stages)
    assert (journey is None) == (not any(s["name"] not in ("teacher", "student_scratch") for s in stages))
    assert axes.get_ylim()[1] - axes.get_ylim()[0] >= 4
