"""Deployment measured: latency, memory and accuracy of kdlab.deploy's forms against float and quantize_dynamic.

The networks: LeNet-300-100 and LeNet-5 trained on `dataset`, pruned by std with retraining (`iterative_prune`),
their weights shared (`share_weights`) and codebooks fine-tuned, as the course compresses them; torchvision's
resnet18 (ImageNet shape: 3 × `resnet_size`², 1000 classes) and one 9216 → 4096 Linear layer (AlexNet's fc6, the
layer Deep Compression §6.3 timed), both at random initialisation and pruned by magnitude, for latency and
memory only. Each is run at each batch size as

- "float": the float network before compression, eager PyTorch, as a user runs it;
- "torch quantize_dynamic": torch.ao.quantization.quantize_dynamic of that float network (int8 Linear), eager;
- "shared (training form)" (LeNets): the compressed network as share_weights leaves it, eager;
- "kdlab <form>": `deploy(compressed, form)` for each form of kdlab.deploy (TorchScript, frozen); the sparse form
  is deployed for each batch size with an example batch, so that each layer takes the kernel measured faster;
- "kdlab channels+int8" (LeNet-5, resnet18): `prune_channels` of half the filters (LeNet-5 retrained), then int8.

Latency is the median over `repeats` of blocks of calls, the forms timed round-robin (kdlab.timing.median_seconds)
under torch.inference_mode. Memory is measured in a fresh process per form (kdlab/memory_probe.py), from Linux's
/proc/self/status: "model MB" is the resident memory the loaded form adds to a process that has imported torch
and holds the input, "peak MB" the peak resident memory (VmHWM, reset after loading) above the same baseline
while it runs MEMORY_CALLS forward passes: weights, activations and the kernels' buffers. Both include what the
runtimes allocate once per process, which dominates the LeNets' figures: a Conv2d(1, 2, 3)-Linear network of
1,400 weights loads in 4.3 MB as TorchScript and in 12.4 MB as static int8 (measured with this probe). The
shared training form cannot be saved whole (PyTorch pickles no parametrized module): the bytes of its tensors
are reported instead.
"""
from __future__ import annotations

import copy
import gc
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from torch import nn

from .checks import is_int
from .codebook import finetune_codebook, share_weights
from .data import dataset_info, load_dataset, make_loader
from .deploy import FORMS, _quiet_torch, deploy
from .errors import UncompressedWeightWarning
from .layers import CONV, compressible_weights
from .models import build_model
from .prune import iterative_prune, prune_by_fraction, sparsity
from .structured import prune_channels
from .timing import median_seconds
from .train import check_epochs, fit, set_seed

MEMORY_CALLS = 3  # forward passes per batch size in the memory measurement
PROBE = Path(__file__).with_name("memory_probe.py")  # run as a script in a fresh process
BLOCK_SECONDS = 0.02  # a form's timed block runs it about this long (at least one call)
SHARE_BITS = {"fc": 4, "conv": 8}  # as the course's pipeline shares weights
TARGETS = {("lenet300", 1): 2.0, ("resnet18", 32): 1.5}  # the targets: speed-up over float
FC6, FC6_DENSITY = (9216, 4096), 0.09  # AlexNet's fc6, 9 % of its weights kept in Deep Compression (Table 4)
SHARED = "shared (training form)"  # the compressed LeNet as share_weights leaves it, run as it is
MAX_ACCURACY_LOSS = 0.5  # points, for the LeNets


def _check_count(value, name):
    """Raise ValueError unless `value` is an int >= 1; `name` is the argument's name in the message."""
    if not is_int(value) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")


def _accuracy(model, loader):
    """Top-1 accuracy of an inference-only module (eager or TorchScript) on `loader`."""
    correct = seen = 0
    with torch.inference_mode():
        for inputs, labels in loader:
            correct += int((model(inputs).argmax(1) == labels).sum())
            seen += len(labels)
    return correct / seen


def _share_bits(model):
    """{weight key: bits}: SHARE_BITS["conv"] for conv weights, SHARE_BITS["fc"] for the others."""
    return {key: SHARE_BITS["conv" if isinstance(module, CONV) else "fc"]
            for key, module, _ in compressible_weights(model)}


