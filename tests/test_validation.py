"""Every public function refuses a bad argument with a ValueError that names the argument and says what is allowed.

One table: (id, a call with one bad argument, the regex its message must match). The calls are cheap: tiny
random data, the mlp30 model on 8x8 inputs, and pipelines set up to stop at once if a check were missing.
"""
import math

import numpy as np
import pytest
import torch
from torch import nn

import kdlab
from kdlab.pipeline import run_distillation, run_pipeline
from kdlab.report import journey_figure, stage_table

NAN = math.nan
VALUES = torch.linspace(-1, 1, 50)
X, Y = torch.randn(20, 1, 8, 8, generator=torch.Generator().manual_seed(0)), torch.arange(20) % 10
EMPTY = kdlab.ArrayDataset(np.zeros((0, 1, 8, 8)), np.zeros(0, int), num_classes=10)
FAST = {"dataset": "digits", "teacher": "mlp30", "student": "mlp30", "teacher_epochs": 0, "epochs": 0,
        "device": "cpu"}  # were a check missing, the run would end in seconds, in the test's temporary folder
FAST_PIPELINE = {**FAST, "sensitivities": [0.5], "retrain_epochs": 0, "finetune_epochs": 0, "out": "out"}
STAGES = [{"name": "teacher", "accuracy": 0.9, "bytes": 1000, "seconds": 1.0}]


def _model():
    return kdlab.build_model("mlp30", in_shape=(1, 8, 8))


def _loader(dataset=None):
    return kdlab.make_loader(dataset if dataset is not None else kdlab.ArrayDataset(X, Y, 10), 10)


def _nan_model(value=NAN, layer=3):
    """_model() with one bad weight in a layer: "1" the hidden one, "3" the last."""
    model = _model()
    with torch.no_grad():
        model[layer].weight[0, 0] = value
    return model


def _labelled(labels):
    """A loader of X with these labels, as a TensorDataset keeps them (no ArrayDataset check on the way)."""
    return kdlab.make_loader(torch.utils.data.TensorDataset(X, labels), 10)


def _shared():
    return kdlab.share_weights(_model(), 2)


def _kd(**kwargs):
    return kdlab.DistillModel(**{"source_data": X, "hard_labels": Y, "teacher": "mlp30", "student": "mlp30",
                                 "device": "cpu", **kwargs})


def _pipeline(**bad):
    return run_pipeline(**{**FAST_PIPELINE, **bad})


def _distillation(**bad):
    return run_distillation(**{**FAST, **bad})


