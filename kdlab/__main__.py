"""`python -m kdlab distill …`: the course's main job from the command line."""
from __future__ import annotations

import argparse

from .data import DATASETS
from .models import MODELS
from .pipeline import run_distillation, write_report


def parse_args(argv=None):
    """The command line: a sub-command and its options."""
    parser = argparse.ArgumentParser(prog="python -m kdlab", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    distill = commands.add_parser("distill", help="train a teacher, a scratch student and a distilled student")
    distill.add_argument("--dataset", default="mnist5k", choices=DATASETS)
    distill.add_argument("--teacher", default="lenet5", choices=MODELS)
    distill.add_argument("--student", default="lenet300", choices=MODELS)
    distill.add_argument("--teacher-epochs", type=int, default=30)
    distill.add_argument("--epochs", type=int, default=40, help="student epochs (scratch and distilled)")
    distill.add_argument("--temperature", type=float, default=10.0)
    distill.add_argument("--alpha", type=float, default=0.9)
    distill.add_argument("--lr", type=float, default=1e-3)
    distill.add_argument("--batch-size", type=int, default=64)
    distill.add_argument("--device", default="auto")
    distill.add_argument("--seed", type=int, default=0)
    distill.add_argument("--root", default="data", help="download cache of the torchvision data sets")
    distill.add_argument("--out", default="runs/distill")
    return parser.parse_args(argv)


def main(argv=None):
    """Run the command and print its accuracies."""
    args = parse_args(argv)
    options = vars(args)
    command, out = options.pop("command"), options.pop("out")
    if command == "distill":
        report, _ = run_distillation(**options)
        path = write_report(report, out)
        for key in ("teacher", "student_scratch", "student_distilled"):
            print(f"{key:<18} {report[key]['accuracy']:.4f}")
        print(f"report: {path}  ({report['seconds']:.1f} s on {report['device']})")


if __name__ == "__main__":
    main()
