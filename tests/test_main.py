import json
import os
import subprocess
import sys

import pytest

from kdlab.__main__ import parse_args
from kdlab.pipeline import EPOCHS, SENSITIVITIES, VIEWS


def test_distill_command_prints_accuracies_and_writes_the_report(tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "kdlab", "distill", "--dataset", "digits", "--teacher", "mlp100",
               "--student", "mlp30", "--teacher-epochs", "2", "--epochs", "2", "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"},
                            check=True)
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines[:3]] == ["teacher", "student_scratch", "student_distilled"]
    assert result.stderr == ""  # TQDM_DISABLE=1 silences the progress bars
    report = json.loads((out / "report.json").read_text())
    assert report["dataset"] == "digits"
    assert report["teacher"]["model"] == "mlp100" and report["student_scratch"]["model"] == "mlp30"
    for key in ("teacher", "student_scratch", "student_distilled"):
        assert 0 <= report[key]["accuracy"] <= 1
        assert float(lines[["teacher", "student_scratch", "student_distilled"].index(key)].split()[1]) == \
            pytest.approx(report[key]["accuracy"], abs=5e-5)
    assert report["student_distilled"]["float32_bytes"] == 4 * report["student_scratch"]["params"]
    assert [s["name"] for s in report["stages"]] == ["teacher", "student_scratch", "student_distilled",
                                                     "student_scratch_originals"]
    assert report["transfer"] == {"views": 9, "examples": 10 * 1437}
    assert sorted(p.name for p in out.iterdir()) == ["checkpoints", "report.json"]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["distilled.pt", "scratch.pt",
                                                                     "scratch_originals.pt", "teacher_1.pt",
                                                                     "teacher_2.pt", "teacher_3.pt"]
    assert report["teacher"]["count"] == 3 and len(report["teacher"]["members"]) == 3


def test_several_seeds_print_each_run_and_the_summary(tmp_path):
    out = tmp_path / "seeds"
    command = [sys.executable, "-m", "kdlab", "distill", "--dataset", "digits", "--teacher", "mlp100",
               "--student", "mlp30", "--teacher-epochs", "2", "--epochs", "2", "--seeds", "0,1", "--jobs", "2",
               "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"},
                            check=True)
    assert "seed 0: teacher" in result.stdout and "seed 1: student_distilled" in result.stdout
    assert "distilled − scratch (paired, 95 % interval)" in result.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["seeds"] == [0, 1] and summary["environment"]["threads"] == 1
    assert (out / "summary.md").read_text().strip() in result.stdout


def _distill(out, epochs, *extra):
    """Run `python -m kdlab distill` on digits with small models (a 3-epoch teacher); return its report."""
    command = [sys.executable, "-m", "kdlab", "distill", "--dataset", "digits", "--teacher", "mlp100",
               "--student", "mlp30", "--teacher-epochs", "3", "--epochs", str(epochs), "--out", str(out), *extra]
    subprocess.run(command, capture_output=True, env={**os.environ, "TQDM_DISABLE": "1"}, check=True)
    return json.loads((out / "report.json").read_text())


def test_resume_continues_an_interrupted_run_to_the_same_result(tmp_path):
    whole = _distill(tmp_path / "whole", 3)
    _distill(tmp_path / "cut", 2)  # as if the session died after the students' epoch 2
    resumed = _distill(tmp_path / "cut", 3, "--resume")
    for key in ("teacher", "student_scratch", "student_distilled", "student_scratch_originals"):
        assert resumed[key]["accuracy"] == whole[key]["accuracy"]
    (tmp_path / "cut" / "checkpoints" / "distilled.pt").write_bytes(b"damaged")
    with pytest.raises(subprocess.CalledProcessError) as failure:  # --resume really reads the checkpoints
        _distill(tmp_path / "cut", 3, "--resume")
    assert b"distilled.pt is damaged or not a kdlab checkpoint" in failure.value.stderr
    fresh = _distill(tmp_path / "cut", 3)  # without --resume the run starts afresh
    assert fresh["student_distilled"]["accuracy"] == whole["student_distilled"]["accuracy"]


@pytest.mark.parametrize("argv", [["distill", "--dataset", "imagenet"], ["distill", "--student", "vgg"], []])
def test_bad_command_lines_exit_with_usage(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(argv)
    assert exit_info.value.code == 2
    assert "usage" in capsys.readouterr().err


def test_pipeline_command_writes_the_report_table_plot_and_file(tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "kdlab", "pipeline", "--dataset", "digits", "--teacher", "mlp100",
               "--student", "mlp30", "--teacher-epochs", "2", "--epochs", "2", "--sensitivities", "0.5", "1.0",
               "--retrain-epochs", "1", "--fc-bits", "3", "--finetune-epochs", "1", "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"},
                            check=True)
    report = json.loads((out / "report.json").read_text())
    assert sorted(p.name for p in out.iterdir()) == ["checkpoints", "journey.png", "report.json", "report.md",
                                                     "student.kdz"]
    assert report["compressed"]["fc_bits"] == 3 and report["compressed"]["sensitivities"] == [0.5, 1.0]
    assert "| reloaded |" in result.stdout and "compressed" in result.stdout
    assert f"{report['compressed']['file_bytes']:,} bytes" in result.stdout
    assert report["reloaded_accuracy"] == report["compressed"]["accuracy"]


def test_pipeline_defaults_are_the_main_job():
    args = parse_args(["pipeline"])
    assert (args.dataset, args.teacher, args.student, args.out) == ("mnist5k", "lenet5", "lenet300", "runs/pipeline")
    assert args.sensitivities == list(SENSITIVITIES) and args.fc_bits == 4 and args.conv_bits == 8
    assert (args.views, args.epochs) == (VIEWS, EPOCHS) == (9, 15)
