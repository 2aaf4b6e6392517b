"""Structured pruning and low-rank factorisation measured: parameters, test accuracy and CPU inference time."""
from __future__ import annotations

import copy

import torch
from torch import nn

from .checks import is_int
from .data import dataset_info, load_dataset, make_loader
from .lowrank import check_energy, low_rank, rank_for_energy
from .models import build_model, count_parameters
from .structured import check_amount, prune_channels
from .timing import median_seconds
from .train import check_epochs, check_lr, evaluate, fit, set_seed


def _check_count(value, name):
    """Raise ValueError unless `value` is an int >= 1; `name` is the argument's name in the message."""
    if not is_int(value) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")


def bench_structured(dataset="mnist5k", epochs=3, retrain_epochs=2, amounts=(0.25, 0.5, 0.75), energies=(0.9, 0.99),
                     batch=256, repeats=20, lr=1e-3, seed=0, device="cpu"):
    """LeNet-5 under prune_channels and LeNet-300-100 under low_rank: parameters, test accuracy, CPU time.

    Each network is trained `epochs` on `dataset`; each pruned / factorised copy is evaluated as it is and
    after `retrain_epochs` more, and so is a copy of the original (its `retrained_accuracy`: the fair comparison).
    For low_rank, `ranks` are the ranks `energy` picks per layer and `unfactorised` the layers left whole because
    that rank would not save weights. The inference time is the median of `repeats`
    forward passes of `batch` test images on the CPU under torch.inference_mode, timed round-robin with the
    original network (kdlab.timing.median_seconds).
    """
    check_epochs(epochs)
    check_epochs(retrain_epochs, "retrain_epochs")
    for amount in amounts:
        check_amount(amount)
    for energy in energies:
        check_energy(energy)
    _check_count(batch, "batch")
    _check_count(repeats, "repeats")
    check_lr(lr)
    train, test = load_dataset(dataset)
    in_shape, num_classes = dataset_info(train)
    train_loader, test_loader = make_loader(train, 64, shuffle=True, seed=seed), make_loader(test, 256)
    images = torch.stack([test[i][0] for i in range(min(batch, len(test)))])

    def trained(name):
        set_seed(seed)
        model = build_model(name, num_classes, in_shape)
        fit(model, train_loader, epochs, lr=lr, device=device, desc=name)
        return model

    def retrain(model):
        set_seed(seed)  # every retraining sees the same batches: only the networks differ
        train_loader.generator.manual_seed(seed)
        fit(model, train_loader, retrain_epochs, lr=lr, device=device, desc="retrain")

    def measure(model, original):
        accuracy = evaluate(model, test_loader, device)
        model.cpu().eval()
        original.cpu().eval()
        with torch.inference_mode():
            seconds = median_seconds({"original": lambda: original(images), "new": lambda: model(images)}, repeats)
        retrain(model)
        return {"parameters": count_parameters(model), "accuracy": accuracy,
                "retrained_accuracy": evaluate(model, test_loader, device), "seconds": seconds["new"],
                "original_seconds": seconds["original"], "speedup": seconds["original"] / seconds["new"]}

    def factorised(energy):
        model = low_rank(lenet300, energy=energy)
        ranks = {name: rank_for_energy(torch.linalg.svdvals(layer.weight.detach().double()), energy)
                 for name, layer in lenet300.named_modules() if isinstance(layer, nn.Linear)}
        kept = [name for name in ranks if isinstance(model.get_submodule(name), nn.Linear)]
        return {"energy": energy, "ranks": ranks, "unfactorised": kept, **measure(model, lenet300)}

    def original(model):
        retrained = copy.deepcopy(model)
        retrain(retrained)
        return {"parameters": count_parameters(model), "accuracy": evaluate(model, test_loader, device),
                "retrained_accuracy": evaluate(retrained, test_loader, device)}

    lenet5 = trained("lenet5")
    lenet300 = trained("lenet300")
    return {
        "dataset": dataset, "batch": len(images), "torch_threads": torch.get_num_threads(),
        "lenet5": original(lenet5),
        "prune_channels": [{"amount": amount, **measure(prune_channels(lenet5, amount), lenet5)}
                           for amount in amounts],
        "lenet300": original(lenet300),
        "low_rank": [factorised(energy) for energy in energies],
    }
