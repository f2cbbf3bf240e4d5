"""Per-prompt mask decoder latency (p50/p95) on this CPU: torch ``SamPredictor`` vs onnxruntime.

One click on a 640×480 image with a precomputed embedding, multimask output, as the interactive
annotator uses it. torch times ``predict_torch`` (prompt encoder + decoder + upsampling to the image);
onnxruntime times the exported web-demo decoder (``workers.sam.onnx``). Random weights of ``--arch``: latency
does not depend on the weights, only on the arch's prompt path (``lite_clicks`` adds the prompt maps; every
other arch has the plain SAM prompt encoder + decoder).

    .venv/bin/python benchmarks/bench_decoder.py [--runs 50] [--ort-threads 1] [--arch lite_clicks|lite]
        [--points 1 6 12 13 16 20]

``--points`` also times refine clicks (that many points plus the padding point, previous mask fed
back) for the exported decoder in each order of the two-way attention: the usual one, the
``few_tokens`` one, and the shipped file that switches between them at ``FEW_TOKENS_MAX_POINTS``.
"""
from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np


def _percentiles(samples: list[float]) -> str:
    ms = np.asarray(samples) * 1000
    return f"p50 {np.percentile(ms, 50):.1f} ms, p95 {np.percentile(ms, 95):.1f} ms (n={len(ms)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--arch", default="lite_clicks",
                        help="lite_clicks (the shipped default: decoder + prompt maps) or lite (plain SAM decoder)")
    parser.add_argument("--ort-threads", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--points", type=int, nargs="*", default=[],
                        help="click counts for the per-order table of refine clicks (see above)")
    args = parser.parse_args()

    import torch

    from workers.sam import SamPredictor, build_sam
    from workers.sam.onnx import OnnxDecoder, export_onnx_decoder

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_sam(args.arch, device="cpu").eval()
    h, w = 480, 640
    rng = np.random.default_rng(0)
    embedding = rng.normal(size=(1, 256, 64, 64)).astype(np.float32) * 0.1
    clicks = np.stack([rng.uniform(0, w, args.runs + 3), rng.uniform(0, h, args.runs + 3)], axis=1)
    print(f"machine: {platform.machine()} cpus={os.cpu_count()} torch={torch.__version__} "
          f"threads={torch.get_num_threads()} ort_threads={args.ort_threads} load={os.getloadavg()[0]:.1f}")

    predictor = SamPredictor(model)
    predictor.set_embedding(embedding, (h, w))
    times = []
    for i, (x, y) in enumerate(clicks):
        coords = predictor.transform.apply_coords_torch(torch.tensor([[[x, y]]], dtype=torch.float32), (h, w))
        start = time.perf_counter()
        predictor.predict_torch(coords, torch.ones(1, 1, dtype=torch.int), multimask_output=True)
        if i >= 3:  # warm-up
            times.append(time.perf_counter() - start)
    print(f"torch predict_torch (3 masks, upsampled to {w}x{h}): {_percentiles(times)}")

    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx_decoder(model, Path(tmp) / "decoder.onnx", return_single_mask=False)
        decoder = OnnxDecoder(path, threads=args.ort_threads)
        times = []
        for i, (x, y) in enumerate(clicks):
            feeds = OnnxDecoder.feeds(embedding, np.array([[x, y]]), np.array([1.0]), (h, w))
            start = time.perf_counter()
            decoder.run(feeds)
            if i >= 3:
                times.append(time.perf_counter() - start)
    print(f"onnxruntime decoder (multimask, upsampled to {w}x{h}): {_percentiles(times)}")
    if args.points:
        _orders_table(model, embedding, (h, w), args.points, args.runs, args.ort_threads, rng)


def _orders_table(model, embedding: np.ndarray, size: tuple[int, int], counts: list[int], runs: int, threads: int,
                  rng: np.random.Generator) -> None:
    """p50 of the single-mask decoder per click count, for each attention order (runs interleaved)."""
    from workers.sam.onnx import FEW_TOKENS_MAX_POINTS, OnnxDecoder, export_onnx_decoder

    h, w = size
    with tempfile.TemporaryDirectory() as tmp:
        orders = {"usual": 0, "few_tokens": 10_000,
                  f"shipped (switch at {FEW_TOKENS_MAX_POINTS})": FEW_TOKENS_MAX_POINTS}
        decoders = {name: OnnxDecoder(export_onnx_decoder(model, Path(tmp) / f"{n}.onnx", max_few_points=n), threads)
                    for name, n in orders.items()}
        print("refine clicks, single-mask decoder, p50 ms: " + " | ".join(orders))
        for count in counts:
            pts = np.stack([rng.uniform(0, w, count), rng.uniform(0, h, count)], axis=1)
            feeds = OnnxDecoder.feeds(embedding, pts, (rng.random(count) < 0.7).astype(np.float32), size,
                                      mask_input=rng.normal(size=(256, 256)).astype(np.float32))
            times: dict[str, list[float]] = {name: [] for name in decoders}
            for i in range(runs + 2):
                for name, decoder in decoders.items():
                    start = time.perf_counter()
                    decoder.run(feeds)
                    if i >= 2:
                        times[name].append(time.perf_counter() - start)
            row = " | ".join(f"{np.percentile(np.asarray(t) * 1000, 50):.1f}" for t in times.values())
            print(f"  {count} clicks + padding ({count + 1} points): {row}")


if __name__ == "__main__":
    main()
