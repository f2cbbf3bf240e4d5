#!/usr/bin/env bash
# Fine-tune the shipped default model on one GPU with several data-parallel processes (torchrun; they
# share the GPU and average their gradients, because one process alone cannot keep it busy with the
# small decoder calls of the simulated sessions), then check the model core on CUDA against the CPU.
#
#   DATA=DIR RUN=runs/gpu BUDGET=430 PROCS=6 BATCH=4 LR=4e-4 scripts/train_gpu.sh
#
# DATA holds the images and masks to train on (e.g. the coco-mval train split); BUDGET is the
# training time in seconds (the cosine decay follows it). Without torchrun's processes (an error in
# the first minute) it falls back to one process for the time left. Writes RUN/model.pt,
# RUN/metrics.jsonl, RUN/train.log and, with CHECK=1 (the default), RUN/cuda_check.json.
set -uo pipefail
DATA=${DATA:?set DATA to a dataset folder}
RUN=${RUN:-runs/gpu}
PROCS=${PROCS:-6}
BATCH=${BATCH:-4}
BUDGET=${BUDGET:-430}
LR=${LR:-4e-4}
INIT=${INIT:-models/default/model.pt}
PY=${PY:-python3}
export PYTHONUNBUFFERED=1 GLOO_SOCKET_IFNAME=${GLOO_SOCKET_IFNAME:-lo} OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
mkdir -p "$RUN"
DEVICE=$($PY -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')")
ARGS=(dataset_dir="$DATA" arch=lite_clicks init_checkpoint="$INIT" device="$DEVICE" steps=20000
      batch_size="$BATCH" lr="$LR" warmup=40 iters_per_sample=4 warm_clicks=10 warm_prob=0.5 focal_weight=1
      dice_weight=1 num_workers=2 num_threads=2 checkpoint_every=200 log_every=20 progress_bar=false)
echo "device $DEVICE, $PROCS processes x $BATCH images per step, ${BUDGET} s, lr $LR" | tee "$RUN/train.log"
START=$SECONDS
$PY -m torch.distributed.run --standalone --nproc_per_node "$PROCS" -m workers.training "${ARGS[@]}" \
    out_dir="$RUN" time_budget_s="$BUDGET" 2>&1 | tee -a "$RUN/train.log"
if [ ! -f "$RUN/model.pt" ]; then
    LEFT=$((BUDGET - (SECONDS - START)))
    if [ "$LEFT" -gt 60 ]; then
        echo "torchrun produced no model: one process for the ${LEFT} s left" | tee -a "$RUN/train.log"
        rm -rf "$RUN/single"
        $PY -m workers.training "${ARGS[@]}" out_dir="$RUN/single" time_budget_s="$LEFT" 2>&1 \
            | tee -a "$RUN/train.log"
        cp "$RUN/single/model.pt" "$RUN/single/metrics.jsonl" "$RUN/" 2>/dev/null
    fi
fi
if [ "${CHECK:-1}" = 1 ] && [ "$DEVICE" = cuda ]; then
    PYTHONPATH=. timeout "${CHECK_TIMEOUT:-90}" $PY benchmarks/cuda_check.py --json "$RUN/cuda_check.json" 2>&1 \
        | tee -a "$RUN/train.log"
fi
[ -f "$RUN/model.pt" ]
