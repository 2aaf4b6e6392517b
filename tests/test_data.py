import socket

import numpy as np
import pytest
import torch

import kdlab
from kdlab.data import MNIST_MEAN, MNIST_STD


def test_mnist5k_split_sizes_and_stratification(mnist5k):
    train, test = mnist5k
    assert (len(train), len(test)) == (4000, 1000)
    assert torch.bincount(test.targets).tolist() == [100] * 10
    assert torch.bincount(train.targets).tolist() == [400] * 10
    x, y = train[0]
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32 and isinstance(y, int)


def test_mnist5k_is_normalised_real_mnist(mnist5k):
    train, _ = mnist5k
    pixels = train.images * MNIST_STD + MNIST_MEAN
    assert pixels.min().item() == pytest.approx(0.0, abs=1e-6)
    assert pixels.max().item() == pytest.approx(1.0, abs=1e-6)
    assert abs(train.images.mean().item()) < 0.1 and abs(train.images.std().item() - 1) < 0.1


def test_split_is_deterministic_and_disjoint(mnist5k):
    train, test = kdlab.load_dataset("mnist5k")
    assert torch.equal(train.images, mnist5k[0].images) and torch.equal(test.targets, mnist5k[1].targets)
    train_rows = {row.numpy().tobytes() for row in train.images}
    assert not any(row.numpy().tobytes() in train_rows for row in test.images)


def test_digits_split(digits):
    train, test = digits
    assert (len(train), len(test)) == (1437, 360)
    assert train[0][0].shape == (1, 8, 8)
    counts_train, counts_test = torch.bincount(train.targets), torch.bincount(test.targets)
    assert np.allclose(counts_test / counts_train, 0.25, atol=0.02)


def test_dataset_info(mnist5k, digits):
    assert kdlab.dataset_info(mnist5k[0]) == ((1, 28, 28), 10)
    assert kdlab.dataset_info(kdlab.make_loader(digits[1], 32)) == ((1, 8, 8), 10)


def test_dataset_name_lists():
    assert kdlab.OFFLINE_DATASETS == ("mnist5k", "digits")
    assert set(kdlab.OFFLINE_DATASETS) < set(kdlab.DATASETS) and "cifar10" in kdlab.DATASETS


def test_unknown_dataset_names_the_allowed_ones():
    with pytest.raises(ValueError, match="name must be one of mnist5k, digits"):
        kdlab.load_dataset("imagenet")


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10"])
def test_torchvision_sets_fail_offline_with_a_clear_message(name, tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    with pytest.raises(RuntimeError, match="offline.*'mnist5k', 'digits'"):
        kdlab.load_dataset(name, root=tmp_path)


def test_array_dataset_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="same length"):
        kdlab.ArrayDataset(np.zeros((3, 1, 2, 2)), [0, 1])


def test_make_loader_rejects_bad_batch_size(digits):
    with pytest.raises(ValueError, match="batch_size"):
        kdlab.make_loader(digits[0], 0)
