import copy
import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import kdlab
from kdlab.distill import DistillModel
from kdlab.variants import (Ensemble, average_soft_targets, hint_loss, hint_regressor, multi_teacher_loss,
                            rkd_angle_loss, rkd_distance_loss)


def _randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _huber(x, y):
    """Park et al. eq. 5, delta = 1."""
    d = abs(x - y)
    return 0.5 * d**2 if d <= 1 else d - 0.5


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _equal(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


# The losses against the formulas, computed by hand in NumPy


def test_hint_loss_l2_is_the_mean_squared_distance_of_fitnets_eq_3():
    r, u = _randn(4, 3, 2, 2), _randn(4, 12, seed=1)
    expected = ((r.numpy().reshape(4, -1) - u.numpy()) ** 2).mean()
    assert hint_loss(r, u, "l2").item() == pytest.approx(expected, rel=1e-12)


def test_hint_loss_cosine_is_one_minus_the_cosine_per_example():
    r, u = _randn(5, 7).numpy(), _randn(5, 7, seed=1).numpy()
    expected = np.mean([1 - a @ b / np.linalg.norm(a) / np.linalg.norm(b) for a, b in zip(r, u)])
    assert hint_loss(torch.tensor(r), torch.tensor(u), "cosine").item() == pytest.approx(expected, rel=1e-12)
    assert hint_loss(torch.tensor(r), torch.tensor(3 * r), "cosine").item() == pytest.approx(0, abs=1e-12)


@pytest.mark.parametrize("student, teacher, kinds", [
    ((30,), (100,), [nn.Flatten, nn.Linear]),
    ((20, 8, 8), (200,), [nn.Flatten, nn.Linear]),
    ((20, 4, 4), (50, 4, 4), [nn.Conv2d]),
    ((20, 8, 8), (50, 4, 4), [nn.Conv2d, nn.AdaptiveAvgPool2d]),
])
def test_hint_regressor_maps_student_features_to_the_teachers_shape(student, teacher, kinds):
    regressor = hint_regressor(student, teacher)
    assert [type(m) for m in regressor] == kinds
    out = regressor(torch.randn(3, *student))
    assert out.flatten(1).shape == (3, math.prod(teacher))
    if len(teacher) == 3:
        assert out.shape == (3, *teacher) and regressor[0].kernel_size == (1, 1)


def test_gradients_of_the_hint_loss_reach_the_regressor():
    regressor = hint_regressor((6,), (4,))
    loss = hint_loss(regressor(torch.randn(8, 6)), torch.randn(8, 4))
    grads = torch.autograd.grad(loss, list(regressor.parameters()))
    assert all(torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads)


def _rkd_inputs():
    s, t = _randn(6, 3), _randn(6, 5, seed=1)
    s[0] *= 8  # an outlier: some differences exceed 1 and take Huber's linear branch
    return s, t


def test_rkd_distance_loss_against_park_et_al_eq_3_to_5():
    s, t = (x.numpy() for x in _rkd_inputs())
    pairs = [(i, j) for i in range(6) for j in range(6) if i != j]
    psi_s = np.array([np.linalg.norm(s[i] - s[j]) for i, j in pairs])
    psi_t = np.array([np.linalg.norm(t[i] - t[j]) for i, j in pairs])
    terms = [_huber(a, b) for a, b in zip(psi_s / psi_s.mean(), psi_t / psi_t.mean())]
    assert max(abs(psi_s / psi_s.mean() - psi_t / psi_t.mean())) > 1
    assert rkd_distance_loss(*_rkd_inputs()).item() == pytest.approx(np.mean(terms), rel=1e-12)


def test_rkd_angle_loss_against_park_et_al_eq_6_and_7():
    s, t = (x.numpy() for x in _rkd_inputs())

    def cos(e, i, j, k):
        a, b = e[i] - e[j], e[k] - e[j]
        return a @ b / np.linalg.norm(a) / np.linalg.norm(b)

    triplets = [(i, j, k) for i, j, k in itertools.product(range(6), repeat=3) if len({i, j, k}) == 3]
    expected = np.mean([_huber(cos(s, *ijk), cos(t, *ijk)) for ijk in triplets])
    assert rkd_angle_loss(*_rkd_inputs()).item() == pytest.approx(expected, rel=1e-12)


def test_rkd_losses_see_only_the_structure_and_keep_finite_gradients():
    t = _randn(7, 4)
    q, _ = torch.linalg.qr(_randn(4, 4, seed=2))
    moved = 3 * t @ q + 5  # scaled, rotated and shifted: same relative distances, same angles
    assert rkd_distance_loss(moved, t).item() == pytest.approx(0, abs=1e-12)
    assert rkd_angle_loss(moved, t).item() == pytest.approx(0, abs=1e-12)
    s = _randn(7, 3, seed=3)
    s.data[1] = s.data[0]  # two identical embeddings: a zero distance
    s.requires_grad_(True)
    grad, = torch.autograd.grad(rkd_distance_loss(s, t) + rkd_angle_loss(s, t), s)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    assert rkd_angle_loss(s[:2], t[:2]).item() == 0 and rkd_distance_loss(s[:1], t[:1]).item() == 0


def test_multi_teacher_loss_against_the_kl_to_the_mean_probabilities():
    s, t1, t2 = _randn(4, 5), 3 * _randn(4, 5, seed=1), 3 * _randn(4, 5, seed=2)
    y = torch.tensor([0, 3, 1, 4])
    T, alpha = 3.0, 0.8
    p = (_softmax(t1.numpy() / T) + _softmax(t2.numpy() / T)) / 2
    q = _softmax(s.numpy() / T)
    kl = (p * np.log(p / q)).sum() / 4
    ce = -np.log(_softmax(s.numpy())[np.arange(4), y.numpy()]).mean()
    assert torch.allclose(average_soft_targets([t1, t2], T), torch.tensor(p), atol=1e-15)
    got = multi_teacher_loss(s, [t1, t2], y, T, alpha).item()
    assert got == pytest.approx(alpha * T**2 * kl + (1 - alpha) * ce, rel=1e-12)
    logit_mean = kdlab.distillation_loss(s, (t1 + t2) / 2, y, T, alpha).item()
    assert abs(got - logit_mean) > 1e-3  # averaging logits would be another loss


def test_an_ensemble_gives_the_log_of_its_members_mean_probabilities():
    members = [nn.Linear(4, 3).double() for _ in range(3)]
    x = _randn(5, 4)
    expected = torch.stack([F.softmax(m(x), 1) for m in members]).mean(0).log()
    assert torch.allclose(Ensemble(members)(x), expected, atol=1e-12)
    assert torch.allclose(Ensemble(members[:1])(x), F.log_softmax(members[0](x), 1), atol=1e-12)
    assert len(list(Ensemble(members).parameters())) == 6


def test_multi_teacher_loss_with_identical_teachers_is_the_single_teacher_loss():
    s, t = _randn(6, 10), 3 * _randn(6, 10, seed=1)
    y = torch.arange(6)
    single = kdlab.distillation_loss(s, t, y, 4.0, 0.9).item()
    assert multi_teacher_loss(s, [t], y, 4.0, 0.9).item() == pytest.approx(single, rel=1e-12)
    assert multi_teacher_loss(s, [t, t.clone()], y, 4.0, 0.9).item() == pytest.approx(single, rel=1e-12)


# DistillModel(method=...)


@pytest.fixture(scope="module")
def trained_teacher(digits):
    kd = DistillModel(digits[0], teacher="mlp100", student="mlp30", device="cpu")
    kd.train_teacher(3)
    return kd.teacher


def _kd(digits, teacher, **kwargs):
    return DistillModel(digits[0], **{"teacher": copy.deepcopy(teacher), "student": "mlp30", "device": "cpu",
                                      **kwargs})


def test_default_layers_are_the_penultimate_embeddings(digits):
    kd = DistillModel(digits[0], teacher="lenet5", student="lenet300", method="features", device="cpu")
    assert kd.teacher_layers == ["6"] and kd.student_layer == "4"  # the ReLUs after fc500 and fc100
    assert isinstance(kd.regressors[0][1], nn.Linear) and kd.regressors[0][1].weight.shape == (500, 100)
    kd = DistillModel(digits[0], teacher="resnet10", student="mlp30", method="relations", device="cpu")
    assert kd.teacher_layers == ["avgpool"] and kd.student_layer == "2" and len(kd.regressors) == 0


def test_the_regressors_are_trained_with_the_student(digits, trained_teacher):
    kd = _kd(digits, trained_teacher, method="features")
    optimized = {id(p) for group in kd.student_optimizer.param_groups for p in group["params"]}
    assert {id(p) for p in kd.regressors.parameters()} <= optimized
    before = copy.deepcopy(kd.regressors)
    kd.train(1)
    assert all(not torch.equal(a, b) for a, b in zip(before.parameters(), kd.regressors.parameters()))


@pytest.mark.parametrize("method, hint, layers", [("features", "l2", None), ("features", "cosine", None),
                                                  ("relations", "l2", None), ("features", "l2", ("2", "0"))])
def test_the_methods_loss_is_the_kd_loss_plus_beta_times_its_term(digits, method, hint, layers):
    teacher = "lenet5" if layers else "mlp100"
    student = "lenet5" if layers else "mlp30"
    kd = DistillModel(digits[0], teacher=teacher, student=student, method=method, hint_loss=hint, layers=layers,
                      beta=0.5, device="cpu")
    x, y = next(iter(kd.loader))
    handles = kd._hooks()
    logits = kd.student(x)
    got = kd.distillation_loss(logits, x, y)
    for handle in handles:
        handle.remove()
    features = {}
    student_layer = dict(kd.student.named_modules())[kd.student_layer]
    teacher_layer = dict(kd.teacher.named_modules())[kd.teacher_layers[0]]
    student_layer.register_forward_hook(lambda m, a, out: features.update(s=out))
    teacher_layer.register_forward_hook(lambda m, a, out: features.update(t=out))
    with torch.no_grad():
        kd.student(x), kd.teacher(x)
    if method == "features":
        term = hint_loss(kd.regressors[0](features["s"]), features["t"], hint)
    else:
        term = 25 * rkd_distance_loss(features["s"], features["t"]) + 50 * rkd_angle_loss(features["s"], features["t"])
    expected = kdlab.distillation_loss(logits, kd.teacher(x), y, kd.temperature, kd.alpha) + 0.5 * term
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.parametrize("method", ["logits", "features", "relations"])
def test_each_method_lowers_its_loss(digits, trained_teacher, method):
    kd = _kd(digits, trained_teacher, method=method)
    history = kd.train(3)
    assert history[2]["loss"] < history[1]["loss"] < history[0]["loss"]
    assert kd.evaluate(digits[1])["student"] > 0.5


def test_beta_zero_gives_the_logits_run(digits, trained_teacher):
    logits = _kd(digits, trained_teacher).train(2)
    assert _kd(digits, trained_teacher, method="features", beta=0).train(2) == logits
    assert _kd(digits, trained_teacher, method="relations", beta=0.0).train(2) == logits


def test_a_one_teacher_list_is_the_single_teacher_run(digits, trained_teacher):
    single, listed = _kd(digits, trained_teacher), _kd(digits, [trained_teacher])
    assert single.train(2) == listed.train(2) and _equal(single.student, listed.student)


def test_two_identical_teachers_distil_as_one(digits, trained_teacher):
    single = _kd(digits, trained_teacher)
    double = DistillModel(digits[0], teacher=[copy.deepcopy(trained_teacher), copy.deepcopy(trained_teacher)],
                          student="mlp30", device="cpu")
    for a, b in zip(single.train(2), double.train(2)):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5) and a["train_accuracy"] == b["train_accuracy"]
    for a, b in zip(single.student.parameters(), double.student.parameters()):
        assert torch.allclose(a, b, atol=1e-5)
    scores = double.evaluate(digits[1])
    assert set(scores) == {"teacher", "teacher_1", "teacher_2", "student"}
    assert scores["teacher"] == scores["teacher_1"] == scores["teacher_2"] == single.evaluate(digits[1])["teacher"]


