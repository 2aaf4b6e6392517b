import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import kdlab


def _logits(seed=0, batch=6, classes=10):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, classes, generator=g) * 3, torch.randn(batch, classes, generator=g) * 3


def test_loss_against_a_hand_computation():
    s = np.array([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    t = np.array([[2.0, 1.0, 0.0], [1.0, 1.0, 4.0]])
    y = np.array([1, 2])
    T, alpha = 2.0, 0.7
    softmax = lambda z: np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    p, q = softmax(t / T), softmax(s / T)
    kl = (p * np.log(p / q)).sum() / len(s)
    ce = -np.log(softmax(s)[np.arange(2), y]).mean()
    expected = alpha * T**2 * kl + (1 - alpha) * ce
    got = kdlab.distillation_loss(torch.tensor(s), torch.tensor(t), torch.tensor(y), T, alpha)
    assert got.item() == pytest.approx(expected, rel=1e-12)


def test_loss_matches_torch_kldivloss_batchmean_times_t_squared():
    s, t = _logits()
    y = torch.arange(6) % 10
    T = 4.0
    reference = nn.KLDivLoss(reduction="batchmean")(F.log_softmax(s / T, 1), F.softmax(t / T, 1)) * T**2
    assert kdlab.distillation_loss(s, t, y, T, alpha=1.0).item() == pytest.approx(reference.item(), rel=1e-6)


def test_alpha_zero_is_cross_entropy_and_alpha_one_is_the_soft_term_only():
    s, t = _logits(1)
    y = torch.tensor([3, 1, 4, 1, 5, 9])
    assert kdlab.distillation_loss(s, t, y, 3.0, alpha=0.0).item() == pytest.approx(F.cross_entropy(s, y).item())
    assert kdlab.distillation_loss(s, s, y, 3.0, alpha=1.0).item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("T", [1.0, 4.0, 32.0])
def test_soft_gradient_is_hinton_eq_2_and_t_squared_restores_its_scale(T):
    s, t = _logits(2)
    s.requires_grad_(True)
    y = torch.zeros(6, dtype=torch.long)
    (grad_scaled,) = torch.autograd.grad(kdlab.distillation_loss(s, t, y, T, alpha=1.0), s)
    grad = grad_scaled / T**2  # the gradient of the soft term without the T^2 factor
    # Hinton eq. 2, averaged over the batch: dC/dz_i = (q_i - p_i) / T
    q, p = torch.softmax(s.detach() / T, 1), torch.softmax(t / T, 1)
    assert torch.allclose(grad, (q - p) / T / len(s), atol=1e-7)
    if T >= 32:  # high-T limit: dC/dz_i ~ (z_i - v_i) / (N T^2) for zero-mean logits, N classes
        zs, zt = s.detach() - s.detach().mean(1, keepdim=True), t - t.mean(1, keepdim=True)
        high_t = (zs - zt) / (10 * T**2) / len(s)
        assert (grad - high_t).norm() / high_t.norm() < 0.1


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"temperature": 0}, "temperature must be > 0"),
        ({"temperature": -1}, "temperature must be > 0"),
        ({"alpha": 1.5}, r"alpha must be in \[0, 1\]"),
        ({"alpha": -0.1}, r"alpha must be in \[0, 1\]"),
    ],
)
def test_loss_rejects_bad_arguments(kwargs, message):
    s, t = _logits()
    with pytest.raises(ValueError, match=message):
        kdlab.distillation_loss(s, t, torch.zeros(6, dtype=torch.long), **kwargs)


def test_loss_rejects_mismatched_shapes():
    s, t = _logits()
    with pytest.raises(ValueError, match="same shape"):
        kdlab.distillation_loss(s, t[:, :5], torch.zeros(6, dtype=torch.long))
    with pytest.raises(ValueError, match="labels must have shape"):
        kdlab.distillation_loss(s, t, torch.zeros(5, dtype=torch.long))


def test_soft_targets_are_softmax_at_temperature():
    z = torch.tensor([[1.0, 2.0, 3.0]])
    assert torch.allclose(kdlab.soft_targets(z, 2.0), torch.softmax(z / 2, 1))
    assert torch.allclose(kdlab.soft_targets(z, 1e6), torch.full((1, 3), 1 / 3))


@pytest.fixture(scope="module")
def small(digits):
    train, test = digits
    return train.images[:256], train.targets[:256], test


def test_defaults_follow_the_seed(small):
    from torchvision.models import ResNet

    x, y, _ = small
    d = kdlab.DistillModel(x, y)
    assert (d.temperature, d.lr, d.momentum, d.optimizer, d.alpha) == (5, 0.001, 0.9, "adam", 0.9)
    assert isinstance(d.teacher, ResNet) and isinstance(d.student, ResNet)
    assert kdlab.count_parameters(d.student) < kdlab.count_parameters(d.teacher)
    assert d.teacher.conv1.in_channels == 1 and d.teacher.fc.out_features == 10
    assert isinstance(d.student_optimizer, torch.optim.Adam)


