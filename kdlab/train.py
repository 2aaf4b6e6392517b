"""The one training loop: device choice, seeding, mixed precision, fit and evaluate."""
from __future__ import annotations

import os
import random

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DistributedSampler
from tqdm.auto import tqdm

from . import distributed
from .checkpoint import load_checkpoint, save_checkpoint
from .checks import check_labels, check_module, is_int, is_number

OPTIMIZERS = ("adam", "sgd")


def get_device(device="auto"):
    """Return a torch.device: "auto" picks cuda (under torchrun GPU LOCAL_RANK), then mps, then cpu."""
    if isinstance(device, torch.device) or device != "auto":
        try:
            chosen = torch.device(device)
        except (RuntimeError, TypeError) as error:
            raise ValueError(f"device must be 'auto', 'cpu', 'cuda', 'mps' or 'cuda:N', got {device!r}") from error
        _check_available(chosen)
        return chosen
    if torch.cuda.is_available():
        return torch.device("cuda", distributed.local_rank()) if distributed.launched() else torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _check_available(device):
    """Raise ValueError if `device` is a CUDA or MPS device this machine does not have."""
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (device.index or 0) >= count:
            raise ValueError(f"device must be one this machine has: {str(device)!r} asked for, but it has "
                             f"{count} CUDA device(s); use 'auto' or 'cpu'")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device must be one this machine has: 'mps' asked for, but MPS is not available; "
                         "use 'auto' or 'cpu'")


def set_seed(seed):
    """Seed Python, NumPy and PyTorch (all devices) so CPU runs repeat exactly."""
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def amp_dtype(device):
    """Autocast dtype for `device`: bf16 on CUDA GPUs that support it natively, else fp16; None off CUDA."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float16


def check_epochs(epochs, name="epochs"):
    """Raise ValueError unless `epochs` is an int >= 0; `name` is the argument's name in the message."""
    if not is_int(epochs) or epochs < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {epochs!r}")


def check_lr(lr, name="lr"):
    """Raise ValueError unless the learning rate `lr` is a number > 0; `name` is the argument's name in the message."""
    if not is_number(lr) or not lr > 0:
        raise ValueError(f"{name} must be > 0, got {lr!r}")


def make_optimizer(params, optimizer="adam", lr=1e-3, momentum=0.9, weight_decay=0.0):
    """Adam (default) or SGD with `momentum` over `params`."""
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}")
    check_lr(lr)
    if not is_number(momentum) or not 0 <= momentum < 1:
        raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
    if not is_number(weight_decay) or not weight_decay >= 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}")
    if optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)


def cross_entropy(logits, inputs, labels):
    """The hard-label loss, in the (logits, inputs, labels) form that `fit` calls."""
    return F.cross_entropy(logits, labels)


