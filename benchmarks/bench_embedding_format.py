"""Embedding wire format: bytes per image and decoder mask agreement of float16/int8 vs float32.

For each image of ``../shared/datasets/coco-mval/images`` (the first ``--images``), the model encodes
it once; the float32 embedding is serialised with each wire dtype, decoded again, and the decoder
is run on the same random prompts (single clicks, three mixed clicks, boxes; all three multimask
outputs) with the original and the round-tripped embedding. Reported: blob bytes, max abs
embedding error, and the IoU of the thresholded masks (logit > 0 at the original size) vs float32.
Prompt outputs whose float32 and quantised masks are both empty count as IoU 1 and are counted.

Model: ``models/default/model.pt`` when it exists (or ``--checkpoint``), else ``lite`` with random
weights (said in the output; a random model is a weaker test: its masks are not object-like).

    .venv/bin/python benchmarks/bench_embedding_format.py [--images 12] [--prompts 16] [--checkpoint PATH]
"""
from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATASET = ROOT.parent / "shared" / "datasets" / "coco-mval" / "images"


def _prompts(rng: np.random.Generator, h: int, w: int, n: int, scale: float) -> list[dict]:
    """Three kinds of random prompts in the resized-1024 frame: B×N points or B boxes."""
    size = np.array([w, h], np.float32)
    clicks = rng.random((n, 1, 2)) * size
    mixed = rng.random((n, 3, 2)) * size
    corners = np.sort(rng.random((n, 2, 2)) * size, axis=1).reshape(n, 4)
    return [
        {"kind": "1 click", "coords": clicks * scale, "labels": np.ones((n, 1))},
        {"kind": "3 clicks", "coords": mixed * scale, "labels": rng.integers(0, 2, (n, 3))},
        {"kind": "box", "boxes": corners * scale},
    ]


def _decode(predictor, prompt: dict):
    import torch

    coords = prompt.get("coords")
    kwargs = {
        "point_coords": None if coords is None else torch.as_tensor(coords, dtype=torch.float32),
        "point_labels": None if coords is None else torch.as_tensor(prompt["labels"], dtype=torch.float32),
        "boxes": None if "boxes" not in prompt else torch.as_tensor(prompt["boxes"], dtype=torch.float32),
    }
    with torch.no_grad():
        masks, _, _ = predictor.predict_torch(**kwargs, multimask_output=True, return_logits=True)
    return (masks > 0).flatten(2).numpy()  # B×3×HW


def _iou(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, int]:
    inter = (a & b).sum(-1)
    union = (a | b).sum(-1)
    both_empty = int((union == 0).sum())
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0).ravel(), both_empty


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=12)
    parser.add_argument("--prompts", type=int, default=16, help="prompts of each kind per image")
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import cv2
    import torch

    from backend.services.embedding_format import decode_embedding, encode_embedding
    from workers.sam.build import DEFAULT_MODEL_PATH, build_sam
    from workers.sam.predictor import SamPredictor

    torch.manual_seed(args.seed)
    if args.checkpoint or DEFAULT_MODEL_PATH.is_file():
        model = build_sam("default", checkpoint=args.checkpoint, device="cpu")
        source = f"trained {model.arch} from {args.checkpoint or DEFAULT_MODEL_PATH}"
    else:
        model = build_sam("lite", device="cpu")
        source = "lite with RANDOM weights (models/default/model.pt does not exist yet)"
    print(f"machine: {platform.node()} {platform.machine()} cpus={os.cpu_count()} torch={torch.__version__} "
          f"threads={torch.get_num_threads()}")
    print(f"model: {source}")
    files = sorted(DATASET.glob("*.jpg"))[:: max(1, 800 // max(args.images, 1))][: args.images]
    if not files:
        raise SystemExit(f"no images under {DATASET}")
    rng = np.random.default_rng(args.seed)
    predictor = SamPredictor(model)
    dtypes = ("float16", "int8")
    ious: dict[str, dict[str, list[np.ndarray]]] = {d: {} for d in dtypes}
    empties = {d: 0 for d in dtypes}
    sizes: dict[str, list[int]] = {d: [] for d in ("float32", *dtypes)}
    errs: dict[str, list[float]] = {d: [] for d in dtypes}
    t0 = time.perf_counter()
    for f in files:
        image = cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB)
        h, w = image.shape[:2]
        predictor.set_image(image)
        emb = predictor.get_image_embedding().numpy()
        input_size = predictor.input_size
        prompts = _prompts(rng, h, w, args.prompts, 1024 / max(h, w))
        reference = [_decode(predictor, p) for p in prompts]
        sizes["float32"].append(len(encode_embedding(emb, model_version="bench", orig_size=(h, w),
                                                     input_size=input_size, dtype="float32")))
        for dtype in dtypes:
            blob = encode_embedding(emb, model_version="bench", orig_size=(h, w), input_size=input_size, dtype=dtype)
            sizes[dtype].append(len(blob))
            back, header = decode_embedding(blob)
            errs[dtype].append(float(np.abs(back - emb).max()))
            predictor.set_embedding(back, tuple(header.orig_size), tuple(header.input_size))
            for p, ref in zip(prompts, reference):
                iou, empty = _iou(ref, _decode(predictor, p))
                ious[dtype].setdefault(p["kind"], []).append(iou)
                empties[dtype] += empty
    n_outputs = len(files) * args.prompts * 3
    print(f"{len(files)} coco-mval images, {args.prompts} prompts of each kind per image, 3 masks per prompt "
          f"({time.perf_counter() - t0:.0f} s)")
    print(f"float32: {np.mean(sizes['float32']) / 1024:.1f} KiB per image")
    for dtype in dtypes:
        allv = np.concatenate([np.concatenate(v) for v in ious[dtype].values()])
        per_kind = ", ".join(f"{k} {np.mean(np.concatenate(v)):.4f}" for k, v in ious[dtype].items())
        print(f"{dtype}: {np.mean(sizes[dtype]) / 1024:.1f} KiB per image, max |emb err| {max(errs[dtype]):.4g}, "
              f"mask IoU vs float32 mean {allv.mean():.4f} (p5 {np.percentile(allv, 5):.4f}, min {allv.min():.4f}; "
              f"{per_kind}); both empty {empties[dtype]} of {n_outputs * 3} masks")


if __name__ == "__main__":
    main()
