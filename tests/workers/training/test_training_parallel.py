"""Background data loading, the position stream, and data-parallel training over processes (gloo, CPU)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from workers.training import TrainConfig, train
from workers.training.__main__ import main as train_main
from workers.training.__main__ import parse_overrides
from workers.training.data import AugmentConfig, MaskDataset, PositionDataset, scan_dataset

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    (root / "images").mkdir()
    (root / "masks").mkdir()
    rng = np.random.default_rng(1)
    for i in range(4):
        image = rng.integers(0, 80, (48, 64, 3), dtype=np.uint8)
        mask = np.zeros((48, 64), np.uint8)
        cv2.rectangle(mask, (8 + 6 * i, 10), (40 + 4 * i, 36), 255, -1)
        image[mask > 0] = (40, 180, 60)
        cv2.imwrite(str(root / "images" / f"box{i:02d}_{i}.png"), image)
        cv2.imwrite(str(root / "masks" / f"box{i:02d}_{i}.png"), mask)
    return root


def _cfg(dataset: Path, out: Path, **kw) -> TrainConfig:
    base = dict(arch="lite", dataset_dir=str(dataset), out_dir=str(out), steps=2, batch_size=2, iters_per_sample=2,
                image_size=256, warmup=1, checkpoint_every=1, num_threads=1, progress_bar=False, seed=3)
    base.update(kw)
    return TrainConfig(**base)


def test_position_stream_walks_one_permutation_per_epoch(dataset):
    samples = scan_dataset(dataset)
    ds = MaskDataset(samples, image_size=64, augment=AugmentConfig(), seed=5)
    stream = PositionDataset(ds, seed=5)
    n = len(ds)
    first = [stream[p]["name"] for p in range(n)]
    second = [stream[p]["name"] for p in range(n, 2 * n)]
    assert sorted(first) == sorted(second) == sorted(s.name for s in samples)  # each epoch sees every sample once
    again = stream[n + 1]  # any position, in any order, gives the same augmented sample
    assert again["name"] == second[1]
    assert torch.equal(again["image"], stream[n + 1]["image"])
    assert torch.equal(again["image"], ds.item(int(stream.order(1)[1]), 1)["image"])


@pytest.mark.slow
def test_background_loading_trains_exactly_like_loading_in_process(dataset, tmp_path):
    torch.manual_seed(0)
    inline = train(_cfg(dataset, tmp_path / "inline"))
    torch.manual_seed(0)
    loaded = train(_cfg(dataset, tmp_path / "loaded", num_workers=2))
    a = torch.load(inline.model_path, weights_only=False)["model"]
    b = torch.load(loaded.model_path, weights_only=False)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert inline.metrics["loss"] == loaded.metrics["loss"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _average_in_rank(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2", RANK=str(rank),
                      LOCAL_RANK=str(rank), GLOO_SOCKET_IFNAME="lo")
    from workers.training.loop import _Ranks

    ranks = _Ranks()
    a = torch.nn.Parameter(torch.zeros(2, 3))
    b = torch.nn.Parameter(torch.zeros(4))
    a.grad = torch.full((2, 3), float(rank + 1))  # 1 on rank 0, 2 on rank 1
    if rank == 0:
        b.grad = torch.arange(4.0)  # rank 1 has no gradient for b: it counts as zeros
    c = torch.nn.Parameter(torch.zeros(5))  # no gradient anywhere: stays without one (the optimizer skips it)
    ranks.average_gradients([a, b, c])
    agreed = ranks.agree(10.0 + rank)
    torch.save({"a": a.grad, "b": b.grad, "c": c.grad, "agreed": agreed}, Path(out) / f"rank{rank}.pt")
    ranks.close()


def test_gradients_are_averaged_over_processes(tmp_path):
    mp.spawn(_average_in_rank, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    for rank in (0, 1):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        assert torch.allclose(got["a"], torch.full((2, 3), 1.5))
        assert torch.allclose(got["b"], torch.arange(4.0) / 2)
        assert got["c"] is None
        assert got["agreed"] == 10.0  # rank 0's clock decides when every process stops


@pytest.mark.slow
def test_torchrun_two_processes_train_one_model(dataset, tmp_path):
    out = tmp_path / "ddp"
    env = dict(os.environ, GLOO_SOCKET_IFNAME="lo", OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "workers.training", f"dataset_dir={dataset}", f"out_dir={out}", "arch=lite", "steps=2",
           "batch_size=1", "iters_per_sample=2", "image_size=256", "warmup=1", "checkpoint_every=1",
           "num_threads=1", "progress_bar=false", "num_workers=1"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    saved = torch.load(out / "model.pt", weights_only=False)
    assert saved["meta"]["processes"] == 2 and saved["meta"]["steps"] == 2
    # 4 images, 2 processes x 1 image per step: two steps are one epoch, logged once by rank 0 alone
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2] and records[0]["epoch"] == 1.0
    assert sorted(p.name for p in out.glob("ckpt_*.pt")) == ["ckpt_0000001.pt", "ckpt_0000002.pt"]


def test_entry_point_reads_overrides_and_names_bad_input(tmp_path, capsys):
    assert parse_overrides(["steps=3", "device=cuda", "lr=1e-4", "names=[\"a\"]"]) == \
        {"steps": 3, "device": "cuda", "lr": 1e-4, "names": ["a"]}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_overrides(["steps"])
    assert train_main(["dataset_dir=" + str(tmp_path / "missing"), "split=train"]) == 2
    assert "dataset directory" in capsys.readouterr().err
    assert train_main(["dataset_dir=x", "stepz=3"]) == 2
    assert "unknown TrainConfig fields: stepz" in capsys.readouterr().err
