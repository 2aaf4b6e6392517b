"""Training on two gloo processes: the same weights as one process on the union of their batches, one report."""
import json
import os
import socket
import subprocess
import sys

import pytest
import torch
import torch.multiprocessing as mp

import kdlab
from kdlab import distributed

EXAMPLES = 1280  # even: the two processes' halves of every batch are the single process's batch


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _data():
    train, _ = kdlab.load_dataset("digits")
    return kdlab.ArrayDataset(train.images[:EXAMPLES], train.targets[:EXAMPLES])


def _single_fit(batch_size):
    kdlab.set_seed(0)
    model = kdlab.build_model("mlp30", in_shape=(1, 8, 8))
    history = kdlab.fit(model, kdlab.make_loader(_data(), batch_size), 2, optimizer="sgd", lr=0.1, device="cpu")
    return model, history


def _worker(rank, world, port, folder):
    """One torchrun-like process: the environment torchrun would set, then plain kdlab calls."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world), TQDM_DISABLE="1")
    torch.set_num_threads(1)
    model, history = _single_fit(64)
    kdlab.set_seed(0)
    presharded = kdlab.build_model("mlp30", in_shape=(1, 8, 8))
    kdlab.fit(presharded, distributed.shard(kdlab.make_loader(_data(), 64)), 2, optimizer="sgd", lr=0.1, device="cpu")
    train, _ = kdlab.load_dataset("digits")
    kd = kdlab.DistillModel(train, teacher="mlp30", student="mlp30", method="features", device="cpu")
    kd.train(1, checkpoint=os.path.join(folder, "features.pt"))
    torch.save({"model": model.state_dict(), "history": history, "presharded": presharded.state_dict(),
                "regressors": kd.regressors.state_dict(), "student": kd.student.state_dict(),
                "world_size": distributed.world_size(), "main": distributed.is_main()},
               os.path.join(folder, f"rank{rank}.pt"))
    distributed.shutdown()


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(2, _free_port(), str(folder)), nprocs=2)
    return folder, [torch.load(folder / f"rank{r}.pt", weights_only=False) for r in (0, 1)]


def test_two_processes_of_64_train_as_one_process_of_128(two_ranks):
    _, (rank0, rank1) = two_ranks
    assert rank0["world_size"] == rank1["world_size"] == 2 and rank0["main"] and not rank1["main"]
    single, history = _single_fit(128)
    for name, value in single.state_dict().items():
        assert torch.equal(rank0["model"][name], rank1["model"][name])
        assert torch.equal(rank0["presharded"][name], rank0["model"][name])  # a sharded loader is not sharded again
        assert torch.allclose(rank0["model"][name], value, atol=1e-5)
    for row, both, other in zip(history, rank0["history"], rank1["history"]):
        assert both == other and both["epoch"] == row["epoch"]
        assert both["loss"] == pytest.approx(row["loss"], rel=1e-5)
        assert both["train_accuracy"] == pytest.approx(row["train_accuracy"])


def test_regressors_outside_the_ddp_model_stay_in_step_and_one_checkpoint_is_written(two_ranks):
    folder, (rank0, rank1) = two_ranks
    for key in ("regressors", "student"):
        assert all(torch.equal(rank0[key][name], rank1[key][name]) for name in rank0[key])
    assert sorted(p.name for p in folder.iterdir()) == ["features.pt", "rank0.pt", "rank1.pt"]


def test_without_torchrun_everything_is_one_process(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert not distributed.launched() and distributed.init_distributed() == 1
    assert (distributed.world_size(), distributed.rank(), distributed.is_main()) == (1, 0, True)
    assert distributed.all_reduce_sum([1, 2.5], "cpu") == [1.0, 2.5]
    with distributed.output_folder("runs/x") as folder:
        assert str(folder) == os.path.join("runs", "x")


def test_shard_splits_each_epoch_between_the_processes_and_keeps_the_loaders_settings():
    loader = kdlab.make_loader(_data(), 64, shuffle=True, seed=3)
    shards = [distributed.shard(loader, 2, index) for index in (0, 1)]
    orders = []
    for epoch in (1, 2):
        for part in shards:
            part.sampler.set_epoch(epoch)
        indices = [list(part.sampler) for part in shards]
        assert not set(indices[0]) & set(indices[1]) and sorted(indices[0] + indices[1]) == list(range(EXAMPLES))
        orders.append(indices[0])
    assert orders[0] != orders[1] and orders[0] != sorted(orders[0])
    assert all(len(part) == 10 and part.batch_size == 64 for part in shards)
    in_order = distributed.shard(kdlab.make_loader(_data(), 64), 2, 1)
    assert list(in_order.sampler) == list(range(1, EXAMPLES, 2))


@pytest.mark.parametrize("command, options", [
    ("distill", ["--dataset", "mnist5k", "--teacher", "lenet5", "--teachers", "1", "--student", "lenet300",
                 "--epochs", "2", "--views", "0"]),
    ("pipeline", ["--dataset", "digits", "--teacher", "lenet5", "--teachers", "2", "--student", "lenet300",
                  "--teacher-epochs", "2",
                  "--epochs", "2", "--sensitivities", "1.0", "--retrain-epochs", "1", "--finetune-epochs", "1"]),
])
def test_torchrun_with_two_gloo_processes_writes_one_report(tmp_path, command, options):
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                             "-m", "kdlab", command, *options, "--out", str(out)], capture_output=True, text=True,
                            timeout=900,
                            env={**os.environ, "TQDM_DISABLE": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["world_size"] == 2 and report["batch_size"] == {"per_process": 64, "per_step": 128}
    assert result.stdout.count("report:") == 1
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    if command == "distill":
        assert report["teacher"]["accuracy"] > 0.95 and report["student_distilled"]["accuracy"] > 0.8
        assert written == ["checkpoints", "checkpoints/distilled.pt", "checkpoints/scratch.pt",
                           "checkpoints/teacher.pt", "report.json"]
    else:
        assert report["reloaded_accuracy"] == report["compressed"]["accuracy"] > 0.5
        assert written == ["checkpoints", "checkpoints/distilled.pt", "checkpoints/scratch.pt",
                           "checkpoints/scratch_originals.pt", "checkpoints/teacher_1.pt", "checkpoints/teacher_2.pt",
                           "journey.png", "report.json", "report.md", "student.kdz"]
