"""The course's main jobs end to end: teacher, scratch and distilled students, then Deep Compression to one file."""
from __future__ import annotations

import copy
import io
import json
import math
import os
import time
from pathlib import Path

from . import distributed
from .augment import jitter as jittered
from .checks import is_int
from .codebook import MAX_SHARE_BITS, check_bits, finetune_codebook, share_weights
from .container import load_compressed, save_compressed
from .data import DATASETS, load_dataset, make_loader
from .distill import DistillModel
from .files import atomic_write
from .models import MODELS, count_parameters
from .prune import check_sensitivities, iterative_prune, prunable_layers, remove_masks, sparsity
from .report import compression_report, journey_figure, stage_table
from .seeds import environment
from .train import check_epochs, check_lr, evaluate, fit, set_seed
from .transfer import mixup_views
from .variants import Ensemble

JITTER = ("teacher", "all", "none")
SENSITIVITIES = (0.5, 1.0, 1.25, 1.5, 1.75, 2.0, 2.25, 2.5, 2.75)  # nine gentle steps to ~5 % kept
TEACHERS = 3  # the main job distils an ensemble of three teachers (Hinton et al. 2015, section 1)
VIEWS = 9  # mixup views per training image in the transfer set: 4,000 images become 40,000
EPOCHS = 15  # student epochs over that transfer set: the steps of 150 epochs over the training images


class Stages:
    """Runs the named stages of a job, each from the same seed and batch order, and records what each gives."""

    def __init__(self, kd, test_loader, seed):
        self.kd, self.test_loader, self.seed, self.rows = kd, test_loader, seed, []

    def run(self, name, work, model, size=None):
        """Run work(), then record the test accuracy of `model`, its size in bytes and the seconds taken."""
        began = time.perf_counter()
        set_seed(self.seed)  # every stage sees the same batch order: the students differ only by their loss
        self.kd.loader.generator.manual_seed(self.seed)
        work()
        accuracy = evaluate(model, self.test_loader, self.kd.device)
        self.rows.append({"name": name, "accuracy": accuracy,
                          "bytes": size() if size else 4 * count_parameters(model),
                          "seconds": time.perf_counter() - began})
        return accuracy


