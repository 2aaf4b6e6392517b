"""Model zoo: LeNet-300-100 and LeNet-5 as in Deep Compression, MLP students, small-image ResNets."""
from __future__ import annotations

import math

from torch import nn
from torchvision.models import resnet18
from torchvision.models.resnet import BasicBlock, ResNet

from .checks import check_module, is_int

MLP_HIDDEN = {"lenet300": (300, 100), "mlp100": (100,), "mlp30": (30,)}
MODELS = ("lenet300", "lenet5", "mlp100", "mlp30", "resnet18", "resnet10")


def mlp(in_features, hidden, num_classes):
    """Fully connected ReLU network: flatten, then one Linear per size in `hidden`, then the classifier."""
    layers, width = [nn.Flatten()], in_features
    for size in hidden:
        layers += [nn.Linear(width, size), nn.ReLU()]
        width = size
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


def lenet5(in_shape, num_classes):
    """Caffe's LeNet-5 used by Deep Compression: conv20-pool-conv50-pool-fc500-relu-fc."""
    channels, height, width = in_shape
    pad = 0 if min(height, width) >= 28 else 2  # small images (8x8 digits) keep their size through the convs

    def size(n):
        return ((n + 2 * pad - 4) // 2 + 2 * pad - 4) // 2

    return nn.Sequential(
        nn.Conv2d(channels, 20, 5, padding=pad),
        nn.MaxPool2d(2),
        nn.Conv2d(20, 50, 5, padding=pad),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(50 * size(height) * size(width), 500),
        nn.ReLU(),
        nn.Linear(500, num_classes),
    )


def small_image_resnet(net, channels):
    """Adapt a torchvision ResNet to small images: a 3x3 stride-1 stem and no max-pool (as for CIFAR)."""
    net.conv1 = nn.Conv2d(channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
    net.maxpool = nn.Identity()
    return net


def build_model(name, num_classes=10, in_shape=(1, 28, 28)):
    """Build model `name` (one of MODELS) for inputs of `in_shape` (C, H, W) and `num_classes` outputs.

    The arguments are kept as `model.kdlab_architecture`, so that a saved .kdz file can rebuild the model.
    """
    if name not in MODELS:
        raise ValueError(f"name must be one of {', '.join(MODELS)}, got {name!r}")
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    shape = () if isinstance(in_shape, str) or not hasattr(in_shape, "__iter__") else tuple(in_shape)
    if len(shape) != 3 or not all(is_int(n) and n >= 1 for n in shape):
        raise ValueError(f"in_shape must be (channels, height, width) of positive ints, got {in_shape!r}")
    in_shape = shape
    if name in MLP_HIDDEN:
        model = mlp(math.prod(in_shape), MLP_HIDDEN[name], num_classes)
    elif name == "lenet5":
        model = lenet5(in_shape, num_classes)
    elif name == "resnet18":
        model = small_image_resnet(resnet18(weights=None, num_classes=num_classes), in_shape[0])
    else:
        model = small_image_resnet(ResNet(BasicBlock, [1, 1, 1, 1], num_classes=num_classes), in_shape[0])
    model.kdlab_architecture = {"name": name, "num_classes": num_classes, "in_shape": [int(v) for v in in_shape]}
    return model


def count_parameters(model):
    """Number of parameters of `model`."""
    check_module(model)
    return sum(p.numel() for p in model.parameters())
