"""The losses of the distillation variants: FitNets hints, RKD distance and angle, multi-teacher soft targets.

FitNets: Romero et al. 2015, "FitNets: Hints for Thin Deep Nets". RKD: Park et al. 2019, "Relational Knowledge
Distillation". Multi-teacher soft targets: Hinton, Vinyals & Dean 2015, section 1 (the mean of an ensemble's
predictive distributions). Each function is a pure function of tensors; DistillModel (distill.py) wires them in.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

HINT_LOSSES = ("l2", "cosine")


def _check_tensor(name, value, min_dim=2):
    """Raise ValueError unless `value` is a tensor with a batch dimension and at least `min_dim` dimensions."""
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if value.ndim < min_dim:
        raise ValueError(f"{name} must have at least {min_dim} dimensions (batch, ...), got shape {tuple(value.shape)}")


def hint_regressor(student_shape, teacher_shape):
    """The FitNets regressor r (eq. 3) from student features to the teacher's, given their shapes per example.

    Two feature maps (C, H, W): a 1x1 Conv2d from the student's channels to the teacher's, then adaptive average
    pooling to the teacher's height and width when they differ (FitNets sizes a larger conv kernel instead).
    Otherwise: flatten, then a Linear layer from the student's features to the teacher's.
    """
    student_shape, teacher_shape = tuple(student_shape), tuple(teacher_shape)
    if len(student_shape) == 3 and len(teacher_shape) == 3:
        layers = [nn.Conv2d(student_shape[0], teacher_shape[0], kernel_size=1)]
        if student_shape[1:] != teacher_shape[1:]:
            layers.append(nn.AdaptiveAvgPool2d(teacher_shape[1:]))
        return nn.Sequential(*layers)
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(student_shape), math.prod(teacher_shape)))


def hint_loss(regressed, teacher_features, kind="l2"):
    """The FitNets hint loss (eq. 3) between the regressed student features r(v) and the teacher's hint u.

    kind="l2": eq. 3's squared distance ||u - r(v)||^2, averaged over the batch and the feature elements (the mean
    squared error; eq. 3's 1/2 and its sum over elements are constants, left to the weight beta).
    kind="cosine": 1 - cos(u, r(v)) per example, the features of each example flattened, averaged over the batch.
    """
    _check_tensor("regressed", regressed)
    _check_tensor("teacher_features", teacher_features)
    if kind not in HINT_LOSSES:
        raise ValueError(f"kind must be one of {', '.join(HINT_LOSSES)}, got {kind!r}")
    r, u = regressed.flatten(1), teacher_features.flatten(1)
    if r.shape != u.shape:
        raise ValueError(f"regressed and teacher_features must have the same size per example, got "
                         f"{tuple(regressed.shape)} and {tuple(teacher_features.shape)}")
    if kind == "l2":
        return F.mse_loss(r, u)
    return (1 - F.cosine_similarity(r, u, dim=1)).mean()


def _pairwise_distances(e, eps=1e-12):
    """The N x N Euclidean distances between the rows of `e`, from their Gram matrix (clamped: finite gradients)."""
    gram = e @ e.T
    squared = gram.diagonal().unsqueeze(0) + gram.diagonal().unsqueeze(1) - 2 * gram
    return squared.clamp_min(eps).sqrt()


def _check_pair(student, teacher):
    """Validate the (N, ...) student and teacher embeddings of RKD and flatten them to (N, D)."""
    _check_tensor("student", student)
    _check_tensor("teacher", teacher)
    if len(student) != len(teacher):
        raise ValueError(f"student and teacher must hold the same examples, got batches of {len(student)} and "
                         f"{len(teacher)}")
    return student.flatten(1), teacher.flatten(1)


def rkd_distance_loss(student, teacher):
    """RKD distance-wise loss (Park et al. eq. 4): Huber(psi_D(s_i, s_j), psi_D(t_i, t_j)) over pairs i != j.

    psi_D(t_i, t_j) = ||t_i - t_j||_2 / mu (eq. 3), mu the mean distance over the pairs i != j of the batch;
    Huber loss with delta = 1 (eq. 5). The paper sums over the pairs; this is the mean, so the loss does not grow
    with the batch size. Embeddings (N, ...) are flattened per example; student and teacher widths may differ.
    A batch of one example has no pairs: the loss is 0.
    """
    s, t = _check_pair(student, teacher)
    if len(s) < 2:
        return s.new_zeros(())
    off = ~torch.eye(len(s), dtype=torch.bool, device=s.device)
    psi_s, psi_t = _pairwise_distances(s)[off], _pairwise_distances(t)[off]
    return F.huber_loss(psi_s / psi_s.mean(), psi_t / psi_t.mean(), delta=1.0)


def _angles(e):
    """psi_A (Park et al. eq. 6): [j, i, k] = <e_ij, e_kj>, e_ij = (t_i - t_j) / ||t_i - t_j||, for all i, j, k."""
    unit = F.normalize(e.unsqueeze(0) - e.unsqueeze(1), p=2, dim=2)
    return torch.bmm(unit, unit.transpose(1, 2))


def rkd_angle_loss(student, teacher):
    """RKD angle-wise loss (Park et al. eq. 7): Huber(psi_A(s_i, s_j, s_k), psi_A(t_i, t_j, t_k)) over triplets.

    psi_A = cos of the angle at t_j between t_i and t_k (eq. 6); Huber loss with delta = 1 (eq. 5). The triplets
    are those of distinct examples i, j, k; the paper sums over them, this is the mean. Embeddings (N, ...) are
    flattened per example; student and teacher widths may differ. A batch of under 3 examples has no triplets: 0.
    """
    s, t = _check_pair(student, teacher)
    n = len(s)
    if n < 3:
        return s.new_zeros(())
    eye = torch.eye(n, dtype=torch.bool, device=s.device)
    distinct = ~(eye.unsqueeze(2) | eye.unsqueeze(1) | eye.unsqueeze(0))  # [j, i, k]: i != j, k != j, i != k
    huber = F.huber_loss(_angles(s), _angles(t), delta=1.0, reduction="none")
    return (huber * distinct).sum() / distinct.sum()  # a weighted sum: faster than indexing the N^3 triplets


def average_soft_targets(teacher_logits, temperature=1.0):
    """The mean of the teachers' softened probabilities: p = (1/K) sum_k softmax(z_k / T) (Hinton et al. eq. 1).

    `teacher_logits` is a non-empty sequence of (N, classes) tensors, one per teacher. Probabilities are
    averaged, not logits: the arithmetic mean of the ensemble's predictive distributions (Hinton et al. section 1).
    """
    if isinstance(teacher_logits, torch.Tensor) or not hasattr(teacher_logits, "__len__") or not len(teacher_logits):
        raise ValueError(f"teacher_logits must be a non-empty list of tensors, one per teacher, got "
                         f"{type(teacher_logits).__name__}")
    for i, logits in enumerate(teacher_logits):
        if not isinstance(logits, torch.Tensor):
            raise ValueError(f"teacher_logits[{i}] must be a torch.Tensor, got {type(logits).__name__}")
        if logits.shape != teacher_logits[0].shape:
            raise ValueError(f"teacher_logits must all have the same shape, got {tuple(teacher_logits[0].shape)} "
                             f"and {tuple(logits.shape)}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return torch.stack([F.softmax(z / temperature, dim=-1) for z in teacher_logits]).mean(0)


def multi_teacher_loss(student_logits, teacher_logits, labels, temperature=5.0, alpha=0.9):
    """alpha * T^2 * KL(p || softmax(s/T)) + (1 - alpha) * CE(s, labels), p the teachers' mean soft targets.

    p = average_soft_targets(teacher_logits, T). The KL takes p as a probability target (not log-target: the log
    of a mixture is not a mixture of logs), summed over classes and divided by the batch size ("batchmean");
    T^2 as in distillation_loss (Hinton et al. eqs. 2-4). With one teacher it equals distillation_loss.
    """
    p = average_soft_targets(teacher_logits, temperature)
    for name, value in (("student_logits", student_logits), ("labels", labels)):
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if student_logits.shape != p.shape:
        raise ValueError(f"student_logits and teacher_logits must have the same shape, got "
                         f"{tuple(student_logits.shape)} and {tuple(p.shape)}")
    if labels.shape != student_logits.shape[:1]:
        raise ValueError(f"labels must have shape ({len(student_logits)},), got {tuple(labels.shape)}")
    soft = F.kl_div(F.log_softmax(student_logits / temperature, dim=-1), p, reduction="batchmean")
    hard = F.cross_entropy(student_logits, labels)
    return alpha * temperature**2 * soft + (1 - alpha) * hard


class Ensemble(nn.Module):
    """Several models as one: the log of the mean of their probabilities (Hinton et al. section 1)."""

    def __init__(self, models):
        super().__init__()
        if not isinstance(models, (list, tuple, nn.ModuleList)) or not models or \
                not all(isinstance(m, nn.Module) for m in models):
            raise ValueError(f"models must be a non-empty list of nn.Module, got {models!r:.80}")
        self.members = nn.ModuleList(models)

    def forward(self, x):
        """log((1/K) sum_k softmax(z_k)): log-probabilities, usable wherever logits are."""
        return average_soft_targets([member(x) for member in self.members]).log()
