"""The course's main jobs end to end: teacher, scratch student and distilled student, with a report."""
from __future__ import annotations

import copy
import json
import time
from pathlib import Path

from .data import load_dataset, make_loader
from .distill import DistillModel
from .files import atomic_write
from .models import count_parameters
from .train import evaluate, fit, set_seed


def run_distillation(dataset="mnist5k", teacher="lenet5", student="lenet300", teacher_epochs=30, epochs=40,
                     temperature=10.0, alpha=0.9, lr=1e-3, batch_size=64, device="auto", seed=0, root="data"):
    """Train a teacher, a student from scratch and a distilled student; return (report, DistillModel)."""
    start = time.perf_counter()
    train_set, test_set = load_dataset(dataset, root)
    test_loader = make_loader(test_set, 256)
    kd = DistillModel(train_set, teacher=teacher, student=student, temperature=temperature, lr=lr,
                      alpha=alpha, batch_size=batch_size, device=device, seed=seed)
    scratch = copy.deepcopy(kd.student)  # same initial weights as the distilled student: a fair baseline
    stages = []

    def stage(name, work, model):
        began = time.perf_counter()
        set_seed(seed)  # every stage sees the same batch order: the students differ only by their loss
        kd.loader.generator.manual_seed(seed)
        work()
        accuracy = evaluate(model, test_loader, kd.device)
        stages.append({"name": name, "accuracy": accuracy, "bytes": 4 * count_parameters(model),
                       "seconds": time.perf_counter() - began})
        return accuracy

    teacher_acc = stage("teacher", lambda: kd.train_teacher(teacher_epochs), kd.teacher)
    scratch_acc = stage("student_scratch", lambda: fit(scratch, kd.loader, epochs, lr=lr, device=kd.device,
                                                        desc="scratch"), scratch)
    distilled_acc = stage("student_distilled", lambda: kd.train(epochs), kd.student)
    report = {
        "dataset": dataset,
        "teacher": {"model": teacher, "params": count_parameters(kd.teacher), "accuracy": teacher_acc},
        "student_scratch": {"model": student, "params": count_parameters(scratch), "accuracy": scratch_acc},
        "student_distilled": {"model": student, "accuracy": distilled_acc,
                              "float32_bytes": 4 * count_parameters(kd.student)},
        "temperature": temperature,
        "alpha": alpha,
        "epochs": {"teacher": teacher_epochs, "student": epochs},
        "stages": stages,
        "seconds": time.perf_counter() - start,
        "device": str(kd.device),
        "seed": seed,
    }
    return report, kd


def write_report(report, out):
    """Write `report` as OUT/report.json (atomically) and return its path."""
    return atomic_write(Path(out) / "report.json", json.dumps(report, indent=2) + "\n")
