"""Several seeds instead of one run: parse a seed list, summarise as mean ± sd and a paired confidence interval."""
from __future__ import annotations

import math
import platform

import numpy as np
import torch

from .checks import is_int, is_number


def parse_seeds(text):
    """Seeds from "3", "0-4" or "0,2,7" (or a list of ints), each a non-negative int, in order, no repeats."""
    if isinstance(text, (list, tuple)):
        seeds = list(text)
    elif isinstance(text, str):
        seeds = []
        try:
            for part in text.replace(" ", "").split(","):
                first, dash, last = part.partition("-")
                seeds += range(int(first), int(last) + 1) if dash else [int(first)]
        except ValueError:
            raise ValueError(f"seeds must look like 3, 0-4 or 0,2,7, got {text!r}") from None
    else:
        raise ValueError(f"seeds must be a str such as '0-4' or a list of ints, got {type(text).__name__}")
    if not seeds or not all(is_int(s) and s >= 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct non-negative integers, at least one, got {text!r}")
    return [int(s) for s in seeds]


def t_quantile(confidence, dof):
    """The two-sided Student-t critical value for `confidence` with `dof` degrees of freedom."""
    from scipy.stats import t

    return float(t.ppf(0.5 + confidence / 2, dof))


def mean_sd(values):
    """{"mean", "sd", "n"} of `values`, sd the sample standard deviation (n - 1), 0 for one value."""
    values = np.asarray(values, dtype=float)
    if values.ndim != 1 or not len(values):
        raise ValueError(f"values must be a non-empty list of numbers, got {values.tolist()!r}")
    return {"mean": float(values.mean()), "sd": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            "n": len(values)}


def paired_interval(a, b, confidence=0.95):
    """Mean of the paired differences a - b with its Student-t `confidence` interval.

    Returns {"mean", "sd", "n", "low", "high", "confidence"}; low = high = the mean for a single pair.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"a and b must pair up one to one, got {len(a)} and {len(b)} values")
    if not is_number(confidence) or not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    summary = mean_sd(a - b)
    n = summary["n"]
    half = t_quantile(confidence, n - 1) * summary["sd"] / math.sqrt(n) if n > 1 else 0.0
    return {**summary, "low": summary["mean"] - half, "high": summary["mean"] + half, "confidence": confidence}


def environment():
    """What a figure was measured with: library versions, thread count, Python, machine and CPU vector unit.

    "cpu" is the instruction set PyTorch's CPU kernels use (e.g. AVX2 or AVX512): the same code, seed and versions
    round differently on another, so a long training run ends elsewhere.
    """
    import torchvision

    return {"torch": torch.__version__, "torchvision": torchvision.__version__, "numpy": np.__version__,
            "python": platform.python_version(), "threads": torch.get_num_threads(), "machine": platform.machine(),
            "cpu": torch.backends.cpu.get_cpu_capability()}
