"""Automatic mask generator speed: seconds per image (default 32×32 grid) on coco-mval images.

Uses ``models/default/model.pt`` when it exists, otherwise a randomly initialised ``lite`` model
(timing is the same; mask counts are meaningless then, and the output says so). Prints the machine,
torch's thread count, per-image seconds (encoder included), the encoder share and mask counts.

    .venv/bin/python benchmarks/bench_automatic.py [--images 3] [--points-per-side 32] [--crop-n-layers 0] [--decoder onnx]
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_IMAGES = REPO.parent / "shared" / "datasets" / "coco-mval" / "images"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=3, help="how many images (sorted by name)")
    parser.add_argument("--image-dir", type=Path, default=DEFAULT_IMAGES)
    parser.add_argument("--points-per-side", type=int, default=32)
    parser.add_argument("--points-per-batch", type=int, default=64)
    parser.add_argument("--crop-n-layers", type=int, default=0)
    parser.add_argument("--decoder", choices=("auto", "torch", "onnx"), default="auto",
                        help="grid decoder: torch, onnx (onnxruntime) or auto (onnx on a CPU)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = parser.parse_args()

    import cv2
    import torch

    from workers.sam import SamAutomaticMaskGenerator, SamPredictor, build_sam

    if args.threads:
        torch.set_num_threads(args.threads)
    checkpoint = REPO / "models" / "default" / "model.pt"
    if checkpoint.is_file():
        model, which = build_sam("default", device="cpu"), f"default ({checkpoint})"
    else:
        torch.manual_seed(0)
        model, which = build_sam("lite", device="cpu"), "lite with RANDOM weights (models/default/model.pt absent)"
    model.eval()
    paths = sorted(p for p in args.image_dir.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    paths = paths[: args.images]
    if not paths:
        raise SystemExit(f"no images in {args.image_dir}")
    print(f"machine: {platform.machine()} {platform.processor() or ''} cpus={os.cpu_count()} "
          f"torch={torch.__version__} threads={torch.get_num_threads()} load={os.getloadavg()[0]:.1f}")
    print(f"model: {which}")
    print(f"grid {args.points_per_side}x{args.points_per_side}, batch {args.points_per_batch}, "
          f"crop_n_layers {args.crop_n_layers}, default thresholds, decoder {args.decoder}")
    generator = SamAutomaticMaskGenerator(model, points_per_side=args.points_per_side,
                                          points_per_batch=args.points_per_batch, crop_n_layers=args.crop_n_layers,
                                          decoder=args.decoder)
    predictor = SamPredictor(model)
    totals, encodes = [], []
    for path in paths:
        image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        start = time.perf_counter()
        predictor.set_image(image)
        encodes.append(time.perf_counter() - start)
        start = time.perf_counter()
        with torch.inference_mode():
            records = generator.generate(image)
        totals.append(time.perf_counter() - start)
        print(f"{path.name} {image.shape[1]}x{image.shape[0]}: {totals[-1]:.2f} s/image "
              f"(encoder alone {encodes[-1]:.2f} s), {len(records)} masks")
    print(f"median {statistics.median(totals):.2f} s/image over {len(totals)} images; "
          f"median encoder {statistics.median(encodes):.2f} s")


if __name__ == "__main__":
    main()
