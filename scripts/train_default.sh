#!/usr/bin/env bash
# Train Maskloop's shipped default model (models/default/) on the coco-mval train split, evaluate it on
# the val split beside GrabCut, and export its ONNX decoders. Resumable: rerun to continue after a crash.
#
#   scripts/train_default.sh [DATASET_DIR] [RUN_DIR] [STEPS]
set -euo pipefail
DATASET=${1:-../shared/datasets/coco-mval}
RUN=${2:-runs/default}
STEPS=${3:-3000}
THREADS=${THREADS:-2}

"${MASKLOOP:-.venv/bin/maskloop}" train --arch lite --dataset "$DATASET" --split train --steps "$STEPS" --out "$RUN" \
    --batch-size "${BATCH:-2}" --lr "${LR:-8e-4}" --warmup "${WARMUP:-100}" --iters "${ITERS:-3}" \
    --checkpoint-every "${CKPT_EVERY:-25}" --threads "$THREADS"
