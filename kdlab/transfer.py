"""A transfer set for distillation: the training images and fixed mixup blends of them (function matching).

Hinton et al. (2015) distil on a "transfer set", which need not be the training set. On a small training set
the teacher's soft targets on the training images say little more than their labels: the teacher fits them
almost exactly. Beyer et al. (2022, "Knowledge distillation: A good teacher is patient and consistent") let the
student match the teacher on mixup blends of the images, which teacher and student see identically; on a blend
the teacher's answer is information no label holds. Here the blends are drawn once, so the set is fixed: the
teacher is run on each image once (`kdlab.memo`), and a student from scratch can train on the very same images.
"""
from __future__ import annotations

import math

import torch
from torch.utils.data import Dataset
from torchvision.transforms import v2

from .checks import is_int, is_number
from .data import ArrayDataset, dataset_info


def _arrays(dataset):
    """(images, labels) tensors of every example of `dataset`, in order."""
    if isinstance(dataset, ArrayDataset):
        return dataset.images, dataset.targets
    images, labels = zip(*(dataset[i] for i in range(len(dataset))))
    return torch.stack([torch.as_tensor(x) for x in images]), torch.as_tensor(labels)


def mixup_views(dataset, views=9, alpha=1.0, seed=0, batch_size=64):
    """`dataset`'s images followed by `views` x len(dataset) mixup blends of them, as an ArrayDataset.

    Each blend is lambda x_i + (1 - lambda) x_j of two training images (torchvision's v2.MixUp: lambda ~
    Beta(alpha, alpha), one per batch of `batch_size` shuffled images, each image blended with its neighbour in
    the batch) and is labelled with the class of the image with the larger share. The blends come from `seed`
    alone; the caller's random generators are left as they were.
    """
    if not isinstance(dataset, Dataset) or len(dataset) == 0:
        raise ValueError(f"dataset must be a non-empty torch Dataset, got {type(dataset).__name__}")
    if not is_int(views) or views < 0:
        raise ValueError(f"views must be an integer >= 0, got {views!r}")
    if not is_number(alpha) or not 0 < alpha < math.inf:
        raise ValueError(f"alpha must be a finite number > 0, got {alpha!r}")
    if not is_int(seed) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if not is_int(batch_size) or batch_size < 2:
        raise ValueError(f"batch_size must be an integer >= 2 (a blend needs two images), got {batch_size!r}")
    images, labels = _arrays(dataset)
    classes = dataset_info(dataset)[1]
    mix = v2.MixUp(alpha=float(alpha), num_classes=classes)
    blends, shares = [images], [labels]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for _ in range(views):
            order = torch.randperm(len(labels))
            for start in range(0, len(order), batch_size):
                batch = order[start:start + batch_size]
                x, soft = mix(images[batch], labels[batch])
                blends.append(x)
                shares.append(soft.argmax(1))
    return ArrayDataset(torch.cat(blends), torch.cat(shares), classes)
