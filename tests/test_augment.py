"""Jittered views: a fresh random shift/rotation per read, background fill, the data set's attributes kept."""
import pytest
import torch

import kdlab
from kdlab.augment import jitter


def test_views_differ_per_read_repeat_per_seed_and_keep_labels(mnist5k):
    train, _ = mnist5k
    view = jitter(train)
    assert len(view) == len(train) and view.num_classes == train.num_classes
    torch.manual_seed(0)
    first, label = view[3]
    second, _ = view[3]
    torch.manual_seed(0)
    again, _ = view[3]
    assert label == train[3][1] and first.shape == train[3][0].shape
    assert not torch.equal(first, second), "each read draws a new view"
    assert torch.equal(first, again), "the views follow torch's seed"
    assert kdlab.dataset_info(view) == kdlab.dataset_info(train)


def test_uncovered_pixels_get_the_background_not_zero(mnist5k):
    train, _ = mnist5k
    background = float(train[0][0].min())
    assert background < -0.4  # normalised MNIST: the black background is (0 - mean) / std
    shifted = jitter(train, degrees=0, translate=0.3)
    torch.manual_seed(1)
    image = torch.stack([shifted[i][0] for i in range(20)])
    assert image.min() >= background - 1e-6 and not (image == 0).any()


def test_no_jitter_is_the_identity(digits):
    train, _ = digits
    same = jitter(train, degrees=0, translate=0)
    assert torch.allclose(same[5][0], train[5][0])


@pytest.mark.parametrize("kwargs, message", [
    ({"degrees": -1}, "degrees must be a number in \\[0, 180\\]"),
    ({"degrees": "10"}, "degrees must be"),
    ({"translate": 1.0}, "translate must be a number in \\[0, 1\\)"),
    ({"translate": float("nan")}, "translate must be"),
])
def test_bad_arguments(digits, kwargs, message):
    with pytest.raises(ValueError, match=message):
        jitter(digits[0], **kwargs)


def test_dataset_must_be_a_nonempty_dataset():
    with pytest.raises(ValueError, match="dataset must be a non-empty torch Dataset"):
        jitter([1, 2, 3])
