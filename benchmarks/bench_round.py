"""Benchmark: wall time of one retraining round on N new masks, per phase.

    .venv/bin/python benchmarks/bench_round.py --masks 20 --steps 20 --threads 2

Synthetic images (rectangles and ellipses on noise, 2 masks each) are fine-tuned from the shipped
default model when ``models/default/model.pt`` exists, else from a random-init ``lite`` model,
through ``workers.engine.rounds.run_round`` (the code the ``maskloop.train_round`` task runs):
dataset materialisation, held-out evaluation before, fine-tuning, evaluation after, ONNX export.
Prints measured numbers and the machine; never asserts on time.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def synthetic_samples(n_masks: int, size: int) -> list:
    import cv2
    from pycocotools import mask as mask_utils

    from workers.engine.rounds import Sample

    rng = np.random.default_rng(0)
    samples = []
    for i in range((n_masks + 1) // 2):
        img = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
        masks = []
        for k in range(min(2, n_masks - 2 * i)):
            m = np.zeros((size, size), np.uint8)
            c = tuple(int(v) for v in rng.integers(size // 5, 4 * size // 5, 2))
            if k == 0:
                cv2.rectangle(m, c, (c[0] + size // 6, c[1] + size // 5), 1, -1)
            else:
                cv2.ellipse(m, c, (size // 8, size // 10), 0, 0, 360, 1, -1)
            img[m > 0] = rng.integers(120, 255, 3)
            rle = mask_utils.encode(np.asfortranarray(m))
            masks.append({"size": [size, size], "counts": rle["counts"].decode("ascii")})
        samples.append(Sample(f"syn{i}", f"{i:064x}", img, masks))
    return samples


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--masks", type=int, default=20)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--image-size", type=int, default=1024, help="training input size")
    ap.add_argument("--size", type=int, default=256, help="side of the synthetic images")
    ap.add_argument("--max-clicks", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import torch
    torch.set_num_threads(args.threads)
    from workers.engine.rounds import run_round

    tmp = Path(tempfile.mkdtemp(prefix="bench_round_"))
    base = REPO / "models" / "default" / "model.pt"
    if not base.is_file():
        sys.path.insert(0, str(REPO / "tests" / "workers" / "tasks"))
        from worker_test_support import write_tiny_model

        base = write_tiny_model(tmp / "model") / "model.pt"
    from workers.sam.build import read_checkpoint

    arch = read_checkpoint(base)[0] or "lite"  # the shipped default is lite_clicks, the tiny model lite
    samples = synthetic_samples(args.masks, args.size)
    marks: list[tuple[float, str]] = []
    start = time.perf_counter()
    out = run_round(tmp / "round", samples, base_checkpoint=base, arch=arch, steps=args.steps,
                    checkpoint_every=max(1, args.steps // 2), image_size=args.image_size,
                    max_clicks=args.max_clicks, on_progress=lambda f, m: marks.append((time.perf_counter(), m)))
    total = time.perf_counter() - start
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, {args.threads} torch "
          f"threads, torch {torch.__version__}, load avg {os.getloadavg()[0]:.1f}")
    print(f"round on {args.masks} masks / {len(samples)} images ({out.n_train_images} train, "
          f"{out.n_heldout_images} held out), {args.steps} steps at {args.image_size}px, base {base}")
    phases: dict[str, float] = {}
    prev_t, prev_name = start, "materialise dataset"
    for t, message in marks:
        name = "fine-tune" if message.startswith("training step") else message
        phases[prev_name] = phases.get(prev_name, 0.0) + t - prev_t
        prev_t, prev_name = t, name
    phases[prev_name] = phases.get(prev_name, 0.0) + time.perf_counter() - prev_t
    for name, seconds in phases.items():
        print(f"  {name:55s} {seconds:7.1f} s")
    print(f"total {total:.1f} s; held-out NoC@85 {out.metrics_before.get('noc@85'):.2f} -> "
          f"{out.metrics_after.get('noc@85'):.2f}, mIoU@1 {out.metrics_before.get('miou@1'):.3f} -> "
          f"{out.metrics_after.get('miou@1'):.3f}")


if __name__ == "__main__":
    main()
