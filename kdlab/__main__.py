"""`python -m kdlab distill|pipeline …`: the course's main jobs from the command line."""
from __future__ import annotations

import argparse
from pathlib import Path

from . import distributed
from .data import DATASETS
from .models import MODELS
from .multiseed import run_seeds, summary_table
from .pipeline import EPOCHS, JITTER, SENSITIVITIES, TEACHERS, VIEWS
from .seeds import parse_seeds


def _common(parser, out):
    """The options that distillation and the pipeline share."""
    parser.add_argument("--dataset", default="mnist5k", choices=DATASETS)
    parser.add_argument("--teacher", default="lenet5", choices=MODELS)
    parser.add_argument("--student", default="lenet300", choices=MODELS)
    parser.add_argument("--teachers", type=int, default=TEACHERS,
                        help="teachers trained, each from its own initial weights; the student learns their mean "
                             "soft targets (an ensemble, Hinton et al. section 1)")
    parser.add_argument("--teacher-epochs", type=int, default=60, help="epochs of each teacher")
    parser.add_argument("--epochs", type=int, default=EPOCHS,
                        help="student epochs over the transfer set (scratch and distilled): a patient schedule pays")
    parser.add_argument("--views", type=int, default=VIEWS,
                        help="mixup views per training image in the transfer set, held in memory: (views + 1) x "
                             "the training images (0: the training images alone, e.g. for CIFAR-10's 50,000)")
    parser.add_argument("--temperature", type=float, default=20.0, help="Hinton et al. used 20 on MNIST")
    parser.add_argument("--alpha", type=float, default=0.9)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seeds", "--seed", default="0",
                        help="seeds to run, e.g. 0, 0-4 or 0,2,7: several seeds write OUT/seed_K/ and OUT/summary.md")
    parser.add_argument("--jobs", type=int, default=1, help="runs (seeds) computed at once, in separate processes")
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads per run; fixed so that a run computes the same on any machine")
    parser.add_argument("--root", default="data", help="download cache of the torchvision data sets")
    parser.add_argument("--out", default=out)
    parser.add_argument("--jitter", default="teacher", choices=JITTER,
                        help="who trains on jittered views (random shifts and rotations): the teacher only "
                             "(Hinton et al.), all three, or none")
    parser.add_argument("--resume", action="store_true",
                        help="continue the trainings from the checkpoints in OUT/checkpoints (saved every epoch)")


def parse_args(argv=None):
    """The command line: a sub-command and its options."""
    parser = argparse.ArgumentParser(prog="python -m kdlab", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    _common(commands.add_parser("distill", help="train a teacher, a scratch student and a distilled student"),
            "runs/distill")
    pipeline = commands.add_parser("pipeline", help="distil, then prune, share, fine-tune and write one .kdz file")
    _common(pipeline, "runs/pipeline")
    pipeline.add_argument("--sensitivities", type=float, nargs="+", default=list(SENSITIVITIES),
                          help="iterative pruning: threshold = sensitivity x layer std, one step each")
    pipeline.add_argument("--retrain-epochs", type=int, default=1,
                          help="retraining epochs over the transfer set after each step")
    pipeline.add_argument("--retrain-lr", type=float, default=2e-3, help="Adam learning rate of the retraining")
    pipeline.add_argument("--conv-bits", type=int, default=8, help="codebook bits of the conv layers")
    pipeline.add_argument("--fc-bits", type=int, default=4, help="codebook bits of the fully connected layers")
    pipeline.add_argument("--finetune-epochs", type=int, default=1,
                          help="codebook fine-tuning epochs over the transfer set")
    pipeline.add_argument("--finetune-lr", type=float, default=1e-4)
    return parser.parse_args(argv)


def main(argv=None):
    """Run the command and print its results; under torchrun every process trains and rank 0 writes and prints."""
    options = vars(parse_args(argv))
    distributed.init_distributed()
    try:
        report = _run(options)
    finally:
        distributed.shutdown()
    return report


def _run(options):
    """Run the command of `options` (parsed arguments) over its seeds, printing each run and the summary."""
    command, out = options.pop("command"), Path(options.pop("out"))
    seeds, jobs, threads = options.pop("seeds"), options.pop("jobs"), options.pop("threads")
    several = len(parse_seeds(seeds)) > 1

    def show(seed, report, folder):
        if not distributed.is_main():
            return
        if command == "pipeline" and not several:
            print((folder / "report.md").read_text())
        prefix = f"seed {seed}: " if several else ""
        for key in ("teacher", "student_scratch", "student_distilled"):
            print(f"{prefix}{key:<18} {report[key]['accuracy']:.4f}")
        if command == "pipeline":
            compressed = report["compressed"]
            print(f"{prefix}{'compressed':<18} {compressed['accuracy']:.4f}  {compressed['file_bytes']:,} bytes, "
                  f"{compressed['ratio']:.1f}x smaller; reloaded {report['reloaded_accuracy']:.4f}")
        print(f"{prefix}report: {folder / 'report.json'}  ({report['seconds']:.1f} s on {report['device']}, "
              f"{report['world_size']} process{'es' if report['world_size'] > 1 else ''})", flush=True)

    reports, summary = run_seeds(command, seeds, out, jobs, threads, on_report=show, **options)
    if several and distributed.is_main():
        print(summary_table(summary))
        print(f"summary: {out / 'summary.md'}")
    return reports[0] if not several else summary


if __name__ == "__main__":
    main()
