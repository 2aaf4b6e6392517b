import json

import pytest
import torch

import kdlab
from kdlab.pipeline import run_distillation, run_pipeline, write_report

KEYS = {"dataset", "teacher", "student_scratch", "student_distilled", "compressed", "reloaded_accuracy", "stages",
        "seconds", "device"}


@pytest.fixture(scope="module")
def main_job(tmp_path_factory):
    """The main job (`make run`) at its defaults but for fewer epochs: 3 lenet5 teachers, lenet300 student, mnist5k."""
    out = tmp_path_factory.mktemp("pipeline")
    report, reloaded = run_pipeline(out=out, teacher_epochs=10, epochs=4)
    return report, reloaded, out


def test_the_main_job_distils_compresses_and_reloads(main_job):
    report, reloaded, out = main_job
    assert KEYS <= set(report)
    assert report["teacher"]["accuracy"] > 0.96  # trained on jittered views
    assert report["teacher"]["count"] == 3 and len(report["teacher"]["members"]) == 3
    assert report["teacher"]["params"] == 3 * kdlab.count_parameters(kdlab.build_model("lenet5"))
    assert report["teacher"]["accuracy"] > report["student_scratch"]["accuracy"] + 0.01
    # one seed cannot show the distillation gain (kdlab.run_seeds measures it); it must not break the student
    assert report["student_distilled"]["accuracy"] > report["student_scratch"]["accuracy"] - 0.01
    assert report["jitter"] == "teacher" and report["environment"]["torch"] == torch.__version__
    assert report["lr"] == {"students": 1e-3, "retrain": 2e-3, "finetune": 1e-4}
    compressed = report["compressed"]
    assert compressed["file_bytes"] == (out / "student.kdz").stat().st_size
    assert compressed["ratio"] == report["student_distilled"]["float32_bytes"] / compressed["file_bytes"]
    assert compressed["ratio"] > 40
    assert compressed["accuracy"] >= report["student_distilled"]["accuracy"] - 0.03  # the cost over seeds: README
    assert report["reloaded_accuracy"] == compressed["accuracy"]
    assert 0 < compressed["nonzero_fraction"] < 0.1
    assert 0 < compressed["weight_bits"] <= 4 and 0 < compressed["index_bits"] < 8
    assert kdlab.sparsity(reloaded)[-1]["kept"] == compressed["nonzero_fraction"]


def test_the_stages_and_the_files_written(main_job):
    report, _, out = main_job
    names = [s["name"] for s in report["stages"]]
    assert names == ["teacher", "student_scratch", "student_distilled", "student_scratch_originals", "pruned", "shared",
                     "finetuned", "reloaded"]
    sizes = {s["name"]: s["bytes"] for s in report["stages"]}
    assert sizes["student_distilled"] > 3 * sizes["pruned"] > 3 * sizes["shared"]
    assert sizes["finetuned"] == sizes["reloaded"] == report["compressed"]["file_bytes"]
    assert sorted(p.name for p in out.iterdir()) == ["checkpoints", "journey.png", "report.json", "report.md",
                                                     "student.kdz"]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["distilled.pt", "scratch.pt",
                                                                     "scratch_originals.pt", "teacher_1.pt",
                                                                     "teacher_2.pt", "teacher_3.pt"]
    assert json.loads((out / "report.json").read_text()) == report
    text = (out / "report.md").read_text()
    assert "| finetuned |" in text and "compress rate" in text
    assert (out / "journey.png").read_bytes()[:4] == b"\x89PNG"


def test_the_teacher_stage_is_the_ensemble_of_the_teachers(tmp_path):
    report, kd, stages = run_distillation("digits", "mlp100", "mlp30", teacher_epochs=2, epochs=1, teachers=2,
                                          checkpoints=tmp_path)
    first = [next(t.parameters()) for t in kd.teachers]
    assert len(first) == 2 and not torch.equal(*first)  # each teacher from its own initial weights
    ensemble = kdlab.Ensemble(kd.teachers)
    assert report["teacher"]["accuracy"] == kdlab.evaluate(ensemble, stages.test_loader, "cpu")
    assert report["teacher"]["members"] == [kdlab.evaluate(t, stages.test_loader, "cpu") for t in kd.teachers]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["distilled.pt", "scratch.pt", "scratch_originals.pt",
                                                          "teacher_1.pt", "teacher_2.pt"]
    run_distillation("digits", "mlp100", "mlp30", teacher_epochs=1, epochs=1, teachers=1, checkpoints=tmp_path,
                     views=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["distilled.pt", "scratch.pt", "teacher.pt"]  # no stale


def test_run_distillation_alone(tmp_path):
    report, kd, stages = run_distillation("digits", "mlp100", "mlp30", teacher_epochs=2, epochs=2, teachers=1, views=0)
    assert [s["name"] for s in report["stages"]] == ["teacher", "student_scratch", "student_distilled"]
    assert report["stages"] is stages.rows and isinstance(kd.student, torch.nn.Module)
    assert report["teacher"]["count"] == 1 and report["teacher"]["members"] == [report["teacher"]["accuracy"]]
    path = write_report(report, tmp_path / "out")
    assert json.loads(path.read_text()) == report
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["report.json"]


def test_the_students_learn_from_a_transfer_set_of_mixup_views_and_scratch_is_measured_twice():
    report, kd, stages = run_distillation("digits", "mlp100", "mlp30", teacher_epochs=1, epochs=2, teachers=1,
                                          views=2)
    train, _ = kdlab.load_dataset("digits")
    assert len(kd.loader.dataset) == 3 * len(train) == report["transfer"]["examples"]
    assert report["transfer"]["views"] == 2
    names = [s["name"] for s in report["stages"]]
    assert names == ["teacher", "student_scratch", "student_distilled", "student_scratch_originals"]
    # the same number of steps: 2 epochs over 3x the images are 6 over the images alone
    assert report["student_scratch_originals"]["epochs"] == 6
    assert report["student_scratch_originals"]["accuracy"] == report["stages"][-1]["accuracy"]