def run_distillation(dataset="mnist5k", teacher="lenet5", student="lenet300", teacher_epochs=60, epochs=EPOCHS,
                     temperature=20.0, alpha=0.9, lr=1e-3, batch_size=64, device="auto", seed=0, root="data",
                     checkpoints=None, resume=False, jitter="teacher", teachers=TEACHERS, views=VIEWS):
    """Train teachers, a student from scratch and a distilled student; return (report, DistillModel, Stages).

    The students learn from a transfer set (`kdlab.mixup_views`): the training images and `views` fixed mixup
    blends of each, on which the teachers' soft targets say what no label can (function matching, Beyer et al.
    2022). `epochs` count passes over it. The student from scratch trains on the same transfer set, with the
    blends' labels, for the same steps ("student_scratch"); with views, a third student trains from the same
    initial weights on the training images alone for the same number of steps ("student_scratch_originals").

    `teachers` of the `teacher` architecture are trained, each from its own initial weights and batch order, and
    the student learns the mean of their softened probabilities (`kdlab.multi_teacher_loss`): the ensemble
    that Hinton et al. (2015, section 1) distil. The "teacher" stage reports the ensemble's accuracy.

    `jitter` says who trains on jittered views (`kdlab.jitter`, each image shifted and rotated afresh every
    epoch): "teacher" (Hinton et al. 2015 §3: a teacher trained on jittered inputs, students on the original
    images), "all" (the students too, the teacher seeing the student's view of each batch) or "none".
    The teachers always train on the training images (jittered unless `jitter` is "none"), never on the blends.
    With `checkpoints` (a folder), each training saves CHECKPOINTS/{teacher,scratch,distilled}.pt after every
    epoch (and scratch_originals.pt); `resume=True` continues from the checkpoints there, otherwise they are
    started afresh.
    """
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {', '.join(DATASETS)}, got {dataset!r}")
    for name, value in (("teacher", teacher), ("student", student)):
        if value not in MODELS:
            raise ValueError(f"{name} must be one of {', '.join(MODELS)}, got {value!r}")
    check_epochs(teacher_epochs, "teacher_epochs")
    check_epochs(epochs)
    if jitter not in JITTER:
        raise ValueError(f"jitter must be one of {', '.join(JITTER)}, got {jitter!r}")
    if not is_int(teachers) or teachers < 1:
        raise ValueError(f"teachers must be an integer >= 1, got {teachers!r}")
    if not is_int(views) or views < 0:
        raise ValueError(f"views must be an integer >= 0, got {views!r}")
    start = time.perf_counter()
    ck = _checkpoints(checkpoints, resume, ("teacher", "scratch", "distilled", "scratch_originals"))
    train_set, test_set = load_dataset(dataset, root)
    transfer = mixup_views(train_set, views, seed=seed) if views else train_set
    kd = DistillModel(jittered(transfer) if jitter == "all" else transfer, teacher=[teacher] * teachers,
                      student=student, temperature=temperature, lr=lr, alpha=alpha, batch_size=batch_size,
                      device=device, seed=seed)
    teacher_loader = make_loader(train_set if jitter == "none" else jittered(train_set), batch_size, True, seed)
    scratch = copy.deepcopy(kd.student)  # same initial weights as the distilled student: a fair baseline
    originals = copy.deepcopy(kd.student)
    stages = Stages(kd, make_loader(test_set, 256), seed)
    ensemble = Ensemble(kd.teachers) if teachers > 1 else kd.teacher
    teacher_acc = stages.run("teacher", lambda: kd.train_teacher(teacher_epochs, ck["teacher"], teacher_loader),
                             ensemble)
    scratch_acc = stages.run("student_scratch", lambda: fit(scratch, kd.loader, epochs, lr=lr, device=kd.device,
                                                             desc="scratch", checkpoint=ck["scratch"]), scratch)
    distilled_acc = stages.run("student_distilled", lambda: kd.train(epochs, ck["distilled"]), kd.student)
    same_steps = 0
    if views:
        same_steps = round(epochs * len(kd.loader) / math.ceil(len(train_set) / batch_size))
        plain = make_loader(jittered(train_set) if jitter == "all" else train_set, batch_size, True, seed)
        stages.run("student_scratch_originals", lambda: fit(originals, plain, same_steps, lr=lr, device=kd.device,
                                                             desc="scratch, originals",
                                                             checkpoint=ck["scratch_originals"]), originals)
    report = {
        "dataset": dataset,
        "teacher": {"model": teacher, "count": teachers, "params": count_parameters(ensemble), "accuracy": teacher_acc,
                    "members": [evaluate(t, stages.test_loader, kd.device) for t in kd.teachers]},
        "student_scratch": {"model": student, "params": count_parameters(scratch), "accuracy": scratch_acc},
        "student_distilled": {"model": student, "accuracy": distilled_acc,
                              "float32_bytes": 4 * count_parameters(kd.student)},
        **({"student_scratch_originals": {"model": student, "accuracy": stages.rows[-1]["accuracy"],
                                          "epochs": same_steps}} if views else {}),
        "temperature": temperature,
        "alpha": alpha,
        "epochs": {"teacher": teacher_epochs, "student": epochs},
        "jitter": jitter,
        "transfer": {"views": views, "examples": len(transfer)},
        "stages": stages.rows,
        "seconds": time.perf_counter() - start,
        "device": str(kd.device),
        "seed": seed,
        "world_size": distributed.world_size(),
        "batch_size": {"per_process": batch_size, "per_step": batch_size * distributed.world_size()},
        "environment": environment(),
    }
    return report, kd, stages


def run_pipeline(dataset="mnist5k", teacher="lenet5", student="lenet300", teacher_epochs=60, epochs=EPOCHS,
                 temperature=20.0, alpha=0.9, lr=1e-3, batch_size=64,
                 sensitivities=SENSITIVITIES, retrain_epochs=1, retrain_lr=2e-3, conv_bits=8, fc_bits=4,
                 finetune_epochs=1, finetune_lr=1e-4, device="auto", seed=0, root="data", out="runs/pipeline",
                 resume=False, jitter="teacher", teachers=TEACHERS, views=VIEWS):
    """Distil, then compress the student (prune + retrain, share, fine-tune the codebooks) into OUT/student.kdz.

    The retraining (Adam at `retrain_lr`, a fresh optimizer after each pruning step) and the fine-tuning keep the
    distillation loss on the transfer set, so the teacher guides the student throughout; their epochs count passes
    over the transfer set (one is the steps of ten over the training images).
    The file is reloaded from disk and evaluated. The three trainings checkpoint into OUT/checkpoints after
    every epoch; `resume=True` continues from there. Returns (report, the reloaded student).
    """
    if not isinstance(out, (str, os.PathLike)):
        raise ValueError(f"out must be a str or os.PathLike, got {type(out).__name__}")
    sensitivities = check_sensitivities(sensitivities)
    check_bits(conv_bits, "conv_bits", MAX_SHARE_BITS)
    check_bits(fc_bits, "fc_bits", MAX_SHARE_BITS)
    check_epochs(retrain_epochs, "retrain_epochs")
    check_lr(retrain_lr, "retrain_lr")
    check_epochs(finetune_epochs, "finetune_epochs")
    check_lr(finetune_lr, "finetune_lr")
    start = time.perf_counter()
    out = Path(out)
    report, kd, stages = run_distillation(dataset, teacher, student, teacher_epochs, epochs, temperature, alpha,
                                          lr, batch_size, device, seed, root, out / "checkpoints", resume, jitter,
                                          teachers, views)
    with distributed.output_folder(out) as folder:
        report, reloaded, table = _compress(report, kd, stages, folder, sensitivities, retrain_epochs, retrain_lr,
                                            conv_bits, fc_bits, finetune_epochs, finetune_lr)
    report["epochs"].update(retrain=retrain_epochs, finetune=finetune_epochs)
    report["lr"] = {"students": lr, "retrain": retrain_lr, "finetune": finetune_lr}
    report["seconds"] = time.perf_counter() - start
    if distributed.is_main():
        write_report(report, out, str(table))
    return report, reloaded


