"""Image-encoder speed: seconds per 1024×1024 image for ``lite``, ``vit_t`` and ``vit_b``.

Random weights (official checkpoints are not needed for timing; the numbers are the same with real
weights). Prints the machine, torch's thread count and the median of the timed runs.

    .venv/bin/python benchmarks/bench_encoders.py [--archs lite vit_t vit_b] [--repeats 3] [--device cpu]
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", nargs="+", default=["lite", "vit_t", "vit_b"])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per arch (after one warm-up)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = parser.parse_args()

    import torch

    from workers.sam.build import build_model

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"machine: {platform.node()} {platform.machine()} {platform.processor() or ''} "
          f"cpus={os.cpu_count()} torch={torch.__version__} threads={torch.get_num_threads()} device={device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""))
    print("weights: random initialisation (timing only); load average before: "
          + " ".join(f"{v:.2f}" for v in os.getloadavg()) + " (other processes on the machine skew the times)")
    x = torch.randn(1, 3, 1024, 1024, device=device)
    for arch in args.archs:
        torch.manual_seed(0)
        model = build_model(arch).to(device).eval()
        encoder = model.image_encoder
        n_params = sum(p.numel() for p in encoder.parameters())
        times = []
        with torch.inference_mode():
            for i in range(args.repeats + 1):
                if device.type == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                encoder(x)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                if i:  # the first run is a warm-up
                    times.append(time.perf_counter() - start)
        print(f"{arch:6s} encoder params {n_params / 1e6:6.2f} M   median {statistics.median(times):7.3f} s/image   "
              f"min {min(times):7.3f}   max {max(times):7.3f}   ({len(times)} runs)")
        del model, encoder


if __name__ == "__main__":
    main()
