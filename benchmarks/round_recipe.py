"""Experiment: does a retraining round's recipe improve the model on images it has never seen?

    .venv/bin/python benchmarks/round_recipe.py --dataset ../shared/datasets/coco-mval \
        --steps 100 --lr 1e-4 --out runs/recipe_a [--train-encoder] [--threads 2]

The data engine's question, without the server around it: fine-tune the base model (default: the
shipped one) with the code a round runs (``workers.training.train`` with the base model's inherited
recipe, then the IoU-head refit) on "new" annotations, and compare the interactive evaluation
before and after on held-out images. Both come from the validation split, which the shipped model
never trained on: per category the index-08 image is round data, the index-09 image held out
(``--round-images`` / ``--heldout-images`` keep that many, evenly spread over the categories).
Prints NoC@85/90 and mIoU@1/3/5 before and after, the paired per-object differences and the wall
time of each part; writes ``OUT/report.json``. The "before" evaluation is cached in
``OUT/../recipe_before_<n>.json`` so several recipes share it. With the IoU-head refit (the
default) the trained model is also evaluated before the refit (row ``trained``), so the two parts of
a round are told apart; the refit's targets are the installation's refined candidates, as in a
round. Here the refit is always applied (row ``after``); a server round refits only from
``iou_head_min_images`` (100) training images on and keeps the refit only by ``head_verdict``, so
below that the row ``trained`` is what it gives. Evaluations refine masks as the browser does
(``MASKLOOP_MASK_REFINE``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def pick(names: list[str], n: int) -> list[str]:
    if n >= len(names):
        return names
    idx = np.linspace(0, len(names) - 1, n).round().astype(int)
    return [names[i] for i in idx]


def summary(report: dict) -> dict:
    curve = report["miou_curve"]
    return {"noc85": report["noc@85"], "noc90": report["noc@90"], "miou1": curve[0], "miou3": curve[2],
            "miou5": curve[4], "miou10": curve[9] if len(curve) > 9 else None}


def per_object_noc(report: dict, target: float = 0.85) -> np.ndarray:
    from workers.evaluation.metrics import clicks_to_reach

    return np.array([clicks_to_reach(s["ious"], target, report["max_clicks"]) for s in report["per_sample"]],
                    dtype=float)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--base", default=str(REPO / "models" / "default" / "model.pt"))
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--train-encoder", action="store_true")
    ap.add_argument("--no-refit-head", action="store_true")
    ap.add_argument("--round-images", type=int, default=80)
    ap.add_argument("--heldout-images", type=int, default=40)
    ap.add_argument("--max-clicks", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--time-budget-min", type=float, default=None)
    args = ap.parse_args()

    import torch
    torch.set_num_threads(args.threads)
    from backend.services.mask_refine import configured_refine
    from workers.engine.rounds import inherited_recipe
    from workers.evaluation import evaluate_model
    from workers.sam.build import read_checkpoint
    from workers.training import TrainConfig, train
    from workers.training.data import names_for_split, scan_dataset
    from workers.training.iou_head import refit_checkpoint

    val = names_for_split(args.dataset, "val")
    round_names = pick([n for n in val if n.split("_")[0].endswith("08")], args.round_images)
    heldout = pick([n for n in val if n.split("_")[0].endswith("09")], args.heldout_images)
    if not round_names or not heldout:
        raise SystemExit("no index-08/09 validation images found: is this coco-mval?")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    arch = read_checkpoint(Path(args.base))[0] or "lite_clicks"
    times = {}

    t = time.perf_counter()
    before_path = out.parent / f"recipe_before_{len(heldout)}_{Path(args.base).parent.name}.json"
    if before_path.is_file():
        before = json.loads(before_path.read_text())
    else:
        before = evaluate_model(args.base, args.dataset, names=heldout, max_clicks=args.max_clicks, progress=True)
        before_path.write_text(json.dumps(before))
    times["eval_before_s"] = time.perf_counter() - t

    recipe = inherited_recipe(Path(args.base))
    cfg = TrainConfig(arch=arch, dataset_dir=args.dataset, names=round_names, out_dir=str(out / "run"),
                      init_checkpoint=args.base, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                      freeze_image_encoder=not args.train_encoder, checkpoint_every=50, device="cpu",
                      warmup=min(10, max(0, args.steps // 10)), num_threads=args.threads,
                      time_budget_s=args.time_budget_min * 60 if args.time_budget_min else None, **recipe)
    t = time.perf_counter()
    result = train(cfg)
    times["train_s"] = time.perf_counter() - t
    model_path = Path(result.model_path)
    head = trained = None
    if not args.no_refit_head:
        # the trained model with the base model's head too, to tell the training from the refit
        t = time.perf_counter()
        trained = evaluate_model(str(model_path), args.dataset, names=heldout, max_clicks=args.max_clicks,
                                 progress=True)
        times["eval_trained_s"] = time.perf_counter() - t
        t = time.perf_counter()
        # as a round refits it: on the IoUs of the installation's refined candidates
        head = refit_checkpoint(model_path, scan_dataset(args.dataset, round_names), out / "model_head.pt",
                                heldout_every=min(10, len(round_names)), describe={"dataset": "round images"},
                                refine=configured_refine())
        model_path = out / "model_head.pt"
        times["refit_s"] = time.perf_counter() - t
    t = time.perf_counter()
    after = evaluate_model(str(model_path), args.dataset, names=heldout, max_clicks=args.max_clicks, progress=True)
    times["eval_after_s"] = time.perf_counter() - t

    diff = per_object_noc(after) - per_object_noc(before)
    b, a = summary(before), summary(after)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cpus, {args.threads} threads, torch {torch.__version__}, "
          f"load {os.getloadavg()[0]:.1f}")
    print(f"recipe: steps {args.steps}, lr {args.lr}, batch {args.batch_size}, "
          f"{'encoder trained' if args.train_encoder else 'encoder frozen'}, inherited {recipe}; "
          f"{len(round_names)} round images, {len(heldout)} held out")
    print(f"{'':8}" + "".join(f"{k:>9}" for k in b))
    rows = [("before", b)] + ([("trained", summary(trained))] if trained else []) + [("after", a)]
    for label, row in rows:
        print(f"{label:8}" + "".join(f"{v:9.3f}" if v is not None else f"{'-':>9}" for v in row.values()))
    stderr = diff.std(ddof=1) / np.sqrt(len(diff))
    print(f"NoC@85 per object, after - before: mean {diff.mean():+.2f} (std err {stderr:.2f}),"
          f" better on {(diff < 0).sum()}, worse on {(diff > 0).sum()} of {len(diff)}")
    for label, rep in (("trained", trained), ("after", after)):
        if rep is None:
            continue
        first = [np.array([r["ious"][0] for r in x["per_sample"]]) for x in (rep, before)]
        d1 = first[0] - first[1]
        dn = per_object_noc(rep) - per_object_noc(before)
        print(f"{label} - before, per object: IoU after 1 click {d1.mean():+.3f} (std err "
              f"{d1.std(ddof=1) / np.sqrt(len(d1)):.3f}), NoC@85 {dn.mean():+.2f} (std err "
              f"{dn.std(ddof=1) / np.sqrt(len(dn)):.2f})")
    print("times: " + ", ".join(f"{k} {v:.0f}" for k, v in times.items()))
    (out / "report.json").write_text(json.dumps({
        "args": vars(args), "recipe": recipe, "round_images": round_names, "heldout_images": heldout,
        "before": b, "trained": summary(trained) if trained else None, "after": a,
        "noc85_diff_mean": float(diff.mean()), "times": times,
        "head": {k: head[k] for k in ("heldout_before", "heldout_after")} if head else None,
        "steps_done": result.steps, "train_wall_s": result.wall_time_s}, indent=1))


if __name__ == "__main__":
    main()
