"""kdlab: knowledge distillation and Deep Compression, the package behind the course notebooks."""
from .codebook import (QuantizedLayer, dequantize_model, finetune_codebook, quantize_model, share_weights,
                       shared_layers)
from .container import load_compressed, read_compressed, save_compressed
from .data import DATASETS, OFFLINE_DATASETS, ArrayDataset, dataset_info, load_dataset, make_loader
from .distill import DistillModel, distillation_loss, soft_targets
from .errors import CompressedFormatError
from .huffman import canonical_codes, huffman_code_lengths, huffman_decode, huffman_encode
from .kmeans import init_centroids, kmeans_1d
from .models import MODELS, build_model, count_parameters
from .prune import (clone_model, current_weight, iterative_prune, l1_penalty, prunable_layers, prune_by_fraction,
                    prune_by_std, remove_masks, sparsity)
from .report import CompressionReport, compression_report
from .sparse import decode_positions, encode_positions
from .train import evaluate, fit, get_device, make_optimizer, predict, set_seed

__version__ = "0.1.0"

__all__ = [
    "DATASETS", "MODELS", "OFFLINE_DATASETS", "ArrayDataset", "build_model", "canonical_codes", "clone_model",
    "CompressedFormatError", "compression_report", "CompressionReport", "count_parameters", "current_weight",
    "dataset_info", "decode_positions", "dequantize_model", "distillation_loss", "DistillModel",
    "encode_positions", "evaluate", "finetune_codebook", "fit", "get_device", "huffman_code_lengths",
    "huffman_decode", "huffman_encode", "init_centroids", "iterative_prune", "kmeans_1d", "l1_penalty",
    "load_compressed", "load_dataset", "make_loader", "make_optimizer", "predict", "prunable_layers",
    "prune_by_fraction", "prune_by_std", "quantize_model", "QuantizedLayer", "read_compressed", "remove_masks",
    "save_compressed", "set_seed", "share_weights", "shared_layers", "soft_targets", "sparsity",
]
