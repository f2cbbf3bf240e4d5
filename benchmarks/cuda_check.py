"""The model core on a CUDA device against the same model on the CPU, and its GPU speed.

For each arch (``default``: the shipped model with its weights; the others with seeded random
weights, since the comparison needs no official checkpoint) the same synthetic image is embedded
and decoded on the CPU and on the GPU (float32, then bf16 autocast). It prints the largest
embedding difference, the IoU between the CPU's and the GPU's masks for a click and a box, the
encoder's milliseconds per 1024×1024 image and the decoder's per click on the GPU, and runs the
automatic mask generator (16×16 grid) on the GPU. Exits 1 if a float32 GPU mask differs from the
CPU's (IoU < 0.99), 2 if no CUDA device is there. Run from the repository root:

    PYTHONPATH=. python benchmarks/cuda_check.py [--archs default vit_t vit_b] [--json OUT.json]
"""
from __future__ import annotations

import argparse
import json
import sys
import time


def _iou(a, b) -> float:
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 1.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", nargs="+", default=["default", "vit_t", "vit_b"],
                        help="'default' is the shipped model with its trained weights, the others random")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--device", default="cuda", help="the device compared with the CPU (cpu: a dry run)")
    args = parser.parse_args()

    import numpy as np
    import torch

    from workers.sam.automatic import SamAutomaticMaskGenerator
    from workers.sam.build import build_model, build_sam
    from workers.sam.predictor import SamPredictor

    gpu = torch.device(args.device)
    if gpu.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device", file=sys.stderr)
        return 2
    sync = torch.cuda.synchronize if gpu.type == "cuda" else (lambda: None)
    print(f"torch {torch.__version__}, " + (torch.cuda.get_device_name(gpu) if gpu.type == "cuda" else "cpu"))
    rng = np.random.default_rng(0)
    image = np.zeros((480, 640, 3), np.uint8)
    image[...] = rng.integers(40, 90, size=3)
    image[120:360, 200:460] = (200, 60, 50)  # a red rectangle on a dull background, some noise
    image = np.clip(image.astype(int) + rng.integers(-12, 13, image.shape), 0, 255).astype(np.uint8)
    point, box = np.array([[330, 240]]), np.array([190, 110, 470, 370])
    results, worst = [], 1.0
    for arch in args.archs:
        torch.manual_seed(0)
        cpu_model = (build_sam("default") if arch == "default" else build_model(arch)).eval().to("cpu")
        gpu_model = (build_sam("default") if arch == "default" else build_model(arch)).eval()
        gpu_model.load_state_dict(cpu_model.state_dict())
        gpu_model.to(gpu)
        row: dict = {"arch": arch}
        cpu_p, gpu_p = SamPredictor(cpu_model), SamPredictor(gpu_model)
        with torch.no_grad():
            cpu_p.set_image(image)
            gpu_p.set_image(image)
            row["embedding_max_abs_diff"] = float((cpu_p.features - gpu_p.features.cpu()).abs().max())
            for name, kw in (("click", {"point_coords": point, "point_labels": np.array([1])}), ("box", {"box": box})):
                mc, _, _ = cpu_p.predict(**kw, multimask_output=False)
                mg, _, _ = gpu_p.predict(**kw, multimask_output=False)
                row[f"{name}_mask_iou_cpu_vs_gpu"] = _iou(mc[0], mg[0])
                row[f"{name}_mask_pixels_cpu"] = int(mc[0].sum())
                worst = min(worst, row[f"{name}_mask_iou_cpu_vs_gpu"])
            bf = SamPredictor(gpu_model, autocast_dtype=torch.bfloat16)
            bf.set_image(image)
            mb, _, _ = bf.predict(point_coords=point, point_labels=np.array([1]), multimask_output=False)
            mc, _, _ = cpu_p.predict(point_coords=point, point_labels=np.array([1]), multimask_output=False)
            row["click_mask_iou_cpu_vs_gpu_bf16"] = _iou(mc[0], mb[0])
            for label, pred in (("fp32", gpu_p), ("bf16", bf)):
                x = torch.randn(1, 3, 1024, 1024, device=gpu)
                with pred._autocast():
                    gpu_model.image_encoder(x)
                    sync()
                    t = time.perf_counter()
                    for _ in range(args.repeats):
                        gpu_model.image_encoder(x)
                    sync()
                row[f"encoder_ms_{label}"] = 1000 * (time.perf_counter() - t) / args.repeats
            sync()
            t = time.perf_counter()
            for _ in range(args.repeats):
                gpu_p.predict(point_coords=point, point_labels=np.array([1]), multimask_output=True)
            row["decoder_ms_per_click_fp32"] = 1000 * (time.perf_counter() - t) / args.repeats
            t = time.perf_counter()
            masks = SamAutomaticMaskGenerator(gpu_model, points_per_side=16, pred_iou_thresh=0.0,
                                              stability_score_thresh=0.0).generate(image)
            row["automatic_s_16x16"] = time.perf_counter() - t
            row["automatic_masks"] = len(masks)
        print(json.dumps({k: round(v, 5) if isinstance(v, float) else v for k, v in row.items()}))
        results.append(row)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)
    if worst < 0.99:
        print(f"float32 GPU masks differ from the CPU's: IoU {worst:.4f}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
