"""Post-training quantization measured: test accuracy and saved bytes of linear- and log-quantized models."""
from __future__ import annotations

import io
import itertools

import torch
from torch.utils.data import Subset

from .checks import is_int
from .codebook import quantize_model
from .data import dataset_info, load_dataset, make_loader
from .models import build_model
from .train import evaluate, fit, set_seed

OBSERVERS = (None, "minmax", "percentile")  # None: weights only, the inputs stay float


def saved_bytes(model):
    """Bytes of torch.save(model.state_dict())."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


def bench_ptq(dataset="mnist5k", model="lenet5", epochs=5, bits=(8, 4, 2), schemes=("linear", "log"),
              calibration_size=1000, batch_size=64, lr=1e-3, seed=0, device="cpu"):
    """Train `model` on `dataset` with `fit`, then quantize it after training (PTQ) in every setting.

    One row per scheme, bits, per_channel and observer (None: weights only; "minmax"; "percentile"), with the
    test accuracy, its drop from the float model's in points, the torch.save'd state_dict bytes and their fraction
    of the float model's. The inputs are calibrated on the first `calibration_size` training images.
    """
    if not is_int(calibration_size) or calibration_size < 1:
        raise ValueError(f"calibration_size must be an int >= 1, got {calibration_size!r}")
    set_seed(seed)
    train, test = load_dataset(dataset)
    in_shape, num_classes = dataset_info(train)
    net = build_model(model, num_classes, in_shape)
    history = fit(net, make_loader(train, batch_size, shuffle=True, seed=seed), epochs, lr=lr, device=device)
    test_loader = make_loader(test, 256)
    float_accuracy, float_bytes = evaluate(net, test_loader, device), saved_bytes(net)
    calibration = Subset(train, range(min(calibration_size, len(train))))
    rows = []
    for scheme, b, per_channel, observer in itertools.product(schemes, bits, (True, False), OBSERVERS):
        quantized = quantize_model(net, b, scheme=scheme, per_channel=per_channel, observer=observer or "minmax",
                                   calibration_data=None if observer is None else calibration)
        accuracy, size = evaluate(quantized, test_loader, device), saved_bytes(quantized)
        rows.append({"scheme": scheme, "bits": b, "per_channel": per_channel, "observer": observer,
                     "accuracy": accuracy, "accuracy_drop_points": 100 * (float_accuracy - accuracy),
                     "bytes": size, "size_ratio": size / float_bytes})
    return {"dataset": dataset, "model": model, "epochs": epochs, "calibration_images": len(calibration),
            "train_loss": history[-1]["loss"] if history else None, "float_accuracy": float_accuracy,
            "float_bytes": float_bytes, "rows": rows}
