"""Jittered views of a data set (small random shifts and rotations), drawn afresh every time an image is read.

Hinton et al. (2015, §3) trained their MNIST teacher on inputs jittered by up to two pixels; Beyer et al. (2022,
"Knowledge distillation: A good teacher is patient and consistent") distil on views that teacher and student
see identically ("function matching"). `fit` and `DistillModel` draw each batch once and give the same
tensor to the teacher and the student, so a jittered data set gives both.
"""
from __future__ import annotations

import math

from torch.utils.data import Dataset
from torchvision.transforms import v2

from .checks import is_number


class Jittered(Dataset):
    """`dataset` seen through a random transform per read; its `num_classes` and `targets` stay visible."""

    def __init__(self, dataset, transform):
        self.dataset, self.transform = dataset, transform
        for name in ("num_classes", "targets", "classes"):
            if hasattr(dataset, name):
                setattr(self, name, getattr(dataset, name))

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        image, label = self.dataset[i]
        return self.transform(image), label


def jitter(dataset, degrees=10.0, translate=0.1):
    """A view of `dataset` rotated by up to ±`degrees` and shifted by up to `translate` × its size, per image.

    Uncovered pixels get the background value, the smallest pixel value of the first image (images are
    normalised, so the background is not 0). Random numbers come from torch's global generator, which
    `set_seed` seeds and training checkpoints save.
    """
    if not isinstance(dataset, Dataset) or len(dataset) == 0:
        raise ValueError(f"dataset must be a non-empty torch Dataset, got {type(dataset).__name__}")
    if not is_number(degrees) or not 0 <= degrees <= 180:
        raise ValueError(f"degrees must be a number in [0, 180], got {degrees!r}")
    if not is_number(translate) or not 0 <= translate < 1 or math.isnan(translate):
        raise ValueError(f"translate must be a number in [0, 1), got {translate!r}")
    background = float(dataset[0][0].min())
    transform = v2.RandomAffine(degrees=float(degrees), translate=(float(translate),) * 2, fill=background)
    return Jittered(dataset, transform)