def _deploy_quietly(model, form, **options):
    """deploy(model, form, ...) and the messages of its UncompressedWeightWarnings (the layers it left float)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        deployed = deploy(model, form, **options)
    return deployed, [str(w.message) for w in caught if issubclass(w.category, UncompressedWeightWarning)]


def _reference_forms(net, batches):
    """{"float": the float network, eager; "torch quantize_dynamic": its torch.ao dynamic int8 copy, eager}, each
    as {batch: module}."""
    from torch.ao.quantization import quantize_dynamic

    with _quiet_torch():
        dynamic = quantize_dynamic(copy.deepcopy(net), {nn.Linear}, dtype=torch.qint8)
    return {"float": dict.fromkeys(batches, net), "torch quantize_dynamic": dict.fromkeys(batches, dynamic)}


def _kdlab_forms(compressed, batches, calibration, channels=None):
    """{form name: {batch: module}} of kdlab.deploy's forms of `compressed`, and {form name: {batch: warnings}}."""
    forms, notes = {}, {}
    for form in FORMS:
        if form == "sparse":
            built = {b: _deploy_quietly(compressed, form, example_input=x) for b, x in batches.items()}
        else:
            built = dict.fromkeys(batches, _deploy_quietly(compressed, form, calibration_data=calibration
                                                           if form == "int8" else None))
        forms[f"kdlab {form}"] = {b: module for b, (module, _) in built.items()}
        notes[f"kdlab {form}"] = {b: messages for b, (_, messages) in built.items()}
    if channels is not None:
        module, messages = _deploy_quietly(channels, "int8", calibration_data=calibration)
        forms["kdlab channels+int8"] = dict.fromkeys(batches, module)
        notes["kdlab channels+int8"] = dict.fromkeys(batches, messages)
    return forms, notes


def _block(module, x, calls):
    """A callable running module(x) `calls` times."""
    def run():
        for _ in range(calls):
            module(x)
    return run


def _latencies(forms, batches, repeats):
    """{batch: {form: median seconds per call}}: each batch's forms timed round-robin, each in blocks of calls.

    A form's block runs it about BLOCK_SECONDS (at least once), from the time of one call after two warm-up
    calls (TorchScript's profiling executor optimises its graph on the second).
    """
    out = {}
    with torch.inference_mode():
        for b, x in batches.items():
            modules = {name: per_batch[b] for name, per_batch in forms.items()}
            calls = {}
            for name, module in modules.items():
                module(x)
                module(x)
                began = time.perf_counter()
                module(x)
                calls[name] = max(1, round(BLOCK_SECONDS / max(time.perf_counter() - began, 1e-7)))
            seconds = median_seconds({name: _block(m, x, calls[name]) for name, m in modules.items()}, repeats)
            out[b] = {name: value / calls[name] for name, value in seconds.items()}
    return out


def _memory(forms, batches, threads):
    """{form: {batch: {"model_mb", "peak_mb"}}} measured in a fresh process per module (see the module docstring)."""
    if not sys.platform.startswith("linux"):
        return {}
    with tempfile.TemporaryDirectory() as folder:
        jobs = []
        for name, per_batch in forms.items():
            modules = {}
            for b, module in per_batch.items():
                modules.setdefault(id(module), (module, []))[1].append(b)
            for module, used in modules.values():
                path = Path(folder) / f"{len(jobs)}.pt"
                scripted = isinstance(module, torch.jit.ScriptModule)
                try:
                    (torch.jit.save if scripted else torch.save)(module, path)
                except RuntimeError:  # PyTorch pickles no parametrized (shared) module: no figure for it
                    continue
                shapes = [list(batches[b].shape) for b in used]
                imports = sorted({type(m).__module__.partition(".")[0] for m in module.modules()} - {"torch"})
                jobs.append((name, used, [sys.executable, str(PROBE), json.dumps(
                    {"path": str(path), "scripted": scripted, "shapes": shapes, "threads": threads,
                     "dtype": str(batches[used[0]].dtype), "calls": MEMORY_CALLS, "imports": imports})]))

        def run(job):
            name, used, command = job
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise RuntimeError(f"memory measurement of {name} failed: {done.stderr.strip()[-2000:]}")
            return name, used, json.loads(done.stdout.strip().splitlines()[-1])

        out = {}
        with ThreadPoolExecutor(2) as pool:  # one process per core; each measures only its own memory
            for name, used, measured in pool.map(run, jobs):
                for b, peak in zip(used, measured["peak_mb"]):
                    out.setdefault(name, {})[b] = {"model_mb": measured["model_mb"], "peak_mb": peak}
    return out


