"""Knowledge distillation (Hinton, Vinyals & Dean 2015): the loss and the DistillModel trainer."""
from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from . import distributed
from .checks import is_number
from .data import ArrayDataset, dataset_info, make_loader
from .files import atomic_torch_save
from .memo import OutputMemo, memoizable
from .models import MODELS, build_model
from .train import evaluate, fit, get_device, make_optimizer, predict, set_seed
from .variants import (HINT_LOSSES, average_soft_targets, hint_loss, hint_regressor, multi_teacher_loss,
                       rkd_angle_loss, rkd_distance_loss)

METHODS = ("logits", "features", "relations")


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
    - the soft term is multiplied by T^2: its gradient is exactly dC/dz_i = (q_i - p_i) / T (Hinton et al.
      eq. 2), which at high T, for zero-mean logits, is ~ (z_i - v_i) / (N T^2) (their eqs. 3-4), so at high
      T it scales as 1/T^2 and T^2 keeps the soft and hard terms in proportion; at low T it does not scale as
      1/T^2, and T^2 only partly compensates.
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


def _check_variant(method, beta, hint_loss, layers, rkd_weights):
    """Raise ValueError naming the first of DistillModel's variant arguments that is not allowed."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if not is_number(beta) or not 0 <= beta < math.inf:
        raise ValueError(f"beta must be a finite number >= 0, got {beta!r}")
    if hint_loss not in HINT_LOSSES:
        raise ValueError(f"hint_loss must be one of {', '.join(HINT_LOSSES)}, got {hint_loss!r}")
    if layers is not None and not (isinstance(layers, (list, tuple)) and len(layers) == 2
                                   and all(isinstance(name, str) for name in layers)):
        raise ValueError(f"layers must be None or a pair (teacher_layer, student_layer) of module names, "
                         f"got {layers!r}")
    if not (isinstance(rkd_weights, (list, tuple)) and len(rkd_weights) == 2
            and all(is_number(w) and 0 <= w < math.inf for w in rkd_weights)):
        raise ValueError(f"rkd_weights must be a pair (distance, angle) of finite numbers >= 0, got {rkd_weights!r}")


def _keeper(store, key):
    """A forward hook that keeps its module's latest output in store[key]."""
    def hook(module, args, output):
        store[key] = output
    return hook


@torch.no_grad()
def _trace(model, x, hooks):
    """Run `model` on `x` in eval mode with the forward `hooks` ([(module, hook)]) registered, then remove them."""
    handles = [module.register_forward_hook(hook) for module, hook in hooks]
    was_training = model.training
    try:
        model.eval()(x)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()


def _layer(model, name, index, role):
    """The module of `model` called `name` (layers[index]); ValueError listing the names if there is none."""
    modules = dict(model.named_modules())
    if not name or name not in modules:
        raise ValueError(f"layers[{index}] must name a module of the {role}, one of "
                         f"{', '.join(n for n in modules if n)}; got {name!r}")
    return modules[name]


def _penultimate(model, x, role):
    """Name of the module run just before `model`'s last Linear layer, whose output is the penultimate embedding."""
    leaves = {name: m for name, m in model.named_modules() if name and next(m.children(), None) is None}
    order = []
    _trace(model, x, [(m, lambda m, args, output, name=name: order.append(name)) for name, m in leaves.items()])
    last = max((i for i, name in enumerate(order) if isinstance(leaves[name], nn.Linear)), default=0)
    if last == 0:
        raise ValueError(f"layers must be given: the {role} runs no module before a last Linear layer, so it has no "
                         f"default; its modules are {', '.join(name for name, _ in model.named_modules() if name)}")
    return order[last - 1]


def _output_shape(model, name, x, index, role):
    """Per-example shape of the output of `model`'s module `name` (layers[index]) on inputs `x`."""
    store = {}
    _trace(model, x, [(_layer(model, name, index, role), _keeper(store, "output"))])
    output = store.get("output")
    if not isinstance(output, torch.Tensor):
        raise ValueError(f"layers[{index}] must name a module of the {role} that outputs a tensor; {name!r} gives "
                         f"{type(output).__name__}")
    return tuple(output.shape[1:])


def _numbered(path, k):
    """`path` with `_k` added to its stem: teacher.pt -> teacher_2.pt."""
    path = Path(path)
    return path.with_name(f"{path.stem}_{k}{path.suffix}")