def test_train_teacher_trains_each_teacher(digits, tmp_path):
    kd = DistillModel(digits[0], teacher=["mlp30", "mlp100"], student="mlp30", device="cpu", method="features")
    before = copy.deepcopy(kd.teachers)
    history = kd.train_teacher(2, checkpoint=tmp_path / "teacher.pt")
    assert [(h["teacher"], h["epoch"]) for h in history] == [(1, 1), (1, 2), (2, 1), (2, 2)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["teacher_1.pt", "teacher_2.pt"]
    assert all(not _equal(a, b) for a, b in zip(before, kd.teachers))
    assert [r[1].out_features for r in kd.regressors] == [30, 100]
    kd.train(1, checkpoint=tmp_path / "student.pt")
    state = torch.load(tmp_path / "student.pt", weights_only=True)
    assert set(state["modules"]) == {"model", "teacher_1", "teacher_2", "regressors"}


def test_a_features_run_resumed_from_its_checkpoint_ends_bit_identical(digits, trained_teacher, tmp_path):
    whole = _kd(digits, trained_teacher, method="features")
    expected = whole.train(3, checkpoint=tmp_path / "whole.pt")
    first = _kd(digits, trained_teacher, method="features")
    first.train(1, checkpoint=tmp_path / "run.pt")  # interrupted after epoch 1
    resumed = _kd(digits, trained_teacher, method="features", seed=7)  # other student and regressor weights
    assert not _equal(resumed.regressors, whole.regressors)
    history = resumed.train(3, checkpoint=tmp_path / "run.pt")
    assert history == expected and [h["epoch"] for h in history] == [1, 2, 3]
    assert _equal(resumed.student, whole.student) and _equal(resumed.regressors, whole.regressors)
    assert set(torch.load(tmp_path / "run.pt", weights_only=True)["modules"]) == {"model", "teacher", "regressors"}


def test_finetune_uses_the_hard_labels_only(digits, trained_teacher):
    kd = _kd(digits, trained_teacher)
    kd.train(1)
    twin = copy.deepcopy(kd.student)
    order = kd.loader.generator.get_state()
    calls = []
    kd.teacher.register_forward_hook(lambda *args: calls.append(1))
    history = kd.finetune(2)
    kd.loader.generator.set_state(order)
    expected = kdlab.fit(twin, kd.loader, 2, kdlab.make_optimizer(twin.parameters(), "adam", 1e-4), device="cpu")
    assert calls == [] and history == expected and _equal(kd.student, twin)


def test_next_generation_makes_the_student_the_teacher_of_a_fresh_student(digits, trained_teacher):
    kd = _kd(digits, trained_teacher, method="features")
    history = kd.train(1)
    trained = copy.deepcopy(kd.student)
    kd.next_generation()
    assert kd.generation == 1 and kd.teacher_history == history and kd.history == [] and len(kd.teachers) == 1
    assert _equal(kd.teacher, trained) and kd.teacher is not kd.student
    assert type(kd.student) is type(trained) and not _equal(kd.student, trained)
    assert kd.teacher_layers == [kd.student_layer] and kd.regressors[0][1].weight.shape == (30, 30)
    kd.train(1)
    assert _equal(kd.teacher, trained) and len(kd.history) == 1


def _no_linear():
    return nn.Sequential(nn.Conv2d(1, 10, 8), nn.Flatten())


@pytest.mark.parametrize("kwargs, message", [
    ({"method": "fitnets"}, r"^method must be one of logits, features, relations, got 'fitnets'"),
    ({"hint_loss": "l1"}, r"^hint_loss must be one of l2, cosine, got 'l1'"),
    ({"beta": -1}, r"^beta must be a finite number >= 0, got -1"),
    ({"beta": math.nan}, r"^beta must be a finite number >= 0, got nan"),
    ({"beta": "1"}, r"^beta must be a finite number >= 0, got '1'"),
    ({"layers": ("2",)}, r"^layers must be None or a pair \(teacher_layer, student_layer\) of module names"),
    ({"rkd_weights": (25,)}, r"^rkd_weights must be a pair \(distance, angle\) of finite numbers >= 0"),
    ({"rkd_weights": (25, -50)}, r"^rkd_weights must be a pair \(distance, angle\) of finite numbers >= 0"),
    ({"teacher": []}, r"^teacher must be an nn.Module, a build_model name, None or a non-empty list of them"),
    ({"teacher": ["mlp30", "vgg"]}, r"^teacher\[1\] must be one of lenet300, lenet5"),
    ({"method": "features", "layers": ("fc9", "2")},
     r"^layers\[0\] must name a module of the teacher, one of 0, 1, 2, 3; got 'fc9'"),
    ({"method": "relations", "layers": ("2", "fc9")},
     r"^layers\[1\] must name a module of the student, one of 0, 1, 2, 3; got 'fc9'"),
    ({"method": "features", "student": _no_linear()}, r"^layers must be given: the student runs no module before a "
                                                      r"last Linear layer, so it has no default; its modules are 0, 1"),
])
def test_bad_variant_arguments_raise_value_errors_naming_them(digits, kwargs, message):
    with pytest.raises(ValueError, match=message):
        DistillModel(digits[0].images[:64], digits[0].targets[:64], **{"teacher": "mlp30", "student": "mlp30",
                                                                        "device": "cpu", **kwargs})


@pytest.mark.parametrize("call, message", [
    (lambda kd: kd.finetune(1, lr=0), r"^lr must be > 0, got 0"),
    (lambda kd: kd.finetune(-1), r"^epochs must be a non-negative integer, got -1"),
    (lambda kd: hint_loss(torch.ones(2, 3), torch.ones(2, 3), "l1"), r"^kind must be one of l2, cosine, got 'l1'"),
    (lambda kd: hint_loss(torch.ones(2, 3), torch.ones(2, 4)), r"^regressed and teacher_features must have the same"),
    (lambda kd: hint_loss(torch.ones(3), torch.ones(3)), r"^regressed must have at least 2 dimensions"),
    (lambda kd: rkd_distance_loss(torch.ones(4, 2), torch.ones(3, 2)), r"^student and teacher must hold the same"),
    (lambda kd: rkd_angle_loss(np.ones((4, 2)), torch.ones(4, 2)), r"^student must be a torch.Tensor, got ndarray"),
    (lambda kd: average_soft_targets([]), r"^teacher_logits must be a non-empty list of tensors"),
    (lambda kd: average_soft_targets(torch.ones(2, 3)), r"^teacher_logits must be a non-empty list of tensors"),
    (lambda kd: average_soft_targets([torch.ones(2, 3), torch.ones(2, 4)]), r"^teacher_logits must all have the"),
    (lambda kd: average_soft_targets([torch.ones(2, 3)], 0), r"^temperature must be > 0, got 0"),
    (lambda kd: multi_teacher_loss(torch.ones(2, 3), [torch.ones(2, 3)], torch.zeros(2).long(), alpha=2),
     r"^alpha must be in \[0, 1\], got 2"),
    (lambda kd: multi_teacher_loss(torch.ones(2, 4), [torch.ones(2, 3)], torch.zeros(2).long()),
     r"^student_logits and teacher_logits must have the same shape"),
])
def test_bad_arguments_of_finetune_and_the_losses_raise_value_errors(digits, call, message):
    kd = DistillModel(digits[0].images[:64], digits[0].targets[:64], teacher="mlp30", student="mlp30", device="cpu")
    with pytest.raises(ValueError, match=message):
        call(kd)


def test_the_loss_of_softmax_probabilities_matches_kldivloss():
    s, t = _randn(3, 4), _randn(3, 4, seed=1)
    y = torch.zeros(3, dtype=torch.long)
    reference = nn.KLDivLoss(reduction="batchmean")(F.log_softmax(s / 2, 1), F.softmax(t / 2, 1)) * 4
    assert multi_teacher_loss(s, [t], y, 2.0, 1.0).item() == pytest.approx(reference.item(), rel=1e-12)
