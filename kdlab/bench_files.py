""".kdz files of models the course does not build: random-init torchvision nets and a Transformer text classifier,
pruned at s = 1.0 and shared at 5 bits by k-means and by entropy-constrained k-means, saved, measured, reloaded."""
from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

from .codebook import share_weights
from .container import load_compressed, save_compressed
from .errors import UncompressedWeightWarning
from .kmeans import check_entropy_weight
from .prune import prune_by_std

MODELS = ("resnet18", "mobilenet_v2", "transformer")


class TextClassifier(nn.Module):
    """A two-layer Transformer-encoder classifier of token sequences: embedding, encoder, mean pool, linear head."""

    def __init__(self, vocabulary=10_000, width=128, heads=4, layers=2, classes=10):
        super().__init__()
        self.embed = nn.Embedding(vocabulary, width)
        layer = nn.TransformerEncoderLayer(width, heads, 2 * width, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(width, classes)

    def forward(self, tokens):
        return self.head(self.encoder(self.embed(tokens)).mean(1))


def _model_and_input(name):
    """A random-init model of `name` in eval mode and an input batch for it."""
    import torchvision

    if name == "transformer":
        return TextClassifier().eval(), torch.randint(0, 10_000, (2, 16))
    return getattr(torchvision.models, name)(weights=None).eval(), torch.randn(2, 3, 64, 64)


def bench_files(models=MODELS, entropy_weights=(0.0, 0.01), bits=5, sensitivity=1.0, seed=0):
    """For each model and entropy weight: .kdz bytes, ratio to its float32 parameters, exact reload, raw weights.

    `raw_weights` names the weight tensors save_compressed warned it stored as floats (none is the aim).
    """
    unknown = [name for name in models if name not in MODELS] if isinstance(models, (list, tuple)) else models
    if unknown or not models:
        raise ValueError(f"models must be a list of {', '.join(MODELS)}, got {models!r}")
    for weight in entropy_weights:
        check_entropy_weight(weight)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name in models:
            for weight in entropy_weights:
                torch.manual_seed(seed)
                model, x = _model_and_input(name)
                float_bytes = 4 * sum(p.numel() for p in model.parameters())
                prune_by_std(model, sensitivity)
                share_weights(model, bits, entropy_weight=weight)
                path = Path(folder) / f"{name}.kdz"
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always", UncompressedWeightWarning)
                    save_compressed(model, path)
                reloaded = load_compressed(path, None if name != "transformer" else _model_and_input(name)[0]).eval()
                with torch.no_grad():
                    exact = torch.equal(reloaded(x), model(x))
                rows.append({"model": name, "entropy_weight": weight, "bits": bits, "sensitivity": sensitivity,
                             "float_bytes": float_bytes, "kdz_bytes": path.stat().st_size,
                             "ratio": float_bytes / path.stat().st_size, "reload_exact": exact,
                             "raw_weights": [str(w.message) for w in caught
                                             if issubclass(w.category, UncompressedWeightWarning)]})
    return {"seed": seed, "rows": rows}
