"""Structured (channel) pruning by filter L1 norm: a smaller dense network.

Li, Kadav, Durdanovic, Samet & Graf (2017), "Pruning Filters for Efficient ConvNets", §3.1: score each
output filter F_j of a Conv2d by the sum of its absolute kernel weights, s_j = Σ_{l=1}^{n_i} Σ|K_l| (over the
n_i input channels × the k × k kernel), and remove the m filters with the smallest s_j together with their
feature maps, i.e. the matching input channels of the next layer. A hidden Linear neuron is scored the same
way, by the L1 norm of its weight row. This is torch.nn.utils.prune.ln_structured's score (n=1, dim=0) and
its count, round(amount × filters), but here the layers are rebuilt smaller instead of masked.
"""
from __future__ import annotations

import copy

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from .checks import is_number
from .prune import check_finite_weights, clone_model, current_weight, remove_masks

LAYERS = (nn.Linear, nn.Conv2d)  # the layers whose output channels this file removes
PASS_THROUGH = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.Dropout,
                nn.Dropout2d, nn.Identity, nn.MaxPool2d, nn.AvgPool2d, nn.BatchNorm1d, nn.BatchNorm2d, nn.Flatten)
SUPPORTED = ("an nn.Sequential whose Linear and Conv2d layers are its own children (lenet5, lenet300, mlp100, "
             "mlp30) or a torchvision ResNet of BasicBlocks (resnet18, resnet10)")


def check_amount(amount):
    """Raise ValueError unless `amount`, the fraction of filters to remove, is a number in [0, 1)."""
    if not is_number(amount) or not 0 <= amount < 1:
        raise ValueError(f"amount must be in [0, 1), got {amount!r}")


def filter_norms(weight):
    """s_j = Σ|W_j| (§3.1): the L1 norm of each output filter of a Conv2d weight, or of each row of a Linear one."""
    return weight.detach().abs().flatten(1).sum(1)


def kept_filters(norms, amount):
    """The sorted indices of the filters to keep: all but the round(amount × n) smallest-norm ones, at least one."""
    n = len(norms)
    keep = max(1, n - round(amount * n))
    return torch.sort(torch.argsort(norms, descending=True, stable=True)[:keep]).values


def _sequential_paths(model):
    """{layer name: (container, layer key, keys of the modules between, key of the next layer)} of a Sequential."""
    children = list(model.named_children())
    nested = [key for key, child in children if not isinstance(child, LAYERS)
              and any(isinstance(m, LAYERS) for m in child.modules())]
    if nested:
        raise ValueError(f"model must be {SUPPORTED}; child {nested[0]} holds layers of its own")
    keys = [key for key, child in children]
    layers = [i for i, (_, child) in enumerate(children) if isinstance(child, LAYERS)]
    return {keys[a]: (model, keys[a], keys[a + 1:b], keys[b]) for a, b in zip(layers, layers[1:])}


def _resnet_paths(model):
    """{name of each BasicBlock's conv1: (block, "conv1", ["bn1", "relu"], "conv2")}: the block's inner path."""
    if any(isinstance(m, Bottleneck) for m in model.modules()):
        raise ValueError(f"model must be {SUPPORTED}; Bottleneck blocks are not supported")
    return {f"{name}.conv1": (block, "conv1", ["bn1", "relu"], "conv2")
            for name, block in model.named_modules() if isinstance(block, BasicBlock)}


def prunable_channels(model):
    """{name: (container, key, keys between, next key)} of the layers whose outputs prune_channels can remove.

    In an nn.Sequential these are all its Linear and Conv2d layers but the last (the classifier); in a ResNet
    only the conv1 of each BasicBlock, since the residual addition fixes every block's output channels
    (Li et al. 2017, §3.3, prune only the first layer of each residual block).
    """
    if isinstance(model, nn.Sequential):
        return _sequential_paths(model)
    if isinstance(model, ResNet):
        return _resnet_paths(model)
    raise ValueError(f"model must be {SUPPORTED}, got {type(model).__name__}")


def _chosen(paths, layers):
    """The names in `paths` to prune: all of them, or those in `layers`, checked to be among them."""
    if layers is None:
        return list(paths)
    if isinstance(layers, str) or not hasattr(layers, "__iter__"):
        raise ValueError(f"layers must be a list of layer names, got {layers!r}")
    layers = list(layers)
    unknown = [str(name) for name in layers if name not in paths]
    if unknown:
        raise ValueError(f"layers must name layers whose channels can be pruned ({', '.join(paths) or 'none'}; "
                         f"never the classifier), got {', '.join(unknown)}")
    return [name for name in paths if name in layers]


def channel_norms(model, layers=None):
    """{layer name: the L1 norm s_j of each of its output filters or neurons} for the layers prune_channels prunes."""
    paths = prunable_channels(model)
    return {name: filter_norms(current_weight(getattr(paths[name][0], paths[name][1]))).cpu()
            for name in _chosen(paths, layers)}


