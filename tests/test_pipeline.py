import json

from kdlab.pipeline import run_distillation, write_report


def test_distillation_beats_the_scratch_student_on_mnist5k(tmp_path):
    report, kd = run_distillation()  # the main job's defaults: lenet5 teacher, lenet300 student
    assert report["teacher"]["accuracy"] > 0.96
    assert report["student_distilled"]["accuracy"] > report["student_scratch"]["accuracy"]
    assert report["teacher"]["accuracy"] > report["student_distilled"]["accuracy"]
    assert report["student_scratch"]["params"] == 266_610 and report["teacher"]["params"] == 431_080
    path = write_report(report, tmp_path / "out")
    assert json.loads(path.read_text()) == report