class DistillModel:
    """Distil `teacher` into `student` on `source_data` with `hard_labels` (Hinton et al. 2015), or a variant of it.

    `source_data` is a tensor or array of inputs (with `hard_labels`), or a Dataset or DataLoader
    of (input, label). `teacher` and `student` are modules or `build_model` names; by default a
    torchvision resnet18 teacher and a smaller torchvision ResNet (resnet10) student, both adapted
    to the data's channels, size and classes. `teacher` may be a list of them: the soft targets are then the mean
    of the teachers' probabilities at temperature T (`multi_teacher_loss`); `teachers` holds them, `teacher` the first.

    `method` sets the loss of a batch, with L_KD = distillation_loss(s, t, labels, temperature, alpha):
      "logits":    L_KD (Hinton et al. 2015);
      "features":  L_KD + beta * hint_loss(r(student layer), teacher layer, hint_loss) (FitNets, Romero et al. 2015),
                   r a regressor (`hint_regressor`) trained with the student; FitNets trains the hint in a stage of
                   its own before distilling, here both terms are trained together;
      "relations": L_KD + beta * (w_D * rkd_distance_loss + w_A * rkd_angle_loss) of the student layer and teacher
                   layer outputs (RKD, Park et al. 2019), (w_D, w_A) = rkd_weights.
    With several teachers the feature and relation terms are averaged over the teachers, with a regressor each.
    `layers` = (teacher_layer, student_layer) names modules (as in named_modules()) whose outputs are compared,
    captured with forward hooks during `train`; by default each model's penultimate embedding, the output of the
    module run just before its last Linear layer (lenet5: "6", the ReLU after fc500; lenet300: "4"; resnets:
    "avgpool"). The regressors (`regressors`) are in `student_optimizer` and in the checkpoints of `train`.
    """

    def __init__(self, source_data, hard_labels=None, teacher=None, student=None, temperature=5,
                 lr=0.001, momentum=0.9, optimizer="adam", alpha=0.9, batch_size=64, device="auto", seed=0,
                 method="logits", beta=1.0, hint_loss="l2", layers=None, rkd_weights=(25.0, 50.0)):
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if not 0 <= alpha <= 1:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        _check_variant(method, beta, hint_loss, layers, rkd_weights)
        teachers = list(teacher) if isinstance(teacher, (list, tuple)) else [teacher]
        if not teachers:
            raise ValueError("teacher must be an nn.Module, a build_model name, None or a non-empty list of them, "
                             "got an empty list")
        data = _as_dataset(source_data, hard_labels)
        distributed.init_distributed()  # under torchrun: join the group before choosing this process's GPU
        set_seed(seed)
        self.loader = data if isinstance(data, DataLoader) else make_loader(data, batch_size, shuffle=True, seed=seed)
        self.in_shape, self.num_classes = dataset_info(self.loader)
        self.temperature, self.alpha, self.lr, self.momentum = temperature, alpha, lr, momentum
        self.optimizer, self.batch_size, self.seed = optimizer, batch_size, seed
        self.method, self.beta, self.hint_loss, self.rkd_weights = method, beta, hint_loss, tuple(rkd_weights)
        self.device = get_device(device)
        probe = self._probe()  # one batch drawn for the teachers, one for the student: a seed's batch order stays
        names = ["teacher"] if len(teachers) == 1 else [f"teacher[{i}]" for i in range(len(teachers))]
        self.teachers = [self._model(model, "resnet18", name, probe) for model, name in zip(teachers, names)]
        self._probe_inputs = self._probe()
        self.student = self._model(student, "resnet10", "student", self._probe_inputs)
        self.teacher_optimizers = [make_optimizer(t.parameters(), optimizer, lr, momentum) for t in self.teachers]
        self._features = {}
        self._setup_variant(layers)
        self.teacher_history, self.history, self.generation = [], [], 0
        self._memo = None

    @property
    def teacher(self):
        """The (first) teacher."""
        return self.teachers[0]

    @property
    def teacher_optimizer(self):
        """The optimizer of the (first) teacher."""
        return self.teacher_optimizers[0]

    def _probe(self):
        """Two inputs of a first batch, on the device: enough to check a model's outputs and its layers' shapes."""
        x, _ = next(iter(self.loader))
        return x[:2].to(self.device)

    def _model(self, model, default, name, x):
        """The module for `name` (built from a model name or the default) on the device, output size checked on `x`."""
        if isinstance(model, str) and model not in MODELS:
            raise ValueError(f"{name} must be one of {', '.join(MODELS)}, an nn.Module or None, got {model!r}")
        if model is None or isinstance(model, str):
            model = build_model(model or default, self.num_classes, self.in_shape)
        if not isinstance(model, nn.Module):
            raise ValueError(f"{name} must be an nn.Module, a build_model name or None, got {type(model).__name__}")
        model.to(self.device)
        was_training = model.training
        with torch.no_grad():
            out = model.eval()(x)
        model.train(was_training)
        if out.ndim != 2 or out.shape[1] != self.num_classes:
            raise ValueError(
                f"{name} must output {self.num_classes} class scores per input (the data's classes), "
                f"got output of shape {tuple(out.shape)}"
            )
        return model

    def _setup_variant(self, layers):
        """Resolve the layers the method compares, build its regressors and the student's optimizer."""
        self.teacher_layers, self.student_layer, self.regressors = [], None, nn.ModuleList()
        if self.method != "logits":
            x = self._probe_inputs
            self.student_layer = layers[1] if layers else _penultimate(self.student, x, "student")
            self.teacher_layers = [layers[0] if layers else _penultimate(t, x, "teacher") for t in self.teachers]
            student_shape = _output_shape(self.student, self.student_layer, x, 1, "student")
            teacher_shapes = [_output_shape(t, name, x, 0, "teacher") for t, name in zip(self.teachers,
                                                                                        self.teacher_layers)]
            if self.method == "features":
                self.regressors = nn.ModuleList(hint_regressor(student_shape, shape) for shape in teacher_shapes)
        self.regressors.to(self.device)
        params = [*self.student.parameters(), *self.regressors.parameters()]
        self.student_optimizer = make_optimizer(params, self.optimizer, self.lr, self.momentum)

    def _hooks(self):
        """Register forward hooks keeping the compared layers' outputs in `_features`; return their handles."""
        if self.student_layer is None:
            return []
        hooks = [(_layer(self.student, self.student_layer, 1, "student"), "student")]
        hooks += [(_layer(t, name, 0, "teacher"), k) for k, (t, name) in enumerate(zip(self.teachers,
                                                                                      self.teacher_layers))]
        return [module.register_forward_hook(_keeper(self._features, key)) for module, key in hooks]

    def _checkpointed(self):
        """The modules a checkpoint of `train` saves besides the student: the teacher(s) and the regressors."""
        if len(self.teachers) == 1:
            modules = {"teacher": self.teacher}
        else:
            modules = {f"teacher_{k}": t for k, t in enumerate(self.teachers, 1)}
        if self.method == "features":
            modules["regressors"] = self.regressors
        return modules

    def train_teacher(self, epochs, checkpoint=None, loader=None):
        """Train the teacher (each teacher in turn) on the hard labels for `epochs`; return the per-epoch history.

        The teachers train on `loader` (e.g. jittered views, `kdlab.jitter`) if given, else on the distillation data.
        With `checkpoint` (a path) the run is saved after every epoch and resumed from the file if it exists;
        `epochs` then counts the whole run, and `teacher_history` becomes the run's history. With several teachers,
        teacher k is saved to `checkpoint` with `_k` added to its stem (teacher_2.pt), and its rows of the history
        say {"teacher": k, ...}.
        """
        several = len(self.teachers) > 1
        history, self._memo = [], None  # the teachers change: outputs remembered from before are stale
        for k, (teacher, optimizer) in enumerate(zip(self.teachers, self.teacher_optimizers), 1):
            path = _numbered(checkpoint, k) if several and checkpoint is not None else checkpoint
            rows = fit(teacher, self.loader if loader is None else loader, epochs, optimizer, device=self.device,
                       desc=f"teacher {k}" if several else "teacher", checkpoint=path)
            history += [{"teacher": k, **row} for row in rows] if several else rows
        self.teacher_history = history if checkpoint else self.teacher_history + history
        return history

    def distillation_loss(self, student_logits, inputs, labels):
        """The method's loss for a batch (see the class docstring): the teachers run frozen forward passes.

        For "features" and "relations" it reads the layer outputs that the hooks of `train` captured. With alpha = 0
        and "logits" the loss is the cross-entropy alone, so the teachers are not run.
        """
        if self.alpha == 0 and self.method == "logits":
            return F.cross_entropy(student_logits, labels)
        with torch.no_grad():
            teacher_logits = self._teacher_logits(inputs)
        if len(teacher_logits) == 1:
            loss = distillation_loss(student_logits, teacher_logits[0], labels, self.temperature, self.alpha)
        else:
            loss = multi_teacher_loss(student_logits, teacher_logits, labels, self.temperature, self.alpha)
        if self.method == "logits":
            return loss
        student = self._features.pop("student").float()
        teachers = [self._features.pop(k).float() for k in range(len(self.teachers))]
        if self.method == "features":
            terms = [hint_loss(r(student), t, self.hint_loss) for r, t in zip(self.regressors, teachers)]
        else:
            w_distance, w_angle = self.rkd_weights
            terms = [w_distance * rkd_distance_loss(student, t) + w_angle * rkd_angle_loss(student, t)
                     for t in teachers]
        return loss + self.beta * sum(terms) / len(terms)

    def _teacher_logits(self, inputs):
        """The teachers' logits on a batch: looked up on a CPU when the data are fixed (`kdlab.memo`), else computed.

        With "logits" on a CPU and a dataset without augmentation, every teacher is run once per training example,
        at the first batch; later batches of those examples find their outputs by content. GPUs compute them
        afresh, which keeps their batches asynchronous.
        """
        if self._memo is None and self.method == "logits" and self.device.type == "cpu" \
                and memoizable(self.loader.dataset):
            self._memo = OutputMemo(self.teachers, self.loader.dataset, self.device)
        found = self._memo.lookup(inputs) if self._memo is not None else None
        return found if found is not None else [teacher(inputs).float() for teacher in self.teachers]

    def train(self, epochs, checkpoint=None):
        """Distil the frozen teacher(s) into the student for `epochs`; return the per-epoch history.

        With `checkpoint` (a path) the student, its optimizer, the teacher(s) and the regressors are saved after every
        epoch and restored from the file if it exists; `epochs` then counts the whole run (resuming a 4-epoch run
        from the checkpoint of epoch 2 runs epochs 3 and 4), and `history` becomes the run's history.
        """
        for teacher in self.teachers:
            teacher.to(self.device).eval()
            for p in teacher.parameters():
                p.requires_grad_(False)
        handles = self._hooks()
        try:
            history = fit(self.student, self.loader, epochs, self.student_optimizer, loss_fn=self.distillation_loss,
                          device=self.device, desc="distil", checkpoint=checkpoint, frozen=self._checkpointed())
        finally:
            for handle in handles:
                handle.remove()
            self._features.clear()
            for teacher in self.teachers:
                for p in teacher.parameters():
                    p.requires_grad_(True)
        self.history = history if checkpoint else self.history + history
        return history

    def finetune(self, epochs, lr=1e-4, checkpoint=None):
        """Fine-tune the student on the hard labels alone for `epochs` with a new optimizer at `lr`; return the history.

        The optimizer is of the kind given to the constructor (`optimizer`, `momentum`); no teacher is consulted.
        `checkpoint` works as in `train`.
        """
        optimizer = make_optimizer(self.student.parameters(), self.optimizer, lr, self.momentum)
        return fit(self.student, self.loader, epochs, optimizer, device=self.device, desc="finetune",
                   checkpoint=checkpoint)

    def next_generation(self):
        """Born-Again Networks (Furlanello et al. 2018): the student becomes the teacher of a fresh student.

        A copy of the trained student becomes the only teacher (frozen while `train` runs); the new student has the
        same architecture with freshly initialised weights (each submodule's reset_parameters), a new optimizer and,
        for "features", new regressors; both compare the student's layer. `teacher_history` becomes the last
        distillation's history, `history` starts empty, and `generation` counts the generations. Use:
        kd.train(epochs); then for each generation: kd.next_generation(); kd.train(epochs).
        """
        teacher, student = copy.deepcopy(self.student), copy.deepcopy(self.student)
        for module in student.modules():
            if callable(getattr(module, "reset_parameters", None)):
                module.reset_parameters()
        self.teachers, self.student, self._memo = [teacher], student, None
        self.teacher_optimizers = [make_optimizer(teacher.parameters(), self.optimizer, self.lr, self.momentum)]
        self._setup_variant(None if self.student_layer is None else (self.student_layer, self.student_layer))
        self.teacher_history, self.history = self.history, []
        self.generation += 1

    def _teacher_scores(self, dataset):
        """Accuracy of each teacher ("teacher_k") and of their mean probabilities ("teacher") on `dataset`."""
        loader = make_loader(dataset, max(self.batch_size, 256))  # in order, so that the teachers' outputs line up
        outputs = [predict(teacher, loader, self.device) for teacher in self.teachers]
        labels = outputs[0][1]

        def accuracy(scores):
            return int((scores.argmax(1) == labels).sum()) / len(labels)

        return {"teacher": accuracy(average_soft_targets([logits for logits, _ in outputs])),
                **{f"teacher_{k}": accuracy(logits) for k, (logits, _) in enumerate(outputs, 1)}}

    def evaluate(self, inputs, labels=None):
        """Accuracy of teacher and student on inputs with labels (or a Dataset/DataLoader): {"teacher", "student"}.

        With several teachers, "teacher" is the accuracy of their mean probabilities and "teacher_k" that of each.
        """
        data = _as_dataset(inputs, labels, "inputs", "labels")
        loader = data if isinstance(data, DataLoader) else make_loader(data, max(self.batch_size, 256))
        if len(self.teachers) == 1:
            scores = {"teacher": evaluate(self.teacher, loader, self.device)}
        else:
            scores = self._teacher_scores(data.dataset if isinstance(data, DataLoader) else data)
        return {**scores, "student": evaluate(self.student, loader, self.device)}

    def save_student(self, path):
        """Save the student's state_dict to `path` (atomically)."""
        return atomic_torch_save(self.student.state_dict(), path)

    def load_student(self, path):
        """Load a state_dict saved by `save_student` into the student."""
        state = torch.load(path, map_location=self.device, weights_only=True)
        self.student.load_state_dict(state)
        return self.student