def _sliced_layer(layer, rows, columns):
    """A new Linear or Conv2d like `layer` keeping only the output `rows` and input `columns` (None: all)."""
    weight = current_weight(layer)
    weight = weight if rows is None else weight[rows]
    weight = weight if columns is None else weight[:, columns]
    bias = None if layer.bias is None else layer.bias.detach()
    bias = bias if bias is None or rows is None else bias[rows]
    if isinstance(layer, nn.Linear):
        new = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    else:
        new = nn.Conv2d(weight.shape[1], weight.shape[0], layer.kernel_size, stride=layer.stride,
                        padding=layer.padding, dilation=layer.dilation, bias=bias is not None,
                        padding_mode=layer.padding_mode)
    new.to(device=weight.device, dtype=weight.dtype).train(layer.training)
    with torch.no_grad():
        new.weight.copy_(weight)
        if bias is not None:
            new.bias.copy_(bias)
    return new


def _sliced_batchnorm(norm, index):
    """A copy of the BatchNorm1d/2d `norm` keeping only the entries `index` of its parameters and running stats."""
    new = copy.deepcopy(norm)
    new.num_features = len(index)
    for name, parameter in norm.named_parameters(recurse=False):
        setattr(new, name, nn.Parameter(parameter.detach()[index], requires_grad=parameter.requires_grad))
    for name, buffer in norm.named_buffers(recurse=False):
        setattr(new, name, buffer if buffer.ndim == 0 else buffer[index])
    return new


def _width(layer, out=False):
    """The number of output (`out`) or input channels / features of a Linear or Conv2d."""
    if isinstance(layer, nn.Linear):
        return layer.out_features if out else layer.in_features
    return layer.out_channels if out else layer.in_channels


def _slice_path(path, amount, rows, columns, replaced):
    """Plan one layer's pruning: its kept rows, the next layer's kept columns, and the BatchNorms in between."""
    container, key, between, after = path
    layer, following = getattr(container, key), getattr(container, after)
    if any(isinstance(m, nn.Conv2d) and m.groups != 1 for m in (layer, following)):
        raise ValueError(f"layer {key} or {after} is a grouped convolution, which prune_channels does not support")
    flattened = False
    for name in between:
        module = getattr(container, name)
        if not isinstance(module, PASS_THROUGH) or isinstance(module, nn.Flatten) and module.start_dim != 1:
            raise ValueError(f"cannot prune layer {key}: {type(module).__name__} {name} between it and layer {after} "
                             "is not a per-channel module")
        flattened = flattened or isinstance(module, nn.Flatten)
    n, width = _width(layer, out=True), _width(following)
    grouped = isinstance(layer, nn.Conv2d) and isinstance(following, nn.Linear)
    spatial = width // n if grouped else 1
    if width != spatial * n or grouped and not flattened:
        raise ValueError(f"cannot prune layer {key}: layer {after} takes {width} inputs, not its {n} outputs"
                         f"{' flattened' if grouped else ''}")
    weight = current_weight(layer)
    keep = kept_filters(filter_norms(weight), amount).to(weight.device)
    features = (keep[:, None] * spatial + torch.arange(spatial, device=weight.device)).reshape(-1)
    index = keep
    for name in between:
        module = getattr(container, name)
        index = features if isinstance(module, nn.Flatten) else index
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            replaced[(container, name)] = _sliced_batchnorm(module, index)
    rows[(container, key)] = keep
    columns[(container, after)] = features


def prune_channels(model, amount, layers=None):
    """A new, smaller dense model without the `amount` fraction of lowest-L1 filters / neurons of each layer (§3.1).

    In each chosen layer (default: every layer prunable_channels lists; never the final classifier), the
    round(amount × n) output filters (Conv2d) or neurons (Linear) with the smallest s_j = Σ|W_j| are removed, at
    least one is kept, and the next layer loses the matching input channels (after an nn.Flatten, the
    matching group of channel × spatial features); BatchNorms in between lose the matching entries. Layers are
    scored independently, on the weights of the input model (§3.3's independent strategy). Pruning masks of
    torch.nn.utils.prune are folded in first. `model` is not modified; the new model does not carry
    `kdlab_architecture` (it is no longer build_model's architecture): pass it as load_compressed's `model`.
    """
    check_amount(amount)
    paths = prunable_channels(model)
    chosen = _chosen(paths, layers)
    check_finite_weights((name, getattr(*paths[name][:2]), "weight") for name in chosen)
    new = remove_masks(clone_model(model))
    vars(new).pop("kdlab_architecture", None)
    paths = prunable_channels(new)
    rows, columns, replaced = {}, {}, {}
    for name in chosen:
        _slice_path(paths[name], amount, rows, columns, replaced)
    for container, key in rows.keys() | columns.keys():
        replaced[(container, key)] = _sliced_layer(getattr(container, key), rows.get((container, key)),
                                                   columns.get((container, key)))
    for (container, key), module in replaced.items():
        setattr(container, key, module)
    return new
