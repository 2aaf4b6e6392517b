"""kdlab: knowledge distillation and Deep Compression, the package behind the course notebooks."""
from .data import DATASETS, OFFLINE_DATASETS, ArrayDataset, dataset_info, load_dataset, make_loader
from .distill import DistillModel, distillation_loss, soft_targets
from .models import MODELS, build_model, count_parameters
from .train import evaluate, fit, get_device, make_optimizer, predict, set_seed

__version__ = "0.1.0"

__all__ = [
    "DATASETS", "OFFLINE_DATASETS", "MODELS", "ArrayDataset", "DistillModel", "build_model",
    "count_parameters", "dataset_info", "distillation_loss", "evaluate", "fit", "get_device",
    "load_dataset", "make_loader", "make_optimizer", "predict", "set_seed", "soft_targets",
]
