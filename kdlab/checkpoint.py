"""Training checkpoints: all a run needs to resume bit for bit (models, optimizer, scaler, RNGs), saved atomically."""
from __future__ import annotations

import os
import random

import numpy as np
import torch

from .files import atomic_torch_save

FORMAT = "kdlab-checkpoint-1"


def _rng_states(generator):
    """The states of Python's, NumPy's, PyTorch's (CPU and CUDA) and the data loader's random generators."""
    kind, key, pos, has_gauss, gauss = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(key.astype(np.int64)), pos, has_gauss, gauss],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "loader": generator.get_state() if generator is not None else None,
    }


def _set_rng_states(states, generator):
    """Restore the random generators saved by `_rng_states`."""
    version, internal, gauss_next = states["python"]
    random.setstate((version, tuple(internal), gauss_next))
    kind, key, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, key.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    if generator is not None and states["loader"] is not None:
        generator.set_state(states["loader"])


def save_checkpoint(path, modules, optimizer, scaler, generator, epoch, history):
    """Write the state after `epoch` to `path` atomically: a crash mid-write keeps the previous checkpoint."""
    return atomic_torch_save({
        "format": FORMAT,
        "epoch": epoch,
        "history": history,
        "modules": {name: module.state_dict() for name, module in modules.items()},
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),
        "rng": _rng_states(generator),
    }, path)


def load_checkpoint(path, modules, optimizer, scaler, generator):
    """Restore a checkpoint written by `save_checkpoint` into the given objects; return (epoch, history).

    A damaged checkpoint, or one of other models, raises ValueError saying so.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except OSError:
        raise
    except Exception as error:  # a damaged file fails deep inside the unpickler, with any exception type
        raise ValueError(f"checkpoint {os.fspath(path)} is damaged or not a kdlab checkpoint ({error})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"checkpoint {os.fspath(path)} is not a kdlab checkpoint (format {FORMAT} expected)")
    try:
        if set(state["modules"]) != set(modules):
            raise KeyError(f"it holds {sorted(state['modules'])}, this run trains {sorted(modules)}")
        for name, module in modules.items():
            module.load_state_dict(state["modules"][name])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        _set_rng_states(state["rng"], generator)
        return int(state["epoch"]), list(state["history"])
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise ValueError(f"checkpoint {os.fspath(path)} does not fit this run or is damaged ({error})") from None
