"""Per-prompt mask decoder latency (p50/p95) on this CPU: torch ``SamPredictor`` vs onnxruntime.

One click on a 640×480 image with a precomputed embedding, multimask output, as the interactive
annotator uses it. torch times ``predict_torch`` (prompt encoder + decoder + upsampling to the image);
onnxruntime times the exported web-demo decoder (``workers.sam.onnx``). Random weights of ``--arch``: latency
does not depend on the weights, only on the arch's prompt path (``lite_clicks`` adds the prompt maps; every
other arch has the plain SAM prompt encoder + decoder).

    .venv/bin/python benchmarks/bench_decoder.py [--runs 50] [--ort-threads 1] [--arch lite_clicks|lite]
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


if __name__ == "__main__":
    main()