def _rows(network, forms, batches, repeats, threads, memory, accuracy=None, notes=None):
    """The table rows of one network: every form at every batch size, with speed-ups against float.

    `accuracy` is None or a function of a module; `notes` is {form: {batch: the warnings deploy gave}}.
    """
    seconds = _latencies(forms, batches, repeats)
    measured = _memory(forms, batches, threads) if memory else {}
    scores, rows = {}, []
    for b in batches:
        for name, per_batch in forms.items():
            row = {"network": network, "batch": b, "form": name, "ms": 1e3 * seconds[b][name],
                   "speedup": seconds[b]["float"] / seconds[b][name],
                   "vs_quantize_dynamic": seconds[b]["torch quantize_dynamic"] / seconds[b][name],
                   **measured.get(name, {}).get(b, {"model_mb": None, "peak_mb": None})}
            if accuracy is not None:
                for module in (forms["float"][b], per_batch[b]):
                    if id(module) not in scores:
                        scores[id(module)] = accuracy(module)
                row["accuracy"] = scores[id(per_batch[b])]
                row["accuracy_loss_points"] = 100 * (scores[id(forms["float"][b])] - row["accuracy"])
            if notes and notes.get(name, {}).get(b):
                row["warnings"] = notes[name][b]
            rows.append(row)
    return rows


def _test_batches(test, sizes):
    """{batch size: the first `size` test images}."""
    return {b: torch.stack([test[i][0] for i in range(min(b, len(test)))]) for b in sizes}


def _state_bytes(model):
    """Bytes of the tensors in model.state_dict(): what a model holds in memory beside its activations."""
    return sum(t.numel() * t.element_size() for t in model.state_dict().values() if isinstance(t, torch.Tensor))


def _lenet(name, data, sizes, repeats, threads, memory, epochs, sensitivities, retrain_epochs, lr, seed,
           channels_amount):
    """Train, compress, deploy and measure one LeNet on `data` (train, test): (its rows, its facts)."""
    train, test = data
    in_shape, num_classes = dataset_info(train)
    loader = make_loader(train, 64, shuffle=True, seed=seed)
    test_loader = make_loader(test, 256)
    calibration = torch.stack([train[i][0] for i in range(min(512, len(train)))])
    began = time.perf_counter()
    set_seed(seed)
    net = build_model(name, num_classes, in_shape)
    fit(net, loader, epochs, lr=1e-3, device="cpu", desc=name)
    net.eval()
    compressed = copy.deepcopy(net)
    iterative_prune(compressed, loader, sensitivities, epochs=retrain_epochs, lr=lr, device="cpu")
    kept = sparsity(compressed)[-1]["kept"]
    share_weights(compressed, _share_bits(compressed))
    finetune_codebook(compressed, loader, 1, lr=1e-4, device="cpu")
    compressed.eval().requires_grad_(False)
    channels = None
    if channels_amount:
        channels = prune_channels(net, channels_amount)
        fit(channels, loader, retrain_epochs, lr=1e-3, device="cpu", desc="retrain channels")
        channels.eval()
    batches = _test_batches(test, sizes)
    forms = _reference_forms(net, batches)
    forms[SHARED] = dict.fromkeys(batches, compressed)
    kdlab_forms, notes = _kdlab_forms(compressed, batches, calibration, channels)
    built = time.perf_counter()
    rows = _rows(name, forms | kdlab_forms, batches, repeats, threads, memory,
                 lambda module: _accuracy(module, test_loader), notes)
    facts = {"epochs": epochs, "sensitivities": list(sensitivities), "retrain_epochs": retrain_epochs, "kept": kept,
             "share_bits": SHARE_BITS, "float_accuracy": rows[0]["accuracy"],
             "compressed_accuracy": next(row["accuracy"] for row in rows if row["form"] == SHARED),
             "calibration_images": len(calibration), "channels_amount": channels_amount,
             "shared_state_bytes": _state_bytes(compressed), "float_state_bytes": _state_bytes(net),
             "seconds": {"train_and_deploy": built - began, "measure": time.perf_counter() - built}}
    return rows, facts


