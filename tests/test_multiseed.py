"""Several seeds: one run per seed (in parallel or not, the same figures), the summary and its table."""
import json

import pytest

from kdlab.multiseed import run_seeds, summarize, summary_table
from kdlab.seeds import paired_interval

TINY = dict(dataset="digits", teacher="mlp100", student="mlp30", teacher_epochs=2, epochs=2, device="cpu")


def test_two_seeds_in_two_processes_equal_two_in_one(tmp_path):
    parallel, summary = run_seeds("distill", "0-1", tmp_path / "parallel", jobs=2, threads=1, **TINY)
    serial, _ = run_seeds("distill", [0, 1], tmp_path / "serial", jobs=1, threads=1, **TINY)
    for a, b in zip(parallel, serial):
        for key in ("teacher", "student_scratch", "student_distilled"):
            assert a[key]["accuracy"] == b[key]["accuracy"]
    assert [r["seed"] for r in parallel] == [0, 1]
    assert parallel[0]["student_scratch"]["accuracy"] != parallel[1]["student_scratch"]["accuracy"] or \
        parallel[0]["teacher"]["accuracy"] != parallel[1]["teacher"]["accuracy"], "the seeds give different runs"
    assert sorted(p.name for p in (tmp_path / "parallel").iterdir()) == ["seed_0", "seed_1", "summary.json",
                                                                         "summary.md"]
    saved = json.loads((tmp_path / "parallel" / "summary.json").read_text())
    assert saved["seeds"] == [0, 1] and saved["environment"]["threads"] == 1
    assert json.loads((tmp_path / "parallel" / "seed_1" / "report.json").read_text())["seed"] == 1
    assert summary["distilled_minus_scratch"] == pytest.approx(paired_interval(
        [r["student_distilled"]["accuracy"] for r in parallel], [r["student_scratch"]["accuracy"] for r in parallel]))


def test_one_seed_writes_into_out_itself(tmp_path):
    reports, summary = run_seeds("distill", "3", tmp_path, **TINY)
    assert reports[0]["seed"] == 3 and summary["seeds"] == [3]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoints", "report.json"]
    assert reports[0]["environment"]["torch"] and reports[0]["jitter"] == "teacher"


def _report(seed, teacher, scratch, distilled, compressed=None):
    report = {"seed": seed, "device": "cpu", "teacher": {"accuracy": teacher},
              "student_scratch": {"accuracy": scratch}, "student_distilled": {"accuracy": distilled}}
    if compressed is not None:
        report["compressed"] = {"accuracy": compressed, "file_bytes": 18000 + seed, "ratio": 59.0 - seed}
        report["reloaded_accuracy"] = compressed
    return report


def test_summary_figures_and_table():
    reports = [_report(0, 0.98, 0.96, 0.97, 0.968), _report(1, 0.98, 0.95, 0.97, 0.97)]
    summary = summarize(reports, threads=1)
    assert summary["student_distilled"]["mean"] == pytest.approx(0.97)
    assert summary["distilled_minus_scratch"]["mean"] == pytest.approx(0.015)
    assert summary["gap_closed"] == pytest.approx(0.015 / 0.025)
    assert summary["compressed"]["min_ratio"] == 58.0 and summary["compressed"]["reloaded_exact"]
    assert summary["compressed"]["minus_distilled"]["mean"] == pytest.approx(-0.001)
    table = summary_table(summary)
    assert "| distilled student | 97.00 ± 0.00 % |" in table and "+1.50 points" in table
    assert "least 58.0x" in table and "torch " in table


@pytest.mark.parametrize("args, message", [
    (("train", "0"), "job must be one of distill, pipeline"),
    (("distill", "x"), "seeds must look like"),
    (("distill", "0", "OUT", 0), "jobs must be an int >= 1"),
    (("distill", "0", "OUT", 1, 0), "threads must be an int >= 1"),
])
def test_bad_arguments(args, message, tmp_path):
    args = [tmp_path if a == "OUT" else a for a in args]
    if len(args) == 2:
        args.append(tmp_path)
    with pytest.raises(ValueError, match=message):
        run_seeds(*args)
    with pytest.raises(ValueError, match="reports must hold"):
        summarize([])


def test_the_baseline_on_the_training_images_alone_is_summarized_beside_the_same_set_one():
    reports = [_report(0, 0.98, 0.95, 0.97, 0.968), _report(1, 0.98, 0.94, 0.97, 0.97)]
    for report, originals in zip(reports, (0.955, 0.96)):
        report["student_scratch_originals"] = {"accuracy": originals}
    summary = summarize(reports)
    assert summary["student_scratch_originals"]["mean"] == pytest.approx(0.9575)
    assert summary["distilled_minus_scratch_originals"]["mean"] == pytest.approx(0.0125)
    assert summary["gap_closed_originals"] == pytest.approx(0.0125 / 0.0225)
    table = summary_table(summary)
    assert "| student from scratch (same transfer set) | 94.50 ± 0.71 % |" in table
    assert "| share of the teacher − scratch gap closed, scratch on the training images alone | 56% |" in table
