"""The distillation methods measured: one trained teacher, the same student trained by each method and from scratch."""
from __future__ import annotations

import copy
import time

from .data import load_dataset, make_loader
from .distill import METHODS, DistillModel
from .models import MODELS
from .train import check_epochs, evaluate


def bench_distill(dataset="mnist5k", teacher="lenet5", student="lenet300", teacher_epochs=5, epochs=4,
                  methods=METHODS, seed=0, device="cpu"):
    """Test accuracy and seconds of `student` after `epochs` of each distillation method from one `teacher`.

    The teacher trains `teacher_epochs` on the hard labels; each method then distils a copy of it into a fresh
    student with DistillModel's defaults (T = 5, alpha = 0.9, Adam at 1e-3, batches of 64, the same seed and batch
    order); "scratch" is the student trained on the hard labels alone (alpha = 0) for the same epochs.
    """
    for name, value in (("teacher", teacher), ("student", student)):
        if value not in MODELS:
            raise ValueError(f"{name} must be one of {', '.join(MODELS)}, got {value!r}")
    check_epochs(teacher_epochs, "teacher_epochs")
    check_epochs(epochs)
    unknown = [m for m in methods if m not in METHODS]
    if isinstance(methods, str) or unknown:
        raise ValueError(f"methods must be a list of {', '.join(METHODS)}, got {methods!r}")
    train, test = load_dataset(dataset)
    test_loader = make_loader(test, 256)
    began = time.perf_counter()
    kd = DistillModel(train, teacher=teacher, student=student, device=device, seed=seed)
    kd.train_teacher(teacher_epochs)
    result = {"dataset": dataset, "teacher": teacher, "student": student, "teacher_epochs": teacher_epochs,
              "epochs": epochs, "teacher_accuracy": evaluate(kd.teacher, test_loader, device),
              "teacher_seconds": time.perf_counter() - began, "methods": {}}
    for method in ("scratch", *methods):
        began = time.perf_counter()
        options = {"alpha": 0.0} if method == "scratch" else {"method": method}
        run = DistillModel(train, teacher=copy.deepcopy(kd.teacher), student=student, device=device, seed=seed,
                           **options)
        run.train(epochs)
        result["methods"][method] = {"accuracy": evaluate(run.student, test_loader, device),
                                     "seconds": time.perf_counter() - began}
    return result
