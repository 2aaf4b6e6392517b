"""kdlab: knowledge distillation and Deep Compression, the package behind the course notebooks."""
from .augment import jitter
from .codebook import (QuantizedLayer, dequantize_model, finetune_codebook, quantize_model, share_weights,
                       shared_layers)
from .container import load_compressed, read_compressed, save_compressed
from .data import DATASETS, OFFLINE_DATASETS, ArrayDataset, dataset_info, load_dataset, make_loader
from .deploy import SparseLinear, deploy
from .distill import DistillModel, distillation_loss, soft_targets
from .energy import count_macs, energy_per_inference
from .errors import CompressedFormatError, UncompressedWeightWarning
from .export import export_onnx, onnx_session, run_onnx
from .huffman import canonical_codes, huffman_code_lengths, huffman_decode, huffman_encode
from .kmeans import init_centroids, kmeans_1d
from .linear import LinearQuantizedLayer, calibrate
from .lowrank import factorize_linear, low_rank, rank_for_energy
from .models import MODELS, build_model, count_parameters
from .params import list_parameter
from .multiseed import run_seeds, summarize
from .prune import (clone_model, current_weight, iterative_prune, l1_penalty, prunable_layers, prune_by_fraction,
                    prune_by_std, remove_masks, sparsity)
from .qat import prepare_qat
from .report import CompressionReport, compression_report
from .seeds import mean_sd, paired_interval, parse_seeds
from .sparse import decode_positions, encode_positions
from .structured import channel_norms, prune_channels
from .timing import median_seconds
from .train import evaluate, fit, get_device, make_optimizer, predict, set_seed
from .transfer import mixup_views
from .variants import Ensemble, hint_loss, multi_teacher_loss, rkd_angle_loss, rkd_distance_loss
from . import exercises  # the course's exercise checks: kdlab.exercises.check_...

__version__ = "0.1.0"

__all__ = [
    "ArrayDataset", "build_model", "calibrate", "canonical_codes", "channel_norms", "clone_model",
    "CompressedFormatError", "compression_report", "CompressionReport", "count_macs", "count_parameters",
    "current_weight", "dataset_info", "DATASETS", "decode_positions", "deploy", "dequantize_model",
    "distillation_loss", "DistillModel", "encode_positions", "energy_per_inference", "Ensemble", "evaluate",
    "export_onnx", "factorize_linear", "finetune_codebook", "fit", "get_device", "hint_loss",
    "huffman_code_lengths", "huffman_decode", "huffman_encode", "init_centroids", "iterative_prune", "jitter",
    "kmeans_1d", "l1_penalty", "LinearQuantizedLayer", "list_parameter", "load_compressed", "load_dataset",
    "low_rank", "make_loader", "make_optimizer", "mean_sd", "median_seconds", "mixup_views", "MODELS",
    "multi_teacher_loss", "OFFLINE_DATASETS", "onnx_session", "paired_interval", "parse_seeds", "predict",
    "prepare_qat", "prunable_layers", "prune_by_fraction", "prune_by_std", "prune_channels", "quantize_model",
    "QuantizedLayer", "rank_for_energy", "read_compressed", "remove_masks", "rkd_angle_loss", "rkd_distance_loss",
    "run_onnx", "run_seeds", "save_compressed", "set_seed", "share_weights", "shared_layers", "soft_targets",
    "SparseLinear", "sparsity", "summarize", "UncompressedWeightWarning",
]
