"""Training on several processes with PyTorch's own engine: torchrun, DistributedDataParallel, DistributedSampler.

`torchrun --nproc_per_node=N` (and multi-node torchrun) starts N copies of a program and describes the group in
the environment: RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT. `fit` joins that group by itself
(`init_distributed`: NCCL on CUDA, gloo on CPU), shards the batches across the processes with a
DistributedSampler, wraps the model in DistributedDataParallel, and all-reduces its metrics. Without torchrun
every function here is a no-op and the code runs as one process.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler


def launched():
    """True when a launcher such as torchrun started this process as one of several (WORLD_SIZE > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def local_rank():
    """This process's index on its machine (LOCAL_RANK, 0 without torchrun): the GPU it uses."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def init_distributed():
    """Join the process group torchrun describes in the environment, once; return the world size.

    The backend is NCCL when CUDA is there (each process on GPU LOCAL_RANK) and gloo on CPU. Without a launcher,
    or when the group exists already, nothing happens.
    """
    if launched() and not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(local_rank())
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return world_size()


def active():
    """True inside a process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size():
    """The number of processes training together (1 without torchrun)."""
    return dist.get_world_size() if active() else 1


def rank():
    """This process's global rank (0 without torchrun)."""
    return dist.get_rank() if active() else 0


def is_main():
    """True for the process that writes files: rank 0."""
    return rank() == 0


def barrier():
    """Wait until every process gets here."""
    if active():
        dist.barrier()


def shutdown():
    """Leave the process group once every process is done (nothing without one)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def all_reduce_sum(values, device):
    """The sums over all processes of a list of numbers, as floats (the numbers themselves without torchrun)."""
    if not active():
        return [float(v) for v in values]
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def average_gradients(params):
    """Average the gradients of `params` over the processes: for trained parameters outside the DDP model."""
    if active():
        for p in params:
            if p.grad is not None:
                dist.all_reduce(p.grad)
                p.grad /= dist.get_world_size()


def shard(loader, replicas=None, index=None):
    """A DataLoader like `loader` whose batches are process `index`'s share of the data (a DistributedSampler).

    `replicas` and `index` default to the world size and this process's rank. Each process draws
    `loader.batch_size` examples per batch, so the batch of one step over all processes is `replicas` times as
    large. Shuffling follows the loader (shuffled if it was), seeded by the loader's generator; call
    `sampler.set_epoch(epoch)` each epoch for a new order.
    """
    generator = getattr(loader, "generator", None)
    sampler = DistributedSampler(loader.dataset, num_replicas=replicas or world_size(),
                                 rank=rank() if index is None else index,
                                 shuffle=isinstance(loader.sampler, RandomSampler),
                                 seed=generator.initial_seed() if generator is not None else 0,
                                 drop_last=loader.drop_last)
    return DataLoader(loader.dataset, batch_size=loader.batch_size, sampler=sampler, num_workers=loader.num_workers,
                      pin_memory=loader.pin_memory, drop_last=loader.drop_last, collate_fn=loader.collate_fn)


def wrap(model, device):
    """`model` in DistributedDataParallel on `device` (its GPU, or the CPU with gloo)."""
    if device.type != "cuda":
        return DistributedDataParallel(model)
    return DistributedDataParallel(model, device_ids=[torch.cuda.current_device() if device.index is None
                                                      else device.index])


@contextlib.contextmanager
def output_folder(out):
    """`out` on the main process; elsewhere a private temporary folder, removed afterwards (only rank 0 writes)."""
    if is_main():
        yield Path(out)
        return
    with tempfile.TemporaryDirectory(prefix=f"kdlab-rank{rank()}-") as folder:
        yield Path(folder)