TABLE = [
    # kmeans
    ("kmeans_1d k=0", lambda: kdlab.kmeans_1d(VALUES, 0), r"^k must be an int >= 1, got 0"),
    ("kmeans_1d k=2.5", lambda: kdlab.kmeans_1d(VALUES, 2.5), r"^k must be an int >= 1, got 2\.5"),
    ("kmeans_1d k=True", lambda: kdlab.kmeans_1d(VALUES, True), r"^k must be an int >= 1, got True"),
    ("kmeans_1d init", lambda: kdlab.kmeans_1d(VALUES, 4, init="kmeans++"), r"^init must be one of 'linear', "),
    ("kmeans_1d empty", lambda: kdlab.kmeans_1d(torch.zeros(0), 4), r"^values must be a non-empty array"),
    ("kmeans_1d NaN", lambda: kdlab.kmeans_1d([0.0, NAN], 2), r"^values must be .*finite floats, got 1 NaN"),
    ("kmeans_1d strings", lambda: kdlab.kmeans_1d(["a", "b"], 2), r"^values must be .*array of .*floats"),
    ("kmeans_1d max_iter", lambda: kdlab.kmeans_1d(VALUES, 4, max_iter=0), r"^max_iter must be an int >= 1"),
    ("kmeans_1d entropy_weight<0", lambda: kdlab.kmeans_1d(VALUES, 4, entropy_weight=-0.1),
     r"^entropy_weight must be a finite number >= 0, got -0\.1"),
    ("kmeans_1d entropy_weight inf", lambda: kdlab.kmeans_1d(VALUES, 4, entropy_weight=float("inf")),
     r"^entropy_weight must be a finite number >= 0, got inf"),
    ("kmeans_1d entropy_weight str", lambda: kdlab.kmeans_1d(VALUES, 4, entropy_weight="0.01"),
     r"^entropy_weight must be a finite number >= 0"),
    ("kmeans_1d entropy_weight optimal", lambda: kdlab.kmeans_1d(VALUES, 4, method="optimal", entropy_weight=0.1),
     r"^entropy_weight > 0 needs method='lloyd', got method='optimal'"),
    ("kmeans_1d tol<0", lambda: kdlab.kmeans_1d(VALUES, 4, tol=-1), r"^tol must be >= 0"),
    ("kmeans_1d tol NaN", lambda: kdlab.kmeans_1d(VALUES, 4, tol=NAN), r"^tol must be >= 0"),
    ("kmeans_1d seed=-1", lambda: kdlab.kmeans_1d(VALUES, 4, "random", seed=-1), r"^seed must be a non-negative int"),
    ("kmeans_1d seed=1.5", lambda: kdlab.kmeans_1d(VALUES, 4, "random", seed=1.5), r"^seed must be a non-negative int"),
    ("init_centroids k=0", lambda: kdlab.init_centroids(VALUES, 0), r"^k must be an int >= 1, got 0"),
    ("init_centroids k=1.5", lambda: kdlab.init_centroids(VALUES, 1.5), r"^k must be an int >= 1, got 1\.5"),
    ("init_centroids init", lambda: kdlab.init_centroids(VALUES, 2, "uniform"), r"^init must be one of 'linear'"),
    ("init_centroids empty", lambda: kdlab.init_centroids([], 2), r"^values must be a non-empty array"),
    ("init_centroids k>distinct", lambda: kdlab.init_centroids([1.0, 2.0], 3, "random"),
     r"^k must be <= the number of distinct values \(2\)"),
    ("init_centroids seed", lambda: kdlab.init_centroids(VALUES, 2, "random", seed="0"),
     r"^seed must be a non-negative integer, got '0'"),

    # codebook
    ("share_weights bits=0", lambda: kdlab.share_weights(_model(), 0), r"^bits must be an int in 1\.\.15, got 0"),
    ("share_weights bits=16", lambda: kdlab.share_weights(_model(), 16), r"^bits must be an int in 1\.\.15, got 16"),
    ("share_weights bits=2.5", lambda: kdlab.share_weights(_model(), 2.5), r"^bits must be an int in 1\.\.15"),
    ("share_weights bits=True", lambda: kdlab.share_weights(_model(), True), r"^bits must be an int in 1\.\.15"),
    ("share_weights bits='4'", lambda: kdlab.share_weights(_model(), "4"), r"^bits must be an int in 1\.\.15"),
    ("share_weights bits dict value", lambda: kdlab.share_weights(_model(), {"1": 0}),
     r"^bits\['1'\] must be an int in 1\.\.15"),
    ("share_weights bits dict layer", lambda: kdlab.share_weights(_model(), {"fc9": 4}),
     r"^bits must name compressible weights of the model \(1, 3\), got fc9"),
    ("share_weights init", lambda: kdlab.share_weights(_model(), 2, init="uniform"), r"^init must be one of"),
    ("share_weights seed", lambda: kdlab.share_weights(_model(), 2, seed=-1), r"^seed must be a non-negative integer"),
    ("share_weights entropy_weight", lambda: kdlab.share_weights(_model(), 2, entropy_weight=NAN),
     r"^entropy_weight must be a finite number >= 0, got nan"),
    ("share_weights twice", lambda: kdlab.share_weights(_shared(), 2), r"^model already has shared weights"),
    ("share_weights model", lambda: kdlab.share_weights("mlp30", 2), r"^model must be a torch\.nn\.Module"),
    ("quantize_model bits=0", lambda: kdlab.quantize_model(_model(), 0), r"^bits must be an int in 1\.\.16, got 0"),
    ("quantize_model bits=17", lambda: kdlab.quantize_model(_model(), 17), r"^bits must be an int in 1\.\.16"),
    ("quantize_model bits=8.0", lambda: kdlab.quantize_model(_model(), 8.0), r"^bits must be an int in 1\.\.16"),
    ("quantize_model init", lambda: kdlab.quantize_model(_model(), 2, init="uniform"), r"^init must be one of"),
    ("quantize_model model", lambda: kdlab.quantize_model(None, 2), r"^model must be a torch\.nn\.Module"),
    ("QuantizedLayer bits=0", lambda: kdlab.QuantizedLayer(nn.Linear(4, 2), 0), r"^bits must be an int in 1\.\.16"),
    ("QuantizedLayer bits=17", lambda: kdlab.QuantizedLayer(nn.Linear(4, 2), 17), r"^bits must be an int in 1\.\.16"),
    ("QuantizedLayer layer", lambda: kdlab.QuantizedLayer(nn.ReLU(), 4),
     r"^layer must be an nn\.Linear or nn\.Conv1d/2d/3d"),
    ("dequantize_model model", lambda: kdlab.dequantize_model("net"), r"^model must be a torch\.nn\.Module"),
    ("shared_layers model", lambda: kdlab.shared_layers("net"), r"^model must be a torch\.nn\.Module"),
    ("finetune_codebook epochs=-1", lambda: kdlab.finetune_codebook(_shared(), _loader(), -1),
     r"^epochs must be a non-negative integer, got -1"),
    ("finetune_codebook epochs=1.5", lambda: kdlab.finetune_codebook(_shared(), _loader(), 1.5),
     r"^epochs must be a non-negative integer, got 1\.5"),
    ("finetune_codebook lr", lambda: kdlab.finetune_codebook(_shared(), _loader(), 1, lr=0), r"^lr must be > 0"),
    ("finetune_codebook momentum", lambda: kdlab.finetune_codebook(_shared(), _loader(), 1, optimizer="sgd",
                                                                   momentum=1.0), r"^momentum must be in \[0, 1\)"),
    ("finetune_codebook optimizer", lambda: kdlab.finetune_codebook(_shared(), _loader(), 1, optimizer="rmsprop"),
     r"^optimizer must be one of adam, sgd"),
    ("finetune_codebook empty", lambda: kdlab.finetune_codebook(_shared(), _loader(EMPTY), 1), r"^loader is empty"),
    ("finetune_codebook unshared", lambda: kdlab.finetune_codebook(_model(), _loader(), 1),
     r"^model has no shared weights"),

    # container (kdlab/container.py)
    ("save_compressed model", lambda: kdlab.save_compressed("mlp30", "m.kdz"), r"^model must be a torch\.nn\.Module"),
    ("save_compressed path", lambda: kdlab.save_compressed(_model(), 42), r"^path must be a str or os\.PathLike"),
    ("save_compressed position_bits=0", lambda: kdlab.save_compressed(_model(), "m.kdz", {"fc": 0}),
     r"^position_bits must map 'conv' and/or 'fc' to ints in 1\.\.16"),
    ("save_compressed position_bits=2.5", lambda: kdlab.save_compressed(_model(), "m.kdz", {"conv": 2.5}),
     r"^position_bits must map 'conv' and/or 'fc' to ints in 1\.\.16"),
    ("save_compressed position_bits key", lambda: kdlab.save_compressed(_model(), "m.kdz", {"rnn": 4}),
     r"^position_bits must map 'conv' and/or 'fc' to ints in 1\.\.16"),
    ("save_compressed position_bits=5", lambda: kdlab.save_compressed(_model(), "m.kdz", 5),
     r"^position_bits must map 'conv' and/or 'fc' to ints in 1\.\.16"),
    ("save_compressed position_bits=True", lambda: kdlab.save_compressed(_model(), "m.kdz", {"fc": True}),
     r"^position_bits must map 'conv' and/or 'fc' to ints in 1\.\.16"),
    ("load_compressed model", lambda: kdlab.load_compressed("m.kdz", model="mlp30"), r"^model must be a torch\.nn\.M"),
    ("load_compressed path", lambda: kdlab.load_compressed(None), r"^path must be a str or os\.PathLike"),
    ("read_compressed path", lambda: kdlab.read_compressed(42), r"^path must be a str or os\.PathLike"),

    # data
    ("load_dataset name", lambda: kdlab.load_dataset("imagenet"), r"^name must be one of mnist5k, digits, mnist"),
    ("load_dataset None", lambda: kdlab.load_dataset(None), r"^name must be one of mnist5k, digits"),
    ("make_loader batch_size=0", lambda: kdlab.make_loader(EMPTY, 0), r"^batch_size must be an int >= 1, got 0"),
    ("make_loader batch_size=2.5", lambda: kdlab.make_loader(EMPTY, 2.5), r"^batch_size must be an int >= 1"),
    ("make_loader batch_size='64'", lambda: kdlab.make_loader(EMPTY, "64"), r"^batch_size must be an int >= 1"),
    ("make_loader seed", lambda: kdlab.make_loader(EMPTY, 8, seed=1.5), r"^seed must be a non-negative integer"),
    ("ArrayDataset 1-D images", lambda: kdlab.ArrayDataset(np.zeros(3), [0, 1, 2]),
     r"^images must have at least 2 dimensions"),
    ("ArrayDataset lengths", lambda: kdlab.ArrayDataset(np.zeros((3, 1, 2, 2)), [0, 1]),
     r"^images and labels must have the same length, got 3 and 2"),
    ("ArrayDataset empty", lambda: kdlab.ArrayDataset(np.zeros((0, 1, 2, 2)), []),
     r"^num_classes must be given when there are no labels"),
    ("ArrayDataset negative label", lambda: kdlab.ArrayDataset(np.zeros((2, 4)), [0, -1]), r"^labels must be >= 0"),
    ("ArrayDataset num_classes", lambda: kdlab.ArrayDataset(np.zeros((2, 4)), [0, 5], num_classes=3),
     r"^num_classes must be an int > the largest label \(5\), got 3"),
    ("dataset_info empty", lambda: kdlab.dataset_info(EMPTY), r"^dataset is empty"),

    # distill
    ("soft_targets T=0", lambda: kdlab.soft_targets(torch.zeros(2, 3), 0), r"^temperature must be > 0, got 0"),
    ("soft_targets T<0", lambda: kdlab.soft_targets(torch.zeros(2, 3), -1), r"^temperature must be > 0"),
    ("soft_targets T NaN", lambda: kdlab.soft_targets(torch.zeros(2, 3), NAN), r"^temperature must be > 0"),
    ("soft_targets logits", lambda: kdlab.soft_targets([1.0, 2.0], 1), r"^logits must be a torch\.Tensor"),
    ("distillation_loss shapes", lambda: kdlab.distillation_loss(torch.zeros(4, 10), torch.zeros(4, 5),
                                                                 torch.zeros(4, dtype=torch.long)),
     r"^student_logits and teacher_logits must have the same shape, got \(4, 10\) and \(4, 5\)"),
    ("distillation_loss labels", lambda: kdlab.distillation_loss(torch.zeros(4, 10), torch.zeros(4, 10),
                                                                 torch.zeros(3, dtype=torch.long)),
     r"^labels must have shape \(4,\)"),
    ("distillation_loss T=0", lambda: kdlab.distillation_loss(torch.zeros(4, 10), torch.zeros(4, 10),
                                                              torch.zeros(4, dtype=torch.long), 0),
     r"^temperature must be > 0"),
    ("distillation_loss alpha", lambda: kdlab.distillation_loss(torch.zeros(4, 10), torch.zeros(4, 10),
                                                                torch.zeros(4, dtype=torch.long), alpha=1.5),
     r"^alpha must be in \[0, 1\], got 1\.5"),
    ("distillation_loss list", lambda: kdlab.distillation_loss([[0.0]], torch.zeros(1, 1), torch.zeros(1)),
     r"^student_logits must be a torch\.Tensor"),
    ("DistillModel empty tensor", lambda: _kd(source_data=X[:0], hard_labels=Y[:0]), r"^source_data is empty"),
    ("DistillModel empty Dataset", lambda: kdlab.DistillModel(EMPTY, teacher="mlp30", student="mlp30"),
     r"^source_data is empty"),
    ("DistillModel no labels", lambda: _kd(hard_labels=None), r"^hard_labels are required"),
    ("DistillModel labels length", lambda: _kd(hard_labels=Y[:5]),
     r"^source_data and hard_labels must have the same length, got 20 and 5"),
    ("DistillModel teacher name", lambda: _kd(teacher="vgg"), r"^teacher must be one of lenet300, lenet5, "),
    ("DistillModel student name", lambda: _kd(student="vgg"), r"^student must be one of lenet300, lenet5, "),
    ("DistillModel teacher type", lambda: _kd(teacher=42), r"^teacher must be .*an nn\.Module"),
    ("DistillModel temperature", lambda: _kd(temperature=0), r"^temperature must be > 0"),
    ("DistillModel alpha", lambda: _kd(alpha=-0.5), r"^alpha must be in \[0, 1\]"),
    ("DistillModel batch_size", lambda: _kd(batch_size=0), r"^batch_size must be an int >= 1"),
    ("DistillModel lr", lambda: _kd(lr=0), r"^lr must be > 0"),
    ("DistillModel momentum", lambda: _kd(momentum=1.0), r"^momentum must be in \[0, 1\)"),
    ("DistillModel optimizer", lambda: _kd(optimizer="rmsprop"), r"^optimizer must be one of adam, sgd"),
    ("DistillModel seed=-1", lambda: _kd(seed=-1), r"^seed must be a non-negative integer"),
    ("DistillModel seed=1.5", lambda: _kd(seed=1.5), r"^seed must be a non-negative integer"),
    ("DistillModel device", lambda: _kd(device="gpu7"), r"^device must be 'auto', 'cpu'"),
    ("DistillModel.train epochs=-1", lambda: _kd().train(-1), r"^epochs must be a non-negative integer, got -1"),
    ("DistillModel.train epochs=1.5", lambda: _kd().train(1.5), r"^epochs must be a non-negative integer"),
    ("DistillModel.train_teacher epochs", lambda: _kd().train_teacher(-2), r"^epochs must be a non-negative integer"),
    ("DistillModel.evaluate empty", lambda: _kd().evaluate(X[:0], Y[:0]), r"^inputs is empty"),
    ("DistillModel.evaluate no labels", lambda: _kd().evaluate(X), r"^labels are required when inputs is a tensor"),
    ("DistillModel.evaluate labels length", lambda: _kd().evaluate(X, Y[:3]),
     r"^inputs and labels must have the same length, got 20 and 3"),

    # huffman (kdlab/huffman.py)
    ("huffman_encode negative", lambda: kdlab.huffman_encode(np.array([-1, 2])), r"^symbols must be integers in 0"),
    ("huffman_encode 65536", lambda: kdlab.huffman_encode(np.array([65536])), r"^symbols must be integers in 0\.\.6"),
    ("huffman_encode floats", lambda: kdlab.huffman_encode(np.array([0.5])), r"^symbols must be integers in 0\.\.6"),
    ("huffman_encode 2-D", lambda: kdlab.huffman_encode(np.zeros((2, 2), int)), r"^symbols must be a 1-D array"),
    ("huffman_code_lengths negative", lambda: kdlab.huffman_code_lengths([3, -1]), r"^counts must be >= 0"),
    ("huffman_code_lengths floats", lambda: kdlab.huffman_code_lengths([0.5]), r"^counts must be a 1-D array of int"),
    ("huffman_code_lengths max_length", lambda: kdlab.huffman_code_lengths([1, 1], max_length=0),
     r"^max_length must be an integer >= 1"),
    ("huffman_code_lengths max_length=True", lambda: kdlab.huffman_code_lengths([1, 1], max_length=True),
     r"^max_length must be an integer >= 1, .*got True"),
    ("canonical_codes lengths", lambda: kdlab.canonical_codes([33, 1]), r"^lengths must be in 0\.\.32"),
    ("canonical_codes Kraft", lambda: kdlab.canonical_codes([1, 1, 1]), r"^lengths must satisfy Kraft's inequality"),
    ("huffman_decode damaged", lambda: kdlab.huffman_decode(b"not a stream"), r"^not a kdlab Huffman stream"),
    ("huffman_decode str", lambda: kdlab.huffman_decode("HF"), r"^data must be bytes"),

    # models
    ("build_model name", lambda: kdlab.build_model("vgg"), r"^name must be one of lenet300, lenet5, "),
    ("build_model num_classes=1", lambda: kdlab.build_model("mlp30", 1), r"^num_classes must be an integer >= 2"),
    ("build_model num_classes=2.5", lambda: kdlab.build_model("mlp30", 2.5), r"^num_classes must be an integer >= 2"),
    ("build_model in_shape 2-D", lambda: kdlab.build_model("lenet5", in_shape=(28, 28)),
     r"^in_shape must be \(channels, height, width\) of positive ints"),
    ("build_model in_shape zero", lambda: kdlab.build_model("mlp30", in_shape=(1, 0, 28)),
     r"^in_shape must be \(channels, height, width\) of positive ints"),
    ("build_model in_shape int", lambda: kdlab.build_model("mlp30", in_shape=28),
     r"^in_shape must be \(channels, height, width\) of positive ints, got 28"),
    ("build_model in_shape floats", lambda: kdlab.build_model("lenet5", in_shape=(1.5, 28, 28)),
     r"^in_shape must be \(channels, height, width\) of positive ints"),
    ("build_model in_shape str", lambda: kdlab.build_model("mlp30", in_shape="abc"),
     r"^in_shape must be \(channels, height, width\) of positive ints"),
    ("count_parameters model", lambda: kdlab.count_parameters("mlp30"), r"^model must be a torch\.nn\.Module"),

    # prune
    ("prune_by_std negative", lambda: kdlab.prune_by_std(_model(), -1), r"^sensitivity must be >= 0, got -1"),
    ("prune_by_std NaN", lambda: kdlab.prune_by_std(_model(), NAN), r"^sensitivity must be >= 0, got nan"),
    ("prune_by_std str", lambda: kdlab.prune_by_std(_model(), "1"), r"^sensitivity must be >= 0, got '1'"),
    ("prune_by_std None", lambda: kdlab.prune_by_std(_model(), None), r"^sensitivity must be >= 0"),
    ("prune_by_std layers", lambda: kdlab.prune_by_std(_model(), 1, layers=["fc9"]),
     r"^layers must name compressible weights of the model \(1, 3\), got fc9"),
    ("prune_by_std model", lambda: kdlab.prune_by_std("mlp30", 1), r"^model must be a torch\.nn\.Module"),
    ("prune_by_std NaN weight", lambda: kdlab.prune_by_std(_nan_model(), 1.0),
     r"^model must have finite weights to be pruned: layer 3 has 1 NaN or infinite weight\(s\)"),
    ("prune_by_fraction inf weight", lambda: kdlab.prune_by_fraction(_nan_model(math.inf), 0.5),
     r"^model must have finite weights to be pruned: layer 3 has 1 NaN"),
    ("iterative_prune NaN weight", lambda: kdlab.iterative_prune(_nan_model(), _loader(), [1.0], 0),
     r"^model must have finite weights to be pruned: layer 3"),
    ("prune_channels -inf weight", lambda: kdlab.prune_channels(_nan_model(-math.inf, 1), 0.5),
     r"^model must have finite weights to be pruned: layer 1 has 1 NaN"),
    ("prune_by_fraction 1.5", lambda: kdlab.prune_by_fraction(_model(), 1.5), r"^amount must be in \[0, 1\]"),
    ("prune_by_fraction -0.1", lambda: kdlab.prune_by_fraction(_model(), -0.1), r"^amount must be in \[0, 1\]"),
    ("prune_by_fraction NaN", lambda: kdlab.prune_by_fraction(_model(), NAN), r"^amount must be in \[0, 1\]"),
    ("prune_by_fraction str", lambda: kdlab.prune_by_fraction(_model(), "0.5"), r"^amount must be in \[0, 1\], got '0"),
    ("iterative_prune negative", lambda: kdlab.iterative_prune(_model(), _loader(), [0.5, -1], device="cpu"),
     r"^sensitivities must be a non-empty sequence of numbers >= 0, got \[0\.5, -1\]"),
    ("iterative_prune NaN", lambda: kdlab.iterative_prune(_model(), _loader(), [NAN], device="cpu"),
     r"^sensitivities must be a non-empty sequence of numbers >= 0"),
    ("iterative_prune empty", lambda: kdlab.iterative_prune(_model(), _loader(), [], device="cpu"),
     r"^sensitivities must be a non-empty sequence of numbers >= 0, got \[\]"),
    ("iterative_prune scalar", lambda: kdlab.iterative_prune(_model(), _loader(), 0.5, device="cpu"),
     r"^sensitivities must be a non-empty sequence of numbers >= 0, got 0\.5"),
    ("iterative_prune epochs=-1", lambda: kdlab.iterative_prune(_model(), _loader(), [0.5], -1, device="cpu"),
     r"^epochs must be a non-negative integer, got -1"),
    ("iterative_prune epochs=1.5", lambda: kdlab.iterative_prune(_model(), _loader(), [0.5], 1.5, device="cpu"),
     r"^epochs must be a non-negative integer, got 1\.5"),
    ("iterative_prune lr", lambda: kdlab.iterative_prune(_model(), _loader(), [0.5], 1, lr=0, device="cpu"),
     r"^lr must be > 0"),
    ("iterative_prune empty loader", lambda: kdlab.iterative_prune(_model(), _loader(EMPTY), [0.5], device="cpu"),
     r"^loader is empty"),
    ("prunable_layers model", lambda: kdlab.prunable_layers(42), r"^model must be a torch\.nn\.Module"),
    ("sparsity model", lambda: kdlab.sparsity("mlp30"), r"^model must be a torch\.nn\.Module"),
    ("l1_penalty model", lambda: kdlab.l1_penalty(None), r"^model must be a torch\.nn\.Module"),
    ("remove_masks model", lambda: kdlab.remove_masks([]), r"^model must be a torch\.nn\.Module"),
    ("clone_model model", lambda: kdlab.clone_model({}), r"^model must be a torch\.nn\.Module"),
    ("current_weight module", lambda: kdlab.current_weight(nn.ReLU()),
     r"^module must be an nn\.Module with a weight tensor"),

    # report
    ("compression_report array", lambda: kdlab.compression_report(np.zeros(3)),
     r"^model_or_path must be an nn\.Module or the path of a \.kdz file, got ndarray"),
    ("compression_report int", lambda: kdlab.compression_report(42), r"^model_or_path must be an nn\.Module or the"),
    ("stage_table list", lambda: stage_table([]), r"^report must be a pipeline report"),
    ("stage_table keys", lambda: stage_table({"stages": STAGES}), r"^report must be a pipeline report"),
    ("stage_table stage row", lambda: stage_table({"student_distilled": {"float32_bytes": 10}, "stages": [{}]}),
     r"^report must be a pipeline report"),
    ("journey_figure str", lambda: journey_figure("teacher"), r"^stages must be a list of"),
    ("journey_figure row", lambda: journey_figure([{"name": "teacher"}]), r"^stages must be a list of"),

    # sparse (kdlab/sparse.py)
    ("encode_positions bits=0", lambda: kdlab.encode_positions(np.ones(3, bool), 0), r"^bits must be an int in 1"),
    ("encode_positions bits=17", lambda: kdlab.encode_positions(np.ones(3, bool), 17), r"^bits must be an int in 1"),
    ("encode_positions bits=2.5", lambda: kdlab.encode_positions(np.ones(3, bool), 2.5), r"^bits must be an int in 1"),
    ("encode_positions mask", lambda: kdlab.encode_positions(np.array([0, 1])), r"^mask must be a boolean array"),
    ("decode_positions size=-1", lambda: kdlab.decode_positions(np.zeros(2, np.uint16), -1),
     r"^size must be an integer >= 0, got -1"),
    ("decode_positions size=2.0", lambda: kdlab.decode_positions(np.zeros(2, np.uint16), 2.0),
     r"^size must be an integer >= 0, got 2\.0"),
    ("decode_positions size=True", lambda: kdlab.decode_positions(np.zeros(1, np.uint16), True),
     r"^size must be an integer >= 0, got True"),
    ("decode_positions bits", lambda: kdlab.decode_positions(np.zeros(2, np.uint16), 2, 0), r"^bits must be an int in"),
    ("decode_positions fields", lambda: kdlab.decode_positions(np.zeros((2, 2), np.uint16), 4),
     r"^fields must be a 1-D array of integers"),

    # train
    ("get_device gpu7", lambda: kdlab.get_device("gpu7"), r"^device must be 'auto', 'cpu', 'cuda', 'mps' or 'cuda:N'"),
    ("get_device None", lambda: kdlab.get_device(None), r"^device must be 'auto', 'cpu', 'cuda', 'mps' or 'cuda:N'"),
    ("set_seed -1", lambda: kdlab.set_seed(-1), r"^seed must be a non-negative integer, got -1"),
    ("set_seed 1.5", lambda: kdlab.set_seed(1.5), r"^seed must be a non-negative integer, got 1\.5"),
    ("set_seed '0'", lambda: kdlab.set_seed("0"), r"^seed must be a non-negative integer, got '0'"),
    ("make_optimizer name", lambda: kdlab.make_optimizer(_model().parameters(), "rmsprop"),
     r"^optimizer must be one of adam, sgd, got 'rmsprop'"),
    ("make_optimizer lr=0", lambda: kdlab.make_optimizer(_model().parameters(), lr=0), r"^lr must be > 0, got 0"),
    ("make_optimizer lr<0", lambda: kdlab.make_optimizer(_model().parameters(), lr=-1e-3), r"^lr must be > 0"),
    ("make_optimizer lr NaN", lambda: kdlab.make_optimizer(_model().parameters(), lr=NAN), r"^lr must be > 0"),
    ("make_optimizer lr str", lambda: kdlab.make_optimizer(_model().parameters(), lr="1e-3"), r"^lr must be > 0"),
    ("make_optimizer momentum=1", lambda: kdlab.make_optimizer(_model().parameters(), "sgd", momentum=1),
     r"^momentum must be in \[0, 1\), got 1"),
    ("make_optimizer momentum<0", lambda: kdlab.make_optimizer(_model().parameters(), "sgd", momentum=-0.1),
     r"^momentum must be in \[0, 1\)"),
    ("make_optimizer momentum str", lambda: kdlab.make_optimizer(_model().parameters(), "sgd", momentum="0.9"),
     r"^momentum must be in \[0, 1\), got '0\.9'"),
    ("make_optimizer weight_decay", lambda: kdlab.make_optimizer(_model().parameters(), weight_decay=-1),
     r"^weight_decay must be >= 0"),
    ("fit epochs=-1", lambda: kdlab.fit(_model(), _loader(), -1), r"^epochs must be a non-negative integer, got -1"),
    ("fit epochs=1.5", lambda: kdlab.fit(_model(), _loader(), 1.5), r"^epochs must be a non-negative integer"),
    ("fit epochs='2'", lambda: kdlab.fit(_model(), _loader(), "2"), r"^epochs must be a non-negative integer"),
    ("fit empty loader", lambda: kdlab.fit(_model(), _loader(EMPTY), 1), r"^loader is empty"),
    ("fit optimizer", lambda: kdlab.fit(_model(), _loader(), 1, "rmsprop"), r"^optimizer must be one of adam, sgd"),
    ("fit lr", lambda: kdlab.fit(_model(), _loader(), 1, lr=0), r"^lr must be > 0"),
    ("fit momentum", lambda: kdlab.fit(_model(), _loader(), 1, "sgd", momentum=1.5), r"^momentum must be in \[0, 1\)"),
    ("fit device", lambda: kdlab.fit(_model(), _loader(), 1, device="gpu7"), r"^device must be 'auto', 'cpu'"),
    ("fit model", lambda: kdlab.fit("mlp30", _loader(), 1), r"^model must be a torch\.nn\.Module"),
    ("fit float labels", lambda: kdlab.fit(_model(), _labelled(Y.float()), 1), r"^labels must be integer class indic"),
    ("fit label 10 of 10", lambda: kdlab.fit(_model(), _labelled(Y + 1), 1),
     r"^labels must be class indices in 0\.\.9 \(the model has 10 outputs\), got labels from 1 to 10"),
    ("evaluate label -1", lambda: kdlab.evaluate(_model(), _labelled(Y - 1)),
     r"^labels must be class indices in 0\.\.9"),
    ("evaluate bool labels", lambda: kdlab.evaluate(_model(), _labelled(Y > 4)), r"^labels must be integer class"),
    ("ArrayDataset labels 2.5", lambda: kdlab.ArrayDataset(np.zeros((2, 4)), [0, 2.5]),
     r"^labels must be integer class indices, got float64 values such as \[0\.0, 2\.5\]"),
    ("DistillModel labels NaN", lambda: _kd(hard_labels=Y.float().where(Y > 0, NAN)), r"^labels must be integer cl"),
    ("get_device cuda", lambda: kdlab.get_device("cuda"), r"^device must be one this machine has: 'cuda' asked",
     pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")),
    ("get_device cuda:7", lambda: kdlab.get_device(torch.device("cuda", 7)), r"^device must be one this machine has",
     pytest.mark.skipif(torch.cuda.device_count() > 7, reason="this machine has 8 GPUs")),
    ("get_device mps", lambda: kdlab.get_device("mps"), r"^device must be one this machine has: 'mps' asked for",
     pytest.mark.skipif(torch.backends.mps.is_available(), reason="this machine has MPS")),
    ("fit cuda", lambda: kdlab.fit(_model(), _loader(), 1, device="cuda:7"), r"^device must be one this machine has"),
    ("quantize_model calibration shape", lambda: kdlab.quantize_model(_model(), scheme="linear",
                                                                        calibration_data=torch.ones(4, 3, 5)),
     r"^calibration_data must hold inputs the model accepts, got a batch of shape \(4, 3, 5\)"),
    ("evaluate empty loader", lambda: kdlab.evaluate(_model(), _loader(EMPTY)), r"^loader is empty"),
    ("evaluate device", lambda: kdlab.evaluate(_model(), _loader(), "gpu7"), r"^device must be 'auto', 'cpu'"),
    ("predict empty loader", lambda: kdlab.predict(_model(), _loader(EMPTY)), r"^loader is empty"),
    ("predict model", lambda: kdlab.predict(None, _loader()), r"^model must be a torch\.nn\.Module"),

    # pipeline: every check runs before any training
    ("run_pipeline sensitivities empty", lambda: _pipeline(sensitivities=[]),
     r"^sensitivities must be a non-empty sequence of numbers >= 0, got \[\]"),
    ("run_pipeline sensitivities negative", lambda: _pipeline(sensitivities=(1.0, -0.5)),
     r"^sensitivities must be a non-empty sequence of numbers >= 0"),
    ("run_pipeline conv_bits=0", lambda: _pipeline(conv_bits=0), r"^conv_bits must be an int in 1\.\.15, got 0"),
    ("run_pipeline fc_bits=16", lambda: _pipeline(fc_bits=16), r"^fc_bits must be an int in 1\.\.15, got 16"),
    ("run_pipeline fc_bits=4.0", lambda: _pipeline(fc_bits=4.0), r"^fc_bits must be an int in 1\.\.15, got 4\.0"),
    ("run_pipeline retrain_epochs", lambda: _pipeline(retrain_epochs=-1), r"^retrain_epochs must be a non-negative in"),
    ("run_pipeline finetune_epochs", lambda: _pipeline(finetune_epochs=1.5), r"^finetune_epochs must be a non-negati"),
    ("run_pipeline finetune_lr", lambda: _pipeline(finetune_lr=0), r"^finetune_lr must be > 0, got 0"),
    ("run_pipeline retrain_lr", lambda: _pipeline(retrain_lr=-2e-3), r"^retrain_lr must be > 0, got -0\.002"),
    ("run_pipeline out", lambda: _pipeline(out=None), r"^out must be a str or os\.PathLike, got NoneType"),
    ("run_pipeline dataset", lambda: _pipeline(dataset="imagenet"), r"^dataset must be one of mnist5k, digits"),
    ("run_pipeline teacher", lambda: _pipeline(teacher="vgg"), r"^teacher must be one of lenet300, lenet5, "),
    ("run_pipeline epochs", lambda: _pipeline(epochs=-1), r"^epochs must be a non-negative integer, got -1"),
    ("run_distillation dataset", lambda: _distillation(dataset="imagenet"), r"^dataset must be one of mnist5k, "),
    ("run_distillation teacher", lambda: _distillation(teacher="vgg"), r"^teacher must be one of lenet300, lenet5"),
    ("run_distillation student", lambda: _distillation(student=3), r"^student must be one of lenet300, "),
    ("run_distillation teacher_epochs", lambda: _distillation(teacher_epochs=-1),
     r"^teacher_epochs must be a non-negative integer, got -1"),
    ("run_distillation epochs", lambda: _distillation(epochs=2.5), r"^epochs must be a non-negative integer, got 2\.5"),
    ("run_distillation temperature", lambda: _distillation(temperature=0), r"^temperature must be > 0"),
    ("run_distillation alpha", lambda: _distillation(alpha=2), r"^alpha must be in \[0, 1\]"),
    ("run_distillation lr", lambda: _distillation(lr=-1), r"^lr must be > 0"),
    ("run_distillation batch_size", lambda: _distillation(batch_size=0), r"^batch_size must be an int >= 1"),
    ("run_distillation seed", lambda: _distillation(seed=-1), r"^seed must be a non-negative integer"),
    ("run_distillation device", lambda: _distillation(device="gpu7"), r"^device must be 'auto', 'cpu'"),
    ("run_distillation jitter", lambda: _distillation(jitter="yes"), r"^jitter must be one of teacher, all, none, got"),
    ("run_pipeline jitter", lambda: _pipeline(jitter=True), r"^jitter must be one of teacher, all, none, got True"),
    ("run_distillation teachers=0", lambda: _distillation(teachers=0), r"^teachers must be an integer >= 1, got 0"),
    ("run_pipeline teachers=2.0", lambda: _pipeline(teachers=2.0), r"^teachers must be an integer >= 1, got 2\.0"),
    ("Ensemble []", lambda: kdlab.Ensemble([]), r"^models must be a non-empty list of nn.Module, got \[\]"),
    ("Ensemble of a tensor", lambda: kdlab.Ensemble([torch.ones(2)]), r"^models must be a non-empty list of nn.Modu"),

    # augmentation and seeds
    ("jitter degrees", lambda: kdlab.jitter(kdlab.ArrayDataset(X, Y, 10), degrees=200),
     r"^degrees must be a number in \[0, 180\], got 200"),
    ("jitter translate", lambda: kdlab.jitter(kdlab.ArrayDataset(X, Y, 10), translate=-0.1),
     r"^translate must be a number in \[0, 1\), got -0\.1"),
    ("jitter dataset", lambda: kdlab.jitter(X), r"^dataset must be a non-empty torch Dataset, got Tensor"),
    ("parse_seeds", lambda: kdlab.parse_seeds("0-x"), r"^seeds must look like 3, 0-4 or 0,2,7, got '0-x'"),
    ("parse_seeds repeats", lambda: kdlab.parse_seeds([1, 1]), r"^seeds must be distinct non-negative integers"),
    ("mean_sd", lambda: kdlab.mean_sd([]), r"^values must be a non-empty list of numbers"),
    ("paired_interval lengths", lambda: kdlab.paired_interval([1, 2], [1]), r"^a and b must pair up one to one"),
    ("paired_interval confidence", lambda: kdlab.paired_interval([1], [1], 0), r"^confidence must be in \(0, 1\)"),
    ("run_seeds job", lambda: kdlab.run_seeds("train", "0", "out"), r"^job must be one of distill, pipeline"),
    ("run_seeds jobs", lambda: kdlab.run_seeds("distill", "0", "out", jobs=0), r"^jobs must be an int >= 1, got 0"),
    ("summarize", lambda: kdlab.summarize([]), r"^reports must hold at least one report"),
]


@pytest.mark.parametrize("call, message", [pytest.param(call, message, id=name, marks=marks)
                                            for name, call, message, *marks in TABLE])
def test_bad_argument_raises_value_error_naming_it(call, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a call that wrongly went ahead writes only here
    with pytest.raises(ValueError, match=message):
        call()