def test_sgd_optimizer_uses_momentum(small):
    x, y, _ = small
    d = kdlab.DistillModel(x, y, teacher="mlp30", student="mlp30", optimizer="sgd", lr=0.05, momentum=0.5)
    assert isinstance(d.student_optimizer, torch.optim.SGD)
    assert d.student_optimizer.param_groups[0]["momentum"] == 0.5
    assert d.student_optimizer.param_groups[0]["lr"] == 0.05
    history = d.train(2)
    assert len(history) == 2 and all(math.isfinite(h["loss"]) for h in history)


@pytest.mark.parametrize("kind", ["tensor", "array", "dataset", "loader"])
def test_source_data_kinds(small, kind):
    x, y, test = small
    train = kdlab.ArrayDataset(x, y)
    args = {
        "tensor": (x, y),
        "array": (x.numpy(), y.numpy()),
        "dataset": (train,),
        "loader": (kdlab.make_loader(train, 32, shuffle=True),),
    }[kind]
    d = kdlab.DistillModel(*args, teacher="mlp30", student="mlp30")
    assert d.in_shape == (1, 8, 8) and d.num_classes == 10
    d.train_teacher(1)
    d.train(1)
    scores = d.evaluate(test)
    assert set(scores) == {"teacher", "student"} and all(0 <= v <= 1 for v in scores.values())
    assert d.evaluate(test.images, test.targets) == scores


def test_train_keeps_the_teacher_frozen_and_trainable_afterwards(small):
    x, y, _ = small
    d = kdlab.DistillModel(x, y, teacher="mlp30", student="mlp30")
    d.train_teacher(1)
    before = [p.clone() for p in d.teacher.parameters()]
    d.train(1)
    assert all(torch.equal(a, b) for a, b in zip(before, d.teacher.parameters()))
    assert all(p.requires_grad for p in d.teacher.parameters())


def test_save_and_load_student(small, tmp_path):
    x, y, test = small
    d = kdlab.DistillModel(x, y, teacher="mlp30", student="mlp100")
    d.train(1)
    path = d.save_student(tmp_path / "student.pt")
    saved = {k: v.clone() for k, v in d.student.state_dict().items()}
    other = kdlab.DistillModel(x, y, teacher="mlp30", student="mlp100", seed=1)
    other.load_student(path)
    assert all(torch.equal(saved[k], v) for k, v in other.student.state_dict().items())
    assert [p.name for p in tmp_path.iterdir()] == ["student.pt"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"hard_labels": torch.zeros(5, dtype=torch.long)}, "source_data and hard_labels must have the same length"),
        ({"hard_labels": None}, "hard_labels are required"),
        ({"teacher": nn.Sequential(nn.Flatten(), nn.Linear(64, 3))}, "teacher must output 10 class scores"),
        ({"student": nn.Sequential(nn.Flatten(), nn.Linear(64, 12))}, "student must output 10 class scores"),
        ({"student": "vgg"}, "student must be one of"),
        ({"student": 3}, "student must be an nn.Module"),
        ({"optimizer": "rmsprop"}, "optimizer must be one of adam, sgd"),
        ({"temperature": 0}, "temperature must be > 0"),
        ({"alpha": 2}, r"alpha must be in \[0, 1\]"),
        ({"batch_size": 0}, "batch_size must be an int >= 1"),
    ],
)
def test_distill_model_errors(small, kwargs, message):
    x, y, _ = small
    arguments = {"hard_labels": y, "teacher": "mlp30", "student": "mlp30", **kwargs}
    with pytest.raises(ValueError, match=message):
        kdlab.DistillModel(x, **arguments)


def test_labels_with_a_dataset_are_refused(small):
    x, y, test = small
    with pytest.raises(ValueError, match="hard_labels must be None"):
        kdlab.DistillModel(test, y, teacher="mlp30", student="mlp30")


def test_alpha_zero_trains_on_the_hard_labels_without_running_the_teacher(digits):
    train, _ = digits
    kd = kdlab.DistillModel(train, teacher="mlp30", student="mlp30", alpha=0.0, device="cpu")
    calls = []
    kd.teacher.register_forward_hook(lambda *args: calls.append(1))
    logits, labels = torch.randn(4, 10), torch.tensor([0, 3, 9, 3])
    assert torch.equal(kd.distillation_loss(logits, train.images[:4], labels), F.cross_entropy(logits, labels))
    kd.train(1)
    assert calls == [] and len(kd.history) == 1
