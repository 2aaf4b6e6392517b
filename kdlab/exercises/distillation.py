"""Chapter 1's exercise: the distillation loss, checked against kdlab.distillation_loss and the three classic bugs."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..distill import distillation_loss
from .checking import ExerciseError, attempt, compare, passed

__all__ = ["check_distillation_loss"]


def _inputs(seed=0, batch=8, classes=10):
    """Seeded student logits (requiring grad), teacher logits and labels."""
    generator = torch.Generator().manual_seed(seed)
    student = (3 * torch.randn(batch, classes, generator=generator)).requires_grad_()
    teacher = 3 * torch.randn(batch, classes, generator=generator)
    return student, teacher, torch.randint(0, classes, (batch,), generator=generator)


def check_distillation_loss(answer):
    """Exercise 1.1: answer(student_logits, teacher_logits, labels, temperature, alpha) must equal eq. (KD)."""
    student, teacher, labels = _inputs()
    temperature, alpha = 4.0, 0.7
    got = attempt("1.1", answer, student, teacher, labels, temperature, alpha)
    if not isinstance(got, torch.Tensor) or got.dim() != 0:
        raise ExerciseError(f"exercise 1.1: return the loss as a 0-dim tensor (one number for the batch), got "
                            f"{tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__}")
    if not got.requires_grad:
        raise ExerciseError("exercise 1.1: the loss has no gradient: compute it from student_logits with torch "
                            "operations (no .detach(), .item() or numpy)")
    hard = F.cross_entropy(student, labels)
    log_q = F.log_softmax(student / temperature, -1)
    p = F.softmax(teacher / temperature, -1)
    kl = F.kl_div(log_q, p, reduction="batchmean")
    t2 = temperature ** 2
    mistakes = [
        (alpha * kl + (1 - alpha) * hard,
         "the soft term lacks the factor T²: its gradients shrink as 1/T² (Hinton et al. §2), so multiply it by T²"),
        (alpha * t2 * kl / log_q.shape[1] + (1 - alpha) * hard,
         "the KL divergence is divided by the number of classes too: reduction='mean' averages over every element; "
         "use reduction='batchmean' (sum over classes, mean over the batch)"),
        (alpha * t2 * F.kl_div(log_q.exp(), p, reduction="batchmean") + (1 - alpha) * hard,
         "F.kl_div / nn.KLDivLoss takes the student's LOG-probabilities as its input: use F.log_softmax, not softmax"),
        (alpha * t2 * kl * log_q.shape[0] + (1 - alpha) * hard,
         "the KL divergence is summed over the batch: use reduction='batchmean' to average it over the examples"),
        ((1 - alpha) * t2 * kl + alpha * hard,
         "alpha weights the soft (teacher) term and 1 - alpha the hard labels; you swapped them"),
        (alpha * t2 * F.kl_div(F.log_softmax(student, -1), p, reduction="batchmean") + (1 - alpha) * hard,
         "the student's logits must be softened too: divide them by T before the log-softmax"),
        (alpha * t2 * F.kl_div(log_q, F.softmax(teacher, -1), reduction="batchmean") + (1 - alpha) * hard,
         "the teacher's logits must be softened too: divide them by T before the softmax"),
        (alpha * t2 * kl + (1 - alpha) * F.cross_entropy(student / temperature, labels),
         "the hard-label term uses the student's logits at T = 1, not divided by T"),
    ]
    compare("1.1", got, distillation_loss(student, teacher, labels, temperature, alpha), mistakes, "the loss")
    passed("1.1", "Your loss equals kdlab.distillation_loss: log-probabilities in, 'batchmean', and T².")
