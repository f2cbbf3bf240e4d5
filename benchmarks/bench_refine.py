"""Does edge-aware refinement (``workers/sam/refine.py``) help the interactive protocol, and what does it cost?

Runs the evaluation protocol of ``docs/evaluation.md`` with the model's decoder alone and with each
refinement setting, on the same images, and prints NoC@85/90, mIoU after 1/3/5/10/20 clicks and the
milliseconds the refinement adds per click (numpy, this machine).

    .venv/bin/python benchmarks/bench_refine.py --split train --max-images 40 \
        --settings 320,12,0.01,0 320,12,0.01,3 320,12,0.01,3,16,3
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default", help="'default' or a checkpoint")
    ap.add_argument("--dataset", default=str(Path(__file__).resolve().parents[2] / "shared/datasets/coco-mval"))
    ap.add_argument("--split", default="train", help="train | val | all (tune on train, confirm on val)")
    ap.add_argument("--max-images", type=int, default=40)
    ap.add_argument("--max-clicks", type=int, default=20)
    ap.add_argument("--settings", nargs="*", default=["320,12,0.01,0", "320,12,0.01,3"],
                    help="refinements to compare, each WORK_SIZE,RADIUS,EPS[,COLOUR[,BINS[,CLIP]]] "
                         "(colour weight 0 = no colour term; omitted parts take RefineParams' defaults)")
    ap.add_argument("--no-baseline", action="store_true", help="skip the unrefined decoder")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import torch

    from backend.services.mask_refine import RefinedPredictor, RefineParams
    from workers.evaluation.interactive import evaluate, iter_dataset_samples, load_predictor
    from workers.training.data import names_for_split

    torch.set_num_threads(args.threads)
    names = names_for_split(args.dataset, args.split)
    base = load_predictor(args.model)
    runs: list[tuple[str, object]] = [] if args.no_baseline else [("decoder alone", base)]
    for spec in args.settings:
        parts = spec.split(",")
        if not 3 <= len(parts) <= 6:
            ap.error(f"--settings {spec!r}: expected WORK_SIZE,RADIUS,EPS[,COLOUR[,BINS[,CLIP]]]")
        names_types = [("work_size", int), ("radius", int), ("eps", float), ("colour", float),
                       ("colour_bins", int), ("colour_clip", float)]
        params = RefineParams(**{name: kind(v) for (name, kind), v in zip(names_types, parts)})
        runs.append((f"guided {'/'.join(parts)}", RefinedPredictor(base, params)))

    print(f"{args.model} on {args.max_images} {args.split} images of {args.dataset}, {args.max_clicks} clicks")
    print(f"{'setting':24s} {'NoC@85':>7s} {'NoC@90':>7s}  mIoU@1   @3     @5     @10    @20    mean  refine ms/click")
    for label, predictor in runs:
        timed = _Timed(predictor)
        count, samples = iter_dataset_samples(args.dataset, names, max_images=args.max_images)
        with torch.inference_mode():
            rep = evaluate(timed, samples, max_clicks=args.max_clicks)
        c = rep["miou_curve"]
        extra = timed.refine_ms()
        print(f"{label:24s} {rep['noc@85']:7.2f} {rep['noc@90']:7.2f}  "
              + " ".join(f"{c[k - 1]:.3f}" for k in (1, 3, 5, 10, 20) if k <= len(c))
              + f"  {np.mean(c):.3f}  {extra}", flush=True)


class _Timed:
    """Measures the time a RefinedPredictor spends refining (its predict minus the inner predict)."""

    def __init__(self, predictor):
        self.p = predictor
        self.outer: list[float] = []
        self.inner: list[float] = []
        inner = getattr(predictor, "predictor", None)
        if inner is not None:
            original = inner.predict

            def timed_inner(*a, **k):
                t = time.perf_counter()
                out = original(*a, **k)
                self.inner.append(time.perf_counter() - t)
                return out

            self._restore = (inner, original)
            inner.predict = timed_inner

    def set_image(self, image):
        self.p.set_image(image)

    def predict(self, **kw):
        t = time.perf_counter()
        out = self.p.predict(**kw)
        self.outer.append(time.perf_counter() - t)
        return out

    def refine_ms(self) -> str:
        if not self.inner:
            return "-"
        diff = 1000 * (np.array(self.outer) - np.array(self.inner))
        return f"p50 {np.percentile(diff, 50):.1f} / p95 {np.percentile(diff, 95):.1f}"


if __name__ == "__main__":
    main()
