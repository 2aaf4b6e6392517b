"""Resident memory of a saved module, measured in a fresh process: `python path/to/memory_probe.py SPEC`.

Run as a script (not `-m kdlab...`, which would import the whole package first), it loads the module saved at
SPEC's "path" (torch.jit.save'd if "scripted", else torch.save'd), runs it `calls` times on random inputs of each
of SPEC's "shapes" under torch.inference_mode with SPEC's "threads", and prints one JSON line:

- "model_mb": resident memory (VmRSS) after loading, above the process's own before loading (which has imported
  torch and SPEC's "imports", the packages whose classes the saved module holds, and holds the inputs);
- "peak_mb": for each shape, the peak resident memory (VmHWM, reset just before the calls) above that same
  baseline: the weights, the activations and whatever buffers the kernels allocate.

Between the steps it collects garbage and calls glibc's malloc_trim, so that memory freed by loading is not
counted. Linux only (/proc/self/status, and /proc/self/clear_refs to reset the peak, Linux >= 4.0). It imports
only torch and SPEC's "imports" before its baseline, so that it measures the form, not the packages around it.
"""
import ctypes
import gc
import importlib
import json
import sys
import warnings
from pathlib import Path

import torch

PROBE_FIELDS = ("model_mb", "peak_mb")  # the keys of the JSON line


def status_mb(field):
    """A field of /proc/self/status in MB (VmRSS: resident now, VmHWM: peak resident)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def settle():
    """Free what Python and the C allocator hold but do not use, and restart the peak (VmHWM) from now."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    Path("/proc/self/clear_refs").write_text("5")


def measure(spec):
    """{"model_mb", "peak_mb": [one per shape]} of the module described by `spec` (see the module docstring)."""
    torch.set_num_threads(spec["threads"])
    for name in spec.get("imports", ()):
        importlib.import_module(name)
    dtype = getattr(torch, spec.get("dtype", "torch.float32").replace("torch.", ""))
    inputs = [torch.randn(shape, dtype=dtype) for shape in spec["shapes"]]
    settle()
    base = status_mb("VmRSS")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = torch.jit.load(spec["path"]) if spec["scripted"] else torch.load(spec["path"], weights_only=False)
    settle()
    loaded = status_mb("VmRSS")
    peaks = []
    with torch.inference_mode():
        for x in inputs:
            settle()
            for _ in range(spec.get("calls", 3)):
                model(x)
            peaks.append(status_mb("VmHWM") - base)
    return {"model_mb": loaded - base, "peak_mb": peaks}


if __name__ == "__main__":
    print(json.dumps(measure(json.loads(sys.argv[1]))))