def _random_network(name, net, batches, calibration, repeats, threads, memory, amount, channels=None):
    """Deploy and measure an untrained `net` (latency and memory only), kdlab's forms from a copy pruned by magnitude
    (prune_by_fraction `amount`), "kdlab channels+int8" from `channels`: (its rows, the seconds it took)."""
    began = time.perf_counter()
    pruned = copy.deepcopy(net)
    prune_by_fraction(pruned, amount)
    kdlab_forms, notes = _kdlab_forms(pruned, batches, calibration, channels)
    del pruned
    built = time.perf_counter()
    rows = _rows(name, _reference_forms(net, batches) | kdlab_forms, batches, repeats, threads, memory, notes=notes)
    return rows, {"deploy": built - began, "measure": time.perf_counter() - built}


def bench_deploy(dataset="mnist5k", sizes=(1, 32), repeats=15, resnet_size=224, lenet300_epochs=20, lenet5_epochs=4,
                 sensitivities=(0.75, 1.25, 1.75, 2.25), retrain_epochs=2, lr=2e-3, fc6=True, memory=True, seed=0):
    """Latency, memory and accuracy of every kdlab.deploy form against float and quantize_dynamic (module docstring).

    LeNet-300-100 trains `lenet300_epochs`, LeNet-5 `lenet5_epochs`, each is pruned at `sensitivities` with
    `retrain_epochs` of retraining at `lr` after each step, shared (conv 8 bits, fc 4 bits) and its codebooks
    fine-tuned one epoch; the int8 forms calibrate on 512 training images. LeNet-5's channels+int8 form is
    `prune_channels(float, 0.5)` retrained `retrain_epochs`. Accuracies are on the whole test set, the
    `accuracy_loss_points` against the float network. resnet18 (3 × `resnet_size`²) and, with `fc6`, one
    9216 → 4096 Linear layer (AlexNet's fc6, 9 % kept as in Deep Compression) are measured at random init, with
    fewer repeats (a third). `memory=False` skips the memory processes.
    """
    for value, name in ((repeats, "repeats"), (resnet_size, "resnet_size")):
        _check_count(value, name)
    if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__iter__") or not list(sizes):
        raise ValueError(f"sizes must be a non-empty list of batch sizes, got {sizes!r}")
    sizes = list(sizes)
    for value in sizes:
        _check_count(value, "every batch size in sizes")
    check_epochs(lenet300_epochs, "lenet300_epochs")
    check_epochs(lenet5_epochs, "lenet5_epochs")
    threads = torch.get_num_threads()
    began = time.perf_counter()
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    data = load_dataset(dataset)
    few = max(3, math.ceil(repeats / 3))
    rows, facts = [], {}
    for name, epochs, amount in (("lenet300", lenet300_epochs, None), ("lenet5", lenet5_epochs, 0.5)):
        more, facts[name] = _lenet(name, data, sizes, repeats, threads, memory, epochs, sensitivities,
                                   retrain_epochs, lr, seed, amount)
        rows += more
        gc.collect()
    from torchvision.models import resnet18

    set_seed(seed)
    net = resnet18(weights=None, num_classes=1000).eval()
    shape = (3, resnet_size, resnet_size)
    more, seconds = _random_network("resnet18", net, {b: torch.randn(b, *shape) for b in sizes},
                                    torch.randn(8, *shape), few, threads, memory, 0.9, prune_channels(net, 0.5).eval())
    rows += more
    facts["resnet18"] = {"input": list(shape), "num_classes": 1000, "weights": "random init",
                         "kdlab_source": "pruned to 10% by magnitude (prune_by_fraction 0.9)",
                         "channels_amount": 0.5, "channels_retrained": False, "seconds": seconds}
    if fc6:
        set_seed(seed)
        net = nn.Sequential(nn.Linear(*FC6)).eval()
        more, seconds = _random_network("fc6", net, {b: torch.rand(b, FC6[0]) for b in sizes},
                                        torch.rand(64, FC6[0]), few, threads, memory, 1 - FC6_DENSITY)
        rows += more
        facts["fc6"] = {"input": [FC6[0]], "num_classes": FC6[1], "weights": "random init",
                        "kdlab_source": f"pruned to {FC6_DENSITY:.0%} by magnitude, as Deep Compression's AlexNet fc6",
                        "seconds": seconds}
    return {"dataset": dataset, "torch_threads": threads, "load_average_before": load,
            "load_average_after": os.getloadavg() if hasattr(os, "getloadavg") else None,
            "seconds": time.perf_counter() - began, "memory_calls": MEMORY_CALLS, "networks": facts, "rows": rows,
            "targets": [_target(rows, network, b, speedup) for (network, b), speedup in TARGETS.items() if b in sizes]}


