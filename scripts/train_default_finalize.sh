#!/usr/bin/env bash
# Turn a finished default-model run into models/default/: weights, training config, evaluation on the
# val split beside GrabCut (eval.json, eval.png) and the ONNX decoders.
#
#   scripts/train_default_finalize.sh [RUN_DIR] [DATASET_DIR] [GRABCUT_REPORT]
# GRABCUT_REPORT (optional) reuses an earlier GrabCut result on the same val samples.
# EVAL_REPORT=DIR (optional) takes eval.json and eval.png from an evaluation already run on RUN/model.pt
# (e.g. `maskloop eval --refine both`) instead of evaluating again.
set -euo pipefail
RUN=${1:-runs/default}
DATASET=${2:-../shared/datasets/coco-mval}
BASELINE=${3:-}
OUTDIR=${OUTDIR:-models/default}
EVAL_ARGS=${EVAL_ARGS:-}   # e.g. "--max-images 80" (one image per category) on a busy machine
ML=${MASKLOOP:-.venv/bin/maskloop}
PY=${PYTHON:-.venv/bin/python}
mkdir -p "$OUTDIR"

# weights only (no optimizer state), with the training config in the metadata
"$PY" - "$RUN" "$OUTDIR" <<'PY'
import json, sys
from pathlib import Path
import torch
from workers.sam import build_sam, save_checkpoint
run, out = Path(sys.argv[1]), Path(sys.argv[2])
ckpt = run / "model.pt"
if not ckpt.exists():  # an interrupted run: its newest complete checkpoint
    ckpt = sorted(run.glob("ckpt_*.pt"))[-1]
state = torch.load(ckpt, map_location="cpu", weights_only=False)
cfg = dict(state["meta"]["config"])
names = cfg.pop("names") or []
cfg["names"] = f"the {len(names)} names of --split train (workers.training.data.split_dataset)"
model = build_sam(state["arch"], checkpoint=ckpt, device="cpu")
steps = state["meta"].get("steps", state.get("step"))
meta = {"steps": steps, "source": str(ckpt), "train_config": cfg, "train_metrics": state["meta"].get("train_metrics")}
head_fit = state["meta"].get("iou_head_fit")  # set by `maskloop fit-iou-head`
if head_fit:
    meta["iou_head_fit"] = head_fit
save_checkpoint(model, out / "model.pt", state["arch"], meta)
commands = (run / "commands.txt").read_text().splitlines() if (run / "commands.txt").exists() else []
epochs = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()] if (run / "metrics.jsonl").exists() else []
(out / "config.json").write_text(json.dumps({"arch": state["arch"], "steps_done": steps, "source": str(ckpt),
    "commands": commands, "train_config": cfg, "epochs": epochs, **({"iou_head_fit": head_fit} if head_fit else {})},
    indent=2))
print(f"wrote {out / 'model.pt'} ({(out / 'model.pt').stat().st_size / 1e6:.1f} MB)")
PY

"$ML" export-decoder --model "$OUTDIR/model.pt" --out "$OUTDIR/decoder.onnx" || echo "decoder export failed"
"$ML" export-decoder --model "$OUTDIR/model.pt" --out "$OUTDIR/decoder_multimask.onnx" --multimask \
    || echo "multimask decoder export failed"
if [ -n "${EVAL_REPORT:-}" ]; then
    cp "$EVAL_REPORT/eval.json" "$EVAL_REPORT/eval.png" "$OUTDIR/"
    exit 0
fi
"$ML" eval --model "$OUTDIR/model.pt" --dataset "$DATASET" --split val --baseline grabcut \
    ${BASELINE:+--baseline-report "$BASELINE"} --out "$OUTDIR" --threads "${THREADS:-2}" $EVAL_ARGS
