"""A main job over several seeds: one run per seed, in parallel processes of a fixed thread count, then the summary."""
from __future__ import annotations

import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from . import distributed
from .checks import is_int
from .files import atomic_write
from .pipeline import run_distillation, run_pipeline, write_report
from .seeds import environment, mean_sd, paired_interval, parse_seeds

JOBS = ("distill", "pipeline")


def run_job(job, seed, out, options):
    """Run `job` ("distill" or "pipeline") with `options` at `seed`, writing into `out`; return its report."""
    out = Path(out)
    if job == "distill":
        report, _, _ = run_distillation(**options, seed=seed, checkpoints=out / "checkpoints")
        if distributed.is_main():
            write_report(report, out)
        return report
    report, _ = run_pipeline(**options, seed=seed, out=out)
    return report


def _worker_setup(threads):
    """Each worker process computes on `threads` threads and shows no progress bars (they would interleave)."""
    os.environ["TQDM_DISABLE"] = "1"
    torch.set_num_threads(threads)


def run_seeds(job, seeds, out, jobs=1, threads=1, on_report=None, **options):
    """Run `job` once per seed of `seeds` ("0-4", "0,3" or a list) and summarise; return (reports, summary).

    One seed writes into OUT as a single run does; several write OUT/seed_K/ each, then OUT/summary.json and
    OUT/summary.md. `jobs` runs are computed at once in separate processes, each on `threads` CPU threads (fixed,
    so that a run computes the same on any machine with the same libraries). `on_report(seed, report, folder)` is
    called as each run finishes, in seed order.
    """
    if job not in JOBS:
        raise ValueError(f"job must be one of {', '.join(JOBS)}, got {job!r}")
    seeds = parse_seeds(seeds)
    for name, value in (("jobs", jobs), ("threads", threads)):
        if not is_int(value) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    if jobs > 1 and distributed.launched():
        raise ValueError(f"jobs must be 1 under torchrun, which already runs one process per device, got {jobs}")
    out = Path(out)
    folders = {seed: out if len(seeds) == 1 else out / f"seed_{seed}" for seed in seeds}
    reports = []

    def finished(seed, report):
        reports.append(report)
        if on_report:
            on_report(seed, report, folders[seed])

    if jobs == 1:
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            for seed in seeds:
                finished(seed, run_job(job, seed, folders[seed], options))
        finally:
            torch.set_num_threads(previous)
    else:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(min(jobs, len(seeds)), context, _worker_setup, (threads,)) as pool:
            futures = [pool.submit(run_job, job, seed, folders[seed], options) for seed in seeds]
            for seed, future in zip(seeds, futures):
                finished(seed, future.result())
    summary = summarize(reports, threads)
    if len(seeds) > 1 and distributed.is_main():
        atomic_write(out / "summary.json", json.dumps(summary, indent=2) + "\n")
        atomic_write(out / "summary.md", summary_table(summary) + "\n")
    return reports, summary