def _target(rows, network, batch, speedup):
    """The fastest kdlab form of `network` at `batch` against the issue's speed-up target: among the forms within
    MAX_ACCURACY_LOSS points of float where accuracy is measured, and, on the random networks, among those that
    compute the same function (not channel pruning, which would need retraining)."""
    mine = [row for row in rows if row["network"] == network and row["batch"] == batch
            and row["form"].startswith("kdlab") and row.get("accuracy_loss_points", 0) <= MAX_ACCURACY_LOSS
            and ("accuracy" in row or "channels" not in row["form"])]
    best = max(mine, key=lambda row: row["speedup"], default=None)
    return {"network": network, "batch": batch, "target_speedup": speedup,
            "best_form": best and best["form"], "speedup": best and best["speedup"],
            "met": bool(best and best["speedup"] >= speedup)}


def deploy_table(results):
    """The rows of bench_deploy's results as a plain-text table, one line per network, batch and form."""
    head = ("network", "batch", "form", "median ms", "vs float", "vs qdyn", "model MB", "peak MB", "accuracy")
    lines = [head]
    for row in results["rows"]:
        accuracy = (f"{100 * row['accuracy']:.1f}% ({-row['accuracy_loss_points']:+.1f} pt)"
                    if "accuracy" in row else "-")
        lines.append((row["network"], str(row["batch"]), row["form"], f"{row['ms']:.3f}", f"{row['speedup']:.2f}x",
                      f"{row['vs_quantize_dynamic']:.2f}x", _mb(row["model_mb"]), _mb(row["peak_mb"]), accuracy))
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    text = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths)) for line in lines]
    for name, facts in results.get("networks", {}).items():
        if "kept" in facts:
            text.append(f"{name}: float {100 * facts['float_accuracy']:.1f}% after {facts['epochs']} epochs; pruned to "
                        f"{100 * facts['kept']:.1f}% of its weights, shared (fc {facts['share_bits']['fc']} bits, conv "
                        f"{facts['share_bits']['conv']} bits): {100 * facts['compressed_accuracy']:.1f}%, holding "
                        f"{facts['shared_state_bytes'] / 1e6:.2f} MB of tensors in its training form (float: "
                        f"{facts['float_state_bytes'] / 1e6:.2f} MB)")
        else:
            text.append(f"{name}: input {'x'.join(map(str, facts['input']))}, {facts['num_classes']} outputs, "
                        f"{facts['weights']}; kdlab forms from a copy {facts['kdlab_source']}")
    text.append(f"torch threads: {results['torch_threads']}; load average before/after: "
                f"{_load(results['load_average_before'])} / {_load(results['load_average_after'])}; "
                f"{results.get('seconds', 0):.0f} s")
    for target in results["targets"]:
        text.append(f"target {target['network']} batch {target['batch']}: >= {target['target_speedup']}x -> "
                    f"{target['best_form']} {target['speedup'] or 0:.2f}x: {'met' if target['met'] else 'NOT met'}")
    return "\n".join(text)


def _mb(value):
    """A memory figure in MB, or "-" when it was not measured."""
    return "-" if value is None else f"{value:.1f}"


def _load(value):
    """A load-average triple as text."""
    return "-" if value is None else "/".join(f"{v:.1f}" for v in value)
