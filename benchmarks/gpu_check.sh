#!/bin/bash
# GPU checks, one script (docs/RESULTS.md, "On a GPU"): mixed-precision training on generated motion, an
# adversarial fine-tune with robust validation under 16-mixed, attack.py's ADMM on CUDA against the UTD HCN
# (compare with the CPU run of benchmarks/attack_utd.py), and the ADMM cost ratios on the GPU at batch 32.
# Needs the UTD checkpoints of benchmarks/train_utd.py and the emotion recognizer of RESULTS' attack section.
#     OUT=runs/gpu_check bash benchmarks/gpu_check.sh
OUT=${OUT:-runs/gpu_check}
mkdir -p "$OUT" /tmp/gpu_check
export PYTHONUNBUFFERED=1 WANDB_MODE=offline
PY=${PYTHON:-python3}
nvidia-smi -L
$PY -c "import torch, pytorch_lightning as pl; print('torch', torch.__version__, 'pl', pl.__version__, torch.cuda.get_device_name())"
step() {  # step LOGNAME TITLE COMMAND...: run, keep the log, print its tail, exit status and seconds
    local log=$1 title=$2 start=$SECONDS
    shift 2
    echo "=== $title"
    "$@" >"$OUT/$log" 2>&1
    local rc=$?
    tail -4 "$OUT/$log"
    echo "rc=$rc seconds=$((SECONDS - start))"
}
T=/tmp/gpu_check
step train_amp.log "train, 16-mixed" timeout 150 $PY train.py experiment=demo trainer=gpu trainer.max_epochs=3 \
    logger=csv out_dir=$T/train callbacks.figures=null
step adv_amp.log "adversarial fine-tune, 16-mixed, robust validation" timeout 200 $PY train.py experiment=demo_adv \
    trainer=gpu trainer.max_epochs=1 logger=csv out_dir=$T/adv init_from=$T/train/checkpoints/last.ckpt \
    'callbacks.robust_validation={every_n_epochs: 1, num_samples: 32, attacks: {admm: {max_iter: 5}, pgd: {eps: 0.02, steps: 5}}, budgets: {admm: {linf_mm: 20}}}'
step attack_cuda.log "attack.py, ADMM on CUDA, UTD HCN, 64 clips" timeout 200 $PY attack.py \
    ckpt=runs/bench_utd/utd_hcn/checkpoints/last.ckpt trainer=gpu limit=64 out_dir=$T/attack
cp $T/attack/metrics.json "$OUT/attack_hcn_cuda_metrics.json"
step cost.log "ADMM cost ratios on CUDA, batch 32" timeout 240 $PY benchmarks/attack_utd.py \
    --ckpt hcn=runs/bench_utd/utd_hcn/checkpoints/last.ckpt sgn=runs/bench_utd/utd_sgn/checkpoints/last.ckpt \
    agcn=runs/bench_utd/utd_agcn_joint/checkpoints/last.ckpt \
    --emotion-ckpt runs/bench_emotion/e100/fold0/checkpoints/last.ckpt \
    --only cost --cost-repeats 3 --device cuda --out "$OUT/attack_utd_cost_cuda.json"
