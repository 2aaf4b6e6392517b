import math

import pytest
import torch

import kdlab
from kdlab.checkpoint import FORMAT, load_checkpoint


def _kd(digits, seed=0):
    return kdlab.DistillModel(digits[0], teacher="mlp100", student="mlp30", seed=seed, device="cpu")


def _equal(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def test_an_interrupted_and_resumed_distillation_ends_bit_identical(digits, tmp_path):
    whole = _kd(digits)
    whole.train_teacher(2, checkpoint=tmp_path / "whole_teacher.pt")
    expected = whole.train(4, checkpoint=tmp_path / "whole.pt")

    first = _kd(digits)
    first.train_teacher(2, checkpoint=tmp_path / "teacher.pt")
    first.train(2, checkpoint=tmp_path / "student.pt")  # interrupted after epoch 2
    resumed = _kd(digits, seed=7)  # a new process: other initial weights, a fresh loader and optimizer
    assert resumed.train_teacher(2, checkpoint=tmp_path / "teacher.pt") == whole.teacher_history  # nothing to run
    history = resumed.train(4, checkpoint=tmp_path / "student.pt")

    assert _equal(resumed.student, whole.student) and _equal(resumed.teacher, whole.teacher)
    assert history == expected and resumed.history == expected and [h["epoch"] for h in history] == [1, 2, 3, 4]


def test_epochs_count_the_whole_run(digits, tmp_path):
    kd = _kd(digits)
    batches = []

    def counting_loss(logits, inputs, labels):
        batches.append(1)
        return torch.nn.functional.cross_entropy(logits, labels)

    kdlab.fit(kd.student, kd.loader, 2, loss_fn=counting_loss, device="cpu", checkpoint=tmp_path / "c.pt")
    kdlab.fit(kd.student, kd.loader, 3, loss_fn=counting_loss, device="cpu", checkpoint=tmp_path / "c.pt")
    assert len(batches) == 3 * len(kd.loader)  # epochs 1-2, then epoch 3 only
    assert kdlab.fit(kd.student, kd.loader, 3, device="cpu", checkpoint=tmp_path / "c.pt")[-1]["epoch"] == 3
    with pytest.raises(ValueError, match="epochs must be at least the 3 epochs"):
        kdlab.fit(kd.student, kd.loader, 2, device="cpu", checkpoint=tmp_path / "c.pt")


def test_the_checkpoint_holds_everything_a_resume_needs(digits, tmp_path):
    kd = _kd(digits)
    kd.train(1, checkpoint=tmp_path / "s.pt")
    state = torch.load(tmp_path / "s.pt", weights_only=True)
    assert state["format"] == FORMAT and state["epoch"] == 1 and len(state["history"]) == 1
    assert set(state["modules"]) == {"model", "teacher"}
    assert {"optimizer", "scaler"} <= set(state) and set(state["rng"]) == {"python", "numpy", "torch", "cuda",
                                                                             "loader"}


def test_a_non_finite_loss_stops_with_the_epoch_batch_and_a_hint_and_keeps_the_last_checkpoint(digits, tmp_path):
    kd = _kd(digits)
    calls = []

    def exploding(logits, inputs, labels):
        calls.append(1)
        loss = torch.nn.functional.cross_entropy(logits, labels)
        return loss * math.inf if len(calls) == len(kd.loader) + 3 else loss

    with pytest.raises(FloatingPointError, match=r"epoch 2, batch 3: try a lower learning rate \(lr\) or "
                                                 r"temperature; checkpoint .* keeps epoch 1"):
        kdlab.fit(kd.student, kd.loader, 4, loss_fn=exploding, device="cpu", checkpoint=tmp_path / "c.pt")
    assert all(torch.isfinite(p).all() for p in kd.student.parameters())  # the step never ran
    epoch, _ = load_checkpoint(tmp_path / "c.pt", {"model": kd.student}, torch.optim.Adam(kd.student.parameters()),
                               torch.amp.GradScaler("cpu", enabled=False), None)
    assert epoch == 1


@pytest.mark.parametrize("damage, message", [
    (lambda path: path.write_bytes(path.read_bytes()[:1000]), "is damaged or not a kdlab checkpoint"),
    (lambda path: path.write_bytes(b"\x00" * 64), "is damaged or not a kdlab checkpoint"),
    (lambda path: path.write_text("hello"), "is damaged or not a kdlab checkpoint"),
    (lambda path: torch.save({"weights": torch.zeros(3)}, path), "not a kdlab checkpoint"),
    (lambda path: torch.save({"format": FORMAT, "epoch": 1}, path), "does not fit this run or is damaged"),
])
def test_a_damaged_checkpoint_raises_a_value_error_that_says_so(digits, tmp_path, damage, message):
    kd = _kd(digits)
    path = tmp_path / "c.pt"
    kdlab.fit(kd.student, kd.loader, 1, device="cpu", checkpoint=path)
    damage(path)
    with pytest.raises(ValueError, match=message):
        kdlab.fit(kd.student, kd.loader, 2, device="cpu", checkpoint=path)


def test_a_checkpoint_of_another_model_is_refused(digits, tmp_path):
    kd = _kd(digits)
    kd.train_teacher(1, checkpoint=tmp_path / "t.pt")
    with pytest.raises(ValueError, match="does not fit this run"):
        kdlab.fit(kd.student, kd.loader, 2, device="cpu", checkpoint=tmp_path / "t.pt")
    with pytest.raises(ValueError, match="does not fit this run"):
        kd.train(2, checkpoint=tmp_path / "t.pt")  # it holds no teacher


def test_a_crash_while_saving_keeps_the_previous_checkpoint(digits, tmp_path, monkeypatch):
    from kdlab import files

    kd = _kd(digits)
    path = tmp_path / "c.pt"
    kdlab.fit(kd.student, kd.loader, 1, device="cpu", checkpoint=path)
    before = path.read_bytes()

    def crash(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(files.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        kdlab.fit(kd.student, kd.loader, 2, device="cpu", checkpoint=path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["c.pt"]