def _compress(report, kd, stages, out, sensitivities, retrain_epochs, retrain_lr, conv_bits, fc_bits,
              finetune_epochs, finetune_lr):
    """The compression stages of run_pipeline, writing into the folder `out`; return (report, reloaded, table)."""
    model, path = kd.student, out / "student.kdz"
    out.mkdir(parents=True, exist_ok=True)

    def file_size(name):
        return lambda: save_compressed(model, out / f"{name}.kdz")

    stages.run("pruned", lambda: iterative_prune(model, kd.loader, sensitivities, retrain_epochs, retrain_lr, kd.device,
                                                 kd.distillation_loss), model, file_size("pruned"))
    bits = {name: conv_bits if module.weight.dim() > 2 else fc_bits for name, module in prunable_layers(model)}
    stages.run("shared", lambda: share_weights(remove_masks(model), bits), model, file_size("shared"))
    stages.run("finetuned", lambda: finetune_codebook(model, kd.loader, finetune_epochs, finetune_lr,
                                                      device=kd.device, loss_fn=kd.distillation_loss),
               model, lambda: save_compressed(model, path))
    for name in ("pruned", "shared"):
        (out / f"{name}.kdz").unlink()
    reloaded = load_compressed(path).to(kd.device)
    reloaded_acc = stages.run("reloaded", lambda: None, reloaded, lambda: path.stat().st_size)
    table = compression_report(path)
    report["compressed"] = {
        "accuracy": stages.rows[-2]["accuracy"], "file_bytes": table.file_bytes,
        "ratio": report["student_distilled"]["float32_bytes"] / table.file_bytes,
        "nonzero_fraction": sparsity(reloaded)[-1]["kept"],
        "weight_bits": table.mean_bits("index_bits_huffman"), "index_bits": table.mean_bits("position_bits_huffman"),
        "sensitivities": list(sensitivities), "conv_bits": conv_bits, "fc_bits": fc_bits,
        "layers": table.rows,
    }
    report["reloaded_accuracy"] = reloaded_acc
    return report, reloaded, table


def _checkpoints(folder, resume, names):
    """{name: FOLDER/name.pt, or None without a folder}; without `resume`, old checkpoints there are removed.

    Several teachers save to FOLDER/teacher_1.pt, teacher_2.pt, … (DistillModel.train_teacher); those go too.
    """
    if folder is None:
        return dict.fromkeys(names)
    paths = {name: Path(folder) / f"{name}.pt" for name in names}
    if distributed.is_main():
        Path(folder).mkdir(parents=True, exist_ok=True)
        if not resume:
            for path in paths.values():
                for old in (path, *path.parent.glob(f"{path.stem}_*.pt")):
                    old.unlink(missing_ok=True)
    distributed.barrier()  # no process looks for a checkpoint before rank 0 has removed the old ones
    return paths


def write_report(report, out, layers=None):
    """Write OUT/report.json, and for a pipeline report OUT/report.md and OUT/journey.png; return the JSON's path."""
    out = Path(out)
    path = atomic_write(out / "report.json", json.dumps(report, indent=2) + "\n")
    if layers is not None:
        atomic_write(out / "report.md", stage_table(report) + "\n\n```\n" + layers + "\n```\n")
        image = io.BytesIO()
        journey_figure(report["stages"]).savefig(image, format="png", dpi=120, bbox_inches="tight")
        atomic_write(out / "journey.png", image.getvalue())
    return path
