"""Knowledge distillation (Hinton, Vinyals & Dean 2015): the loss and the DistillModel trainer."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .data import ArrayDataset, dataset_info, make_loader
from .files import atomic_torch_save
from .models import MODELS, build_model
from .train import evaluate, fit, get_device, make_optimizer, set_seed


def soft_targets(logits, temperature=1.0):
    """Softmax at temperature T (Hinton et al. eq. 1): q_i = exp(z_i/T) / sum_j exp(z_j/T)."""
    if not isinstance(logits, torch.Tensor):
        raise ValueError(f"logits must be a torch.Tensor, got {type(logits).__name__}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return F.softmax(logits / temperature, dim=-1)


def distillation_loss(student_logits, teacher_logits, labels, temperature=5.0, alpha=0.9):
    """alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) * CE(s, labels), averaged over the batch.

    Conventions, each of which popular tutorials get wrong:
    - KL is computed from log-probabilities of the student (F.kl_div takes log-input);
    - the KL is summed over classes and divided by the batch size ("batchmean"), the true KL
      divergence per example; "mean" would also divide by the number of classes;
    - the soft term is multiplied by T^2: its gradient scales as 1/T^2 (Hinton et al. eq. 2,
      dC/dz_i = (q_i - p_i) / T ~ (z_i - v_i) / (N T^2)), so T^2 keeps the soft and hard
      terms in proportion whatever the temperature.
    """
    for name, value in (("student_logits", student_logits), ("teacher_logits", teacher_logits), ("labels", labels)):
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student_logits and teacher_logits must have the same shape, got "
            f"{tuple(student_logits.shape)} and {tuple(teacher_logits.shape)}"
        )
    if labels.shape != student_logits.shape[:1]:
        raise ValueError(f"labels must have shape ({len(student_logits)},), got {tuple(labels.shape)}")
    soft = F.kl_div(
        F.log_softmax(student_logits / temperature, dim=-1),
        F.log_softmax(teacher_logits / temperature, dim=-1),
        reduction="batchmean",
        log_target=True,
    )
    hard = F.cross_entropy(student_logits, labels)
    return alpha * temperature**2 * soft + (1 - alpha) * hard


def _as_dataset(source_data, hard_labels, name="source_data", labels_name="hard_labels"):
    """A Dataset or DataLoader from tensors/arrays with labels, or the Dataset/DataLoader itself."""
    if isinstance(source_data, (Dataset, DataLoader)):
        if hard_labels is not None:
            raise ValueError(f"{labels_name} must be None when {name} is a Dataset or DataLoader")
        if len(source_data) == 0:
            raise ValueError(f"{name} is empty")
        return source_data
    if hard_labels is None:
        raise ValueError(f"{labels_name} are required when {name} is a tensor or array")
    if len(source_data) != len(hard_labels):
        raise ValueError(
            f"{name} and {labels_name} must have the same length, got {len(source_data)} and {len(hard_labels)}"
        )
    if len(source_data) == 0:
        raise ValueError(f"{name} is empty")
    labels = np.asarray(torch.as_tensor(hard_labels).cpu())
    return ArrayDataset(torch.as_tensor(source_data).cpu(), labels)


class DistillModel:
    """Distil `teacher` into `student` on `source_data` with `hard_labels` (Hinton et al. 2015).

    `source_data` is a tensor or array of inputs (with `hard_labels`), or a Dataset or DataLoader
    of (input, label). `teacher` and `student` are modules or `build_model` names; by default a
    torchvision resnet18 teacher and a smaller torchvision ResNet (resnet10) student, both adapted
    to the data's channels, size and classes.
    """

    def __init__(self, source_data, hard_labels=None, teacher=None, student=None, temperature=5,
                 lr=0.001, momentum=0.9, optimizer="adam", alpha=0.9, batch_size=64, device="auto", seed=0):
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if not 0 <= alpha <= 1:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        data = _as_dataset(source_data, hard_labels)
        set_seed(seed)
        self.loader = data if isinstance(data, DataLoader) else make_loader(data, batch_size, shuffle=True, seed=seed)
        self.in_shape, self.num_classes = dataset_info(self.loader)
        self.temperature, self.alpha, self.lr, self.momentum = temperature, alpha, lr, momentum
        self.optimizer, self.batch_size, self.seed = optimizer, batch_size, seed
        self.device = get_device(device)
        self.teacher = self._model(teacher, "resnet18", "teacher")
        self.student = self._model(student, "resnet10", "student")
        self.teacher_optimizer = make_optimizer(self.teacher.parameters(), optimizer, lr, momentum)
        self.student_optimizer = make_optimizer(self.student.parameters(), optimizer, lr, momentum)
        self.teacher_history, self.history = [], []

    def _model(self, model, default, name):
        """The module for `name` (built from a model name or the default) on the device, output size checked."""
        if isinstance(model, str) and model not in MODELS:
            raise ValueError(f"{name} must be one of {', '.join(MODELS)}, an nn.Module or None, got {model!r}")
        if model is None or isinstance(model, str):
            model = build_model(model or default, self.num_classes, self.in_shape)
        if not isinstance(model, nn.Module):
            raise ValueError(f"{name} must be an nn.Module, a build_model name or None, got {type(model).__name__}")
        model.to(self.device)
        was_training = model.training
        x, _ = next(iter(self.loader))
        with torch.no_grad():
            out = model.eval()(x[:2].to(self.device))
        model.train(was_training)
        if out.ndim != 2 or out.shape[1] != self.num_classes:
            raise ValueError(
                f"{name} must output {self.num_classes} class scores per input (the data's classes), "
                f"got output of shape {tuple(out.shape)}"
            )
        return model

    def train_teacher(self, epochs, checkpoint=None):
        """Train the teacher on the hard labels for `epochs`; return the per-epoch history.

        With `checkpoint` (a path) the run is saved after every epoch and resumed from the file if it exists;
        `epochs` then counts the whole run, and `teacher_history` becomes the run's history.
        """
        history = fit(self.teacher, self.loader, epochs, self.teacher_optimizer, device=self.device, desc="teacher",
                      checkpoint=checkpoint)
        self.teacher_history = history if checkpoint else self.teacher_history + history
        return history

    def distillation_loss(self, student_logits, inputs, labels):
        """The distillation loss for a batch: the teacher's logits come from a frozen forward pass."""
        with torch.no_grad():
            teacher_logits = self.teacher(inputs)
        return distillation_loss(student_logits, teacher_logits.float(), labels, self.temperature, self.alpha)

    def train(self, epochs, checkpoint=None):
        """Distil the frozen teacher into the student for `epochs`; return the per-epoch history.

        With `checkpoint` (a path) the student, its optimizer and the teacher are saved after every epoch and
        restored from the file if it exists; `epochs` then counts the whole run (resuming a 4-epoch run from the
        checkpoint of epoch 2 runs epochs 3 and 4), and `history` becomes the run's history.
        """
        self.teacher.to(self.device).eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        try:
            history = fit(self.student, self.loader, epochs, self.student_optimizer, loss_fn=self.distillation_loss,
                          device=self.device, desc="distil", checkpoint=checkpoint, frozen={"teacher": self.teacher})
        finally:
            for p in self.teacher.parameters():
                p.requires_grad_(True)
        self.history = history if checkpoint else self.history + history
        return history

    def evaluate(self, inputs, labels=None):
        """Accuracy of teacher and student on inputs with labels (or a Dataset/DataLoader): {"teacher", "student"}."""
        data = _as_dataset(inputs, labels, "inputs", "labels")
        loader = data if isinstance(data, DataLoader) else make_loader(data, max(self.batch_size, 256))
        return {
            "teacher": evaluate(self.teacher, loader, self.device),
            "student": evaluate(self.student, loader, self.device),
        }

    def save_student(self, path):
        """Save the student's state_dict to `path` (atomically)."""
        return atomic_torch_save(self.student.state_dict(), path)

    def load_student(self, path):
        """Load a state_dict saved by `save_student` into the student."""
        state = torch.load(path, map_location=self.device, weights_only=True)
        self.student.load_state_dict(state)
        return self.student
