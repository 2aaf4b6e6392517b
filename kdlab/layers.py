"""The weights kdlab compresses: which layers and tensors count, and whether a layer is "conv" or "fc"."""
from __future__ import annotations

from torch import nn

from .checks import check_module

CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
PRUNABLE = (nn.Linear, *CONV)  # the layers quantize_model replaces by modules that store integers


def weight_names(module):
    """The names of the weight tensors of `module` that kdlab prunes, shares and codes (empty if none).

    Linear, Conv1d/2d/3d (grouped and depthwise too), Embedding and EmbeddingBag: "weight";
    MultiheadAttention: its packed "in_proj_weight" (or the separate q/k/v projections; out_proj is a Linear);
    LSTM, GRU and RNN: every "weight_ih_l{k}" and "weight_hh_l{k}" (and their "_reverse" and "weight_hr").
    """
    if isinstance(module, (*PRUNABLE, nn.Embedding, nn.EmbeddingBag)):
        return ["weight"]
    if isinstance(module, nn.MultiheadAttention):
        return ["in_proj_weight"] if module._qkv_same_embed_dim else ["q_proj_weight", "k_proj_weight", "v_proj_weight"]
    if isinstance(module, nn.RNNBase):
        return [name for name in module._flat_weights_names if name.startswith("weight_")]
    return []


def weight_key(layer, name):
    """The key of one weight tensor: the layer's name for a "weight", else "layer.tensor" (e.g. "lstm.weight_ih_l0")."""
    return layer if name == "weight" else state_key(layer, name)


def state_key(layer, name):
    """The state_dict key of tensor `name` of the module named `layer`."""
    return f"{layer}.{name}" if layer else name


def compressible_weights(model):
    """The (key, module, tensor name) triples of every weight tensor of `model` that kdlab compresses, in order."""
    check_module(model)
    return [(weight_key(layer, name), module, name)
            for layer, module in model.named_modules() for name in weight_names(module)]


def weight_kinds(model):
    """{state_dict key: "conv" or "fc"} of every weight tensor of `model` that kdlab compresses."""
    check_module(model)
    return {state_key(layer, name): layer_kind(module)
            for layer, module in model.named_modules() for name in weight_names(module)}


def replaceable_layers(model):
    """The (name, module) pairs of the Linear/Conv layers of `model` that another module can stand in for.

    All of them but the out_proj of a MultiheadAttention, whose weight the attention reads directly.
    """
    check_module(model)
    attention = {name for name, m in model.named_modules() if isinstance(m, nn.MultiheadAttention)}
    return [(name, m) for name, m in model.named_modules()
            if isinstance(m, PRUNABLE) and not (name and name.rpartition(".")[0] in attention)]


def layer_type(module):
    """The name of the torch.nn class a Linear/Conv layer is (or extends): "Linear", "Conv1d", "Conv2d" or "Conv3d"."""
    return next(t.__name__ for t in PRUNABLE if isinstance(module, t))


def layer_kind(module):
    """ "conv" for a Conv1d/2d/3d layer (and a layer decoded into one), "fc" for every other weight."""
    kind = getattr(module, "kind", None)
    return "conv" if isinstance(module, CONV) or isinstance(kind, str) and kind.startswith("Conv") else "fc"
