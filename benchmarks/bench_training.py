"""Benchmark: image-encoder latency (compact arch beside vit_b) and training throughput on this machine.

    .venv/bin/python benchmarks/bench_training.py --threads 2 --archs lite vit_b --train-steps 3
    .venv/bin/python benchmarks/bench_training.py --archs lite --train-arch lite_clicks --train-steps 4 \
        --attention-order usual auto usual auto

``--attention-order`` times training with the decoder's two-way attention in the order torch picks
per call (``auto``) or always in the usual one (``usual``), one run per value, in the given order.

Prints measured numbers and the machine; never asserts on time.
"""
from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch


def machine() -> str:
    return (f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
            f"torch {torch.__version__}, {platform.system()}")


def encoder_seconds(arch: str, repeats: int) -> float:
    from workers.sam import build_sam

    model = build_sam(arch).eval()
    x = torch.randn(1, 3, 1024, 1024)
    with torch.inference_mode():
        model.image_encoder(x)  # warm-up
        t = time.perf_counter()
        for _ in range(repeats):
            model.image_encoder(x)
    return (time.perf_counter() - t) / repeats


def synthetic_dataset(root: Path, n: int = 4) -> Path:
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        image = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
        mask = np.zeros((480, 640), np.uint8)
        cv2.circle(mask, (200 + 40 * i, 240), 90, 255, -1)
        image[mask > 0] = (200, 40, 40)
        cv2.imwrite(str(root / "images" / f"s{i:02d}_{i}.png"), image)
        cv2.imwrite(str(root / "masks" / f"s{i:02d}_{i}.png"), mask)
    return root


def training_throughput(arch: str, steps: int, batch_size: int, iters: int) -> float:
    from workers.training import TrainConfig, train

    with tempfile.TemporaryDirectory() as tmp:
        data = synthetic_dataset(Path(tmp) / "data")
        base = dict(arch=arch, dataset_dir=str(data), batch_size=batch_size, iters_per_sample=iters, warmup=1,
                    checkpoint_every=10_000, progress_bar=False)
        train(TrainConfig(out_dir=str(Path(tmp) / "warm"), steps=1, **base))
        t = time.perf_counter()
        train(TrainConfig(out_dir=str(Path(tmp) / "run"), steps=steps, **base))
        return steps * batch_size / (time.perf_counter() - t)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--archs", nargs="+", default=["lite", "vit_b"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train-arch", default="lite")
    parser.add_argument("--train-steps", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--iters", type=int, default=4)
    parser.add_argument("--attention-order", nargs="+", choices=("auto", "usual"), default=["auto"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"machine: {machine()}")
    for arch in args.archs:
        print(f"image encoder {arch}: {encoder_seconds(arch, args.repeats):.3f} s/image (1024x1024, inference)")
    if args.train_steps > 0:
        from workers.sam.modeling.transformer import TwoWayTransformer

        chosen_per_call = TwoWayTransformer.few_tokens_pay
        for order in args.attention_order:
            TwoWayTransformer.few_tokens_pay = chosen_per_call if order == "auto" else (lambda self, n: False)
            ips = training_throughput(args.train_arch, args.train_steps, args.batch_size, args.iters)
            print(f"training {args.train_arch}: {ips:.3f} images/s (batch {args.batch_size}, "
                  f"{args.iters} interactive iterations per mask, attention order {order})")
        TwoWayTransformer.few_tokens_pay = chosen_per_call


if __name__ == "__main__":
    main()
