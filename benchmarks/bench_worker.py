"""Benchmark: images embedded per second by one worker on this machine.

    .venv/bin/python benchmarks/bench_worker.py --images 8 --threads 2

Runs the embed task's code path in-process (decode PNG → encoder → float16 + int8 wire format →
storage → DB row) against a temporary SQLite database and local storage, with the shipped default
model when ``models/default/model.pt`` exists, else a random-init ``lite`` model (same compute).
Prints measured numbers and the machine; never asserts on time.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--size", type=int, nargs=2, default=(768, 1024), metavar=("H", "W"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=1, help="images per encoder call (embed_project batches)")
    args = ap.parse_args()

    import torch
    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="bench_worker_"))
    default = REPO / "models" / "default" / "model.pt"
    model_dir = default.parent
    if not default.is_file():
        sys.path.insert(0, str(REPO / "tests" / "workers" / "tasks"))
        from worker_test_support import write_tiny_model

        model_dir = write_tiny_model(tmp / "model")
    os.environ.update({"MASKLOOP_DATA_DIR": str(tmp / "data"), "DATABASE_URL": f"sqlite:///{tmp / 'db.sqlite'}",
                       "MASKLOOP_DEFAULT_MODEL_DIR": str(model_dir), "MASKLOOP_DEVICE": "cpu"})
    sys.path.insert(0, str(REPO / "tests" / "workers" / "tasks"))
    import sqlalchemy as sa
    from PIL import Image

    from backend.storage import LocalStorage, keys
    from worker_test_schema import create_schema
    from workers.tasks.embed import embed_many, embed_one, model_for_version

    create_schema(os.environ["DATABASE_URL"])
    store = LocalStorage(tmp / "data" / "storage")
    eng = sa.create_engine(os.environ["DATABASE_URL"])
    from backend.db.models import Base

    tables = Base.metadata.tables
    rng = np.random.default_rng(0)
    with eng.begin() as conn:
        mv = conn.execute(sa.insert(tables["model_versions"]).values(name="bench", arch="lite")).inserted_primary_key[0]
        pid = conn.execute(sa.insert(tables["projects"]).values(name="b", active_model_version_id=mv)).inserted_primary_key[0]
        ids = []
        for i in range(args.images + 1):
            buf = io.BytesIO()
            Image.fromarray(rng.integers(0, 255, (*args.size, 3), dtype=np.uint8)).save(buf, format="PNG")
            sha = hashlib.sha256(buf.getvalue()).hexdigest()
            store.put_bytes(keys.image_key(sha, "png"), buf.getvalue())
            ids.append(conn.execute(sa.insert(tables["images"]).values(
                project_id=pid, file_name=f"{i}.png", sha256=sha, storage_key=keys.image_key(sha, "png"),
                width=args.size[1], height=args.size[0], status="new")).inserted_primary_key[0])
    t = time.perf_counter()
    model_for_version(mv)
    load_s = time.perf_counter() - t
    embed_one(ids[0], mv)  # warm-up
    t = time.perf_counter()
    for start in range(1, len(ids), args.batch):
        assert embed_many(ids[start:start + args.batch], mv)["done"] == len(ids[start:start + args.batch])
    elapsed = time.perf_counter() - t
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
          f"{args.threads} torch threads, torch {torch.__version__}, load avg {os.getloadavg()[0]:.1f}")
    print(f"model: {'default' if model_dir == default.parent else 'random-init lite'} ({model_dir}); "
          f"load {load_s:.2f} s (once per worker process)")
    print(f"embedded {args.images} images of {args.size[1]}x{args.size[0]} in {elapsed:.2f} s: "
          f"{args.images / elapsed:.2f} images/s per worker ({1000 * elapsed / args.images:.0f} ms/image, "
          f"encoder batch {args.batch}, float16 + int8 stored)")


if __name__ == "__main__":
    main()
