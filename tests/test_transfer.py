import pytest
import torch

import kdlab
from kdlab.transfer import mixup_views


def test_the_transfer_set_is_the_images_then_their_blends(digits):
    train, _ = digits
    before = torch.random.get_rng_state()
    views = mixup_views(train, 3, seed=1)
    assert torch.equal(torch.random.get_rng_state(), before)  # the caller's random stream is left alone
    n = len(train)
    assert len(views) == 4 * n and views.num_classes == train.num_classes
    assert torch.equal(views.images[:n], train.images) and torch.equal(views.targets[:n], train.targets)
    assert torch.equal(mixup_views(train, 3, seed=1).images, views.images)  # fixed by the seed
    assert not torch.equal(mixup_views(train, 3, seed=2).images, views.images)


def _as_blend(blend, images):
    """(i, j, lambda) with blend = lambda images[i] + (1 - lambda) images[j], lambda >= 1/2, found among all pairs."""
    for i in range(len(images)):
        for j in range(len(images)):
            step = images[i] - images[j]
            lam = 1.0 if i == j else float(((blend - images[j]) * step).sum() / (step * step).sum())
            if lam >= 0.5 and torch.allclose(lam * images[i] + (1 - lam) * images[j], blend, atol=1e-5):
                return i, j, lam
    return None


def test_each_blend_mixes_two_images_and_carries_the_larger_shares_label(digits):
    train, _ = digits
    small = kdlab.ArrayDataset(train.images[:12], train.targets[:12], train.num_classes)
    views = mixup_views(small, 2, seed=0, batch_size=4)
    images = small.images.double()
    for k in range(12, 36):
        found = _as_blend(views.images[k].double(), images)
        assert found is not None
        i, _, _ = found
        assert views.targets[k] == small.targets[i]


def test_no_views_is_the_training_set_itself(digits):
    train, _ = digits
    views = mixup_views(train, 0)
    assert torch.equal(views.images, train.images) and torch.equal(views.targets, train.targets)


@pytest.mark.parametrize("kwargs, message", [
    ({"dataset": [1, 2]}, "dataset must be a non-empty torch Dataset"),
    ({"views": -1}, "views must be an integer >= 0"),
    ({"views": 1.5}, "views must be an integer >= 0"),
    ({"alpha": 0}, "alpha must be a finite number > 0"),
    ({"alpha": float("inf")}, "alpha must be a finite number > 0"),
    ({"seed": -1}, "seed must be a non-negative integer"),
    ({"batch_size": 1}, "batch_size must be an integer >= 2"),
])
def test_bad_arguments(digits, kwargs, message):
    with pytest.raises(ValueError, match=message):
        mixup_views(**{"dataset": digits[0], **kwargs})


def test_a_torchvision_style_dataset_is_read_example_by_example(digits):
    train, _ = digits
    pairs = torch.utils.data.TensorDataset(train.images[:50], train.targets[:50])
    views = mixup_views(pairs, 1, seed=0, batch_size=10)
    assert len(views) == 100 and torch.equal(views.images[:50], train.images[:50])
    assert kdlab.memo.memoizable(views)
