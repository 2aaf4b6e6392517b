import pytest
import torch

import kdlab

SHAPES = {"mnist5k": (1, 28, 28), "digits": (1, 8, 8), "cifar10": (3, 32, 32)}


@pytest.mark.parametrize("name, params", [("lenet300", 266_610), ("lenet5", 431_080)])
def test_deep_compression_parameter_counts(name, params):
    assert kdlab.count_parameters(kdlab.build_model(name)) == params


def test_resnets_are_torchvision_resnets_and_the_student_is_smaller():
    from torchvision.models import ResNet

    teacher, student = kdlab.build_model("resnet18"), kdlab.build_model("resnet10")
    assert isinstance(teacher, ResNet) and isinstance(student, ResNet)
    assert kdlab.count_parameters(student) < 0.5 * kdlab.count_parameters(teacher)
    assert teacher.conv1.in_channels == 1


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
@pytest.mark.parametrize("name", kdlab.MODELS)
def test_every_model_fits_every_dataset_shape(name, shape):
    model = kdlab.build_model(name, num_classes=7, in_shape=shape).eval()
    with torch.no_grad():
        assert model(torch.randn(2, *shape)).shape == (2, 7)
    assert model.kdlab_architecture == {"name": name, "num_classes": 7, "in_shape": list(shape)}


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"name": "vgg"}, "name must be one of"),
        ({"name": "lenet5", "num_classes": 1}, "num_classes must be"),
        ({"name": "lenet5", "in_shape": (28, 28)}, "in_shape must be"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        kdlab.build_model(**kwargs)