def summarize(reports, threads=None):
    """Mean ± sd over the runs of each accuracy, the paired 95 % interval of distilled - scratch, and the environment.

    `gap_closed` is mean(distilled - scratch) / mean(teacher - scratch): the share of the teacher's lead over
    the scratch student that distillation recovers. Pipeline reports add the compressed student's figures.
    """
    if not reports:
        raise ValueError("reports must hold at least one report")
    accuracy = {key: [r[key]["accuracy"] for r in reports] for key in ("teacher", "student_scratch",
                                                                       "student_distilled")}
    gain = paired_interval(accuracy["student_distilled"], accuracy["student_scratch"])
    lead = mean_sd([t - s for t, s in zip(accuracy["teacher"], accuracy["student_scratch"])])
    summary = {
        "seeds": [r["seed"] for r in reports],
        "teachers": reports[0]["teacher"].get("count", 1),
        **{key: mean_sd(values) for key, values in accuracy.items()},
        "distilled_minus_scratch": gain,
        "gap_closed": gain["mean"] / lead["mean"] if lead["mean"] > 0 else None,
        "environment": {**environment(), **({"threads": threads} if threads else {})},
        "device": reports[0]["device"],
    }
    if all("student_scratch_originals" in r for r in reports):  # the scratch baseline without the transfer set
        originals = [r["student_scratch_originals"]["accuracy"] for r in reports]
        over = paired_interval(accuracy["student_distilled"], originals)
        summary["student_scratch_originals"] = mean_sd(originals)
        summary["distilled_minus_scratch_originals"] = over
        lead = mean_sd([t - s for t, s in zip(accuracy["teacher"], originals)])["mean"]
        summary["gap_closed_originals"] = over["mean"] / lead if lead > 0 else None
    if all("compressed" in r for r in reports):
        compressed = [r["compressed"]["accuracy"] for r in reports]
        summary["compressed"] = {
            "accuracy": mean_sd(compressed),
            "minus_distilled": paired_interval(compressed, accuracy["student_distilled"]),
            "file_bytes": mean_sd([r["compressed"]["file_bytes"] for r in reports]),
            "ratio": mean_sd([r["compressed"]["ratio"] for r in reports]),
            "min_ratio": min(r["compressed"]["ratio"] for r in reports),
            "reloaded_exact": all(r["reloaded_accuracy"] == r["compressed"]["accuracy"] for r in reports),
        }
    return summary


def summary_table(summary):
    """The summary of `summarize` as a Markdown table of mean ± sd over the seeds."""
    def points(stat):
        return f"{100 * stat['mean']:.2f} ± {100 * stat['sd']:.2f} %"

    env = summary["environment"]
    cpu = f" ({env['cpu']})" if "cpu" in env else ""
    lines = [f"Seeds {', '.join(map(str, summary['seeds']))} (mean ± sd); torch {env['torch']}, torchvision "
             f"{env['torchvision']}, numpy {env['numpy']}, {env['threads']} thread(s) per run, "
             f"{summary['device']}{cpu}",
             "", "| | test accuracy |", "|---|---|"]
    count = summary["teachers"]
    views = "student_scratch_originals" in summary
    for key, name in (("teacher", f"ensemble of {count} teachers" if count > 1 else "teacher"),
                      ("student_scratch", "student from scratch" + (" (same transfer set)" if views else "")),
                      ("student_scratch_originals", "student from scratch (training images alone, same steps)"),
                      ("student_distilled", "distilled student")):
        if key in summary:
            lines.append(f"| {name} | {points(summary[key])} |")
    for suffix, which in (("", ""), ("_originals", ", scratch on the training images alone")):
        if "distilled_minus_scratch" + suffix in summary:
            gain = summary["distilled_minus_scratch" + suffix]
            lines.append(f"| distilled − scratch (paired, 95 % interval){which} | {100 * gain['mean']:+.2f} points "
                         f"[{100 * gain['low']:+.2f}, {100 * gain['high']:+.2f}] |")
        if summary.get("gap_closed" + suffix) is not None:
            share = summary["gap_closed" + suffix]
            lines.append(f"| share of the teacher − scratch gap closed{which} | {share:.0%} |")
    if "compressed" in summary:
        c = summary["compressed"]
        lines += [f"| compressed student (.kdz) | {points(c['accuracy'])} |",
                  f"| compressed − distilled (paired, 95 % interval) | {100 * c['minus_distilled']['mean']:+.2f} "
                  f"points [{100 * c['minus_distilled']['low']:+.2f}, {100 * c['minus_distilled']['high']:+.2f}] |",
                  f"| .kdz bytes | {c['file_bytes']['mean']:,.0f} ± {c['file_bytes']['sd']:,.0f} |",
                  f"| smaller than float32 | {c['ratio']['mean']:.1f} ± {c['ratio']['sd']:.1f}x "
                  f"(least {c['min_ratio']:.1f}x) |",
                  f"| reloaded exactly as accurate, every seed | {'yes' if c['reloaded_exact'] else 'NO'} |"]
    return "\n".join(lines)