def fit(model, loader, epochs, optimizer="adam", lr=1e-3, momentum=0.9, loss_fn=cross_entropy,
        device="auto", desc="train", checkpoint=None, frozen=None):
    """Train `model` for `epochs` on `loader`; return one {epoch, loss, train_accuracy} per epoch.

    The loader yields (inputs, labels), labels integer class indices below the model's number of outputs.
    `optimizer` is "adam", "sgd" or a torch Optimizer already holding the model's parameters;
    `loss_fn(logits, inputs, labels)` gives the loss (cross-entropy by default).
    With `checkpoint` (a path), the run is saved there after every epoch and resumed from it if it exists:
    `epochs` counts the whole run, and the history returned includes the resumed epochs. `frozen` is a dict
    of other modules (e.g. the teacher) to save and restore with it.

    Under torchrun it joins the process group (kdlab.distributed), trains the model in DistributedDataParallel on
    this process's share of each epoch (a DistributedSampler, `loader.batch_size` examples per process and step),
    averages the gradients of any other parameters the optimizer holds, sums the history's figures over the
    processes, and lets only rank 0 write the checkpoint.
    """
    check_module(model)
    check_epochs(epochs)
    if len(loader) == 0:
        raise ValueError("loader is empty")
    distributed.init_distributed()
    device = get_device(device)
    model.to(device)
    if isinstance(optimizer, str):
        optimizer = make_optimizer(model.parameters(), optimizer, lr, momentum)
    dtype = amp_dtype(device)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    modules = {"model": model, **(frozen or {})}
    generator = getattr(loader, "generator", None)
    done, history = 0, []
    if checkpoint is not None and os.path.exists(checkpoint):
        done, history = load_checkpoint(checkpoint, modules, optimizer, scaler, generator)
        if done > epochs:
            raise ValueError(f"epochs must be at least the {done} epochs checkpoint {checkpoint} already holds, "
                             f"got {epochs}")
    net, others = model, []
    if distributed.active():
        if not isinstance(loader.sampler, DistributedSampler):  # a loader sharded by the caller stays as it is
            loader = distributed.shard(loader)
        net = distributed.wrap(model, device)
        own = {id(p) for p in model.parameters()}
        others = [p for group in optimizer.param_groups for p in group["params"] if id(p) not in own]
    # one progress bar, rank 0's; TQDM_DISABLE is read here too, as tqdm.notebook ignores it (it passes disable=False)
    off = not distributed.is_main() or os.environ.get("TQDM_DISABLE", "").lower() in ("1", "true", "yes")
    quiet = {"disable": True} if off else {}
    bar = tqdm(total=(epochs - done) * len(loader), desc=desc, leave=False, **quiet)
    for epoch in range(done + 1, epochs + 1):
        model.train()
        if isinstance(loader.sampler, DistributedSampler):
            loader.sampler.set_epoch(epoch)
        total_loss, correct, seen = 0.0, 0, 0
        for batch, (inputs, targets) in enumerate(loader, 1):
            inputs, labels = inputs.to(device, non_blocking=True), targets.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                logits = net(inputs)
                check_labels(targets, logits.shape[1])  # classes on dim 1 (F.cross_entropy); CPU copy: no GPU wait
                loss = loss_fn(logits, inputs, labels)
            value = loss.item()
            if not np.isfinite(value):
                bar.close()
                kept = f"; checkpoint {checkpoint} keeps epoch {epoch - 1}" if checkpoint and epoch > 1 else ""
                raise FloatingPointError(
                    f"loss became {value} at epoch {epoch}, batch {batch}: "
                    f"try a lower learning rate (lr) or temperature{kept}"
                )
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            distributed.average_gradients(others)
            scaler.step(optimizer)
            scaler.update()
            total_loss += value * len(labels)
            correct += (logits.argmax(1) == labels).sum().item()
            seen += len(labels)
            bar.set_postfix(epoch=epoch, loss=f"{value:.4f}", refresh=False)
            bar.update()
        total_loss, correct, seen = distributed.all_reduce_sum([total_loss, correct, seen], device)
        history.append({"epoch": epoch, "loss": total_loss / seen, "train_accuracy": correct / seen})
        if checkpoint is not None:
            if distributed.is_main():
                save_checkpoint(checkpoint, modules, optimizer, scaler, generator, epoch, history)
            distributed.barrier()
    bar.close()
    return history


@torch.no_grad()
def predict(model, loader, device="auto"):
    """Logits of `model` for every input of `loader`, concatenated on the CPU, with the labels."""
    check_module(model)
    if len(loader) == 0:
        raise ValueError("loader is empty")
    device = get_device(device)
    model.to(device).eval()
    dtype = amp_dtype(device)
    outputs, targets = [], []
    for inputs, labels in loader:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            outputs.append(model(inputs.to(device)).float().cpu())
        targets.append(torch.as_tensor(labels))
    return torch.cat(outputs), torch.cat(targets)


def evaluate(model, loader, device="auto"):
    """Top-1 accuracy of `model` on `loader`, a fraction in [0, 1]."""
    logits, labels = predict(model, loader, device)
    check_labels(labels, logits.shape[1])
    return int((logits.argmax(1) == labels).sum()) / len(labels)
