#!/bin/bash
# GPU checks, one script (docs/RESULTS.md, "On a GPU"), the ones that matter most first: attack.py's ADMM
# on CUDA against the UTD HCN (its own steps compiled: `attack.compile=true`; compare with the CPU run of
# benchmarks/attack_utd.py), the ADMM cost ratios on CUDA with those steps run eagerly and compiled, the
# fused 2s-AGCN attacked on CUDA, then mixed-precision training on generated motion and an adversarial
# fine-tune with robust validation under 16-mixed.
# Needs the UTD checkpoints of benchmarks/train_utd.py (HCN, SGN, 2s-AGCN joint and bone), their data cache
# and the slim emotion recognizer of RESULTS' attack section.
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
    "$@" >"/tmp/gpu_check/$log" 2>&1
    local rc=$?
    grep -v -i warn "/tmp/gpu_check/$log" | tail -4
    echo "rc=$rc seconds=$((SECONDS - start))"
}
T=/tmp/gpu_check
U=runs/bench_utd
HCN=$U/utd_hcn/checkpoints/last.ckpt
step attack_hcn.log "attack.py, ADMM on CUDA (steps compiled), UTD HCN, 64 clips" timeout 150 $PY attack.py \
    ckpt=$HCN trainer=gpu limit=64 attack.compile=true out_dir=$T/attack_hcn
cp $T/attack_hcn/metrics.json "$OUT/attack_hcn_cuda_metrics.json"
COST=(benchmarks/attack_utd.py --ckpt hcn=$HCN sgn=$U/utd_sgn/checkpoints/last.ckpt
    agcn=$U/utd_agcn_joint/checkpoints/last.ckpt --emotion-ckpt runs/bench_emotion_slim/fold0_gpu/last.ckpt
    --only cost --batch-size 256 --cost-clips 399 --cost-repeats 2 --device cuda
    --out "$OUT/attack_utd_cost_cuda.json")
step cost_eager.log "ADMM cost ratios on CUDA, eager steps" timeout 150 $PY "${COST[@]}" \
    --cost-configs admm admm_emotion_linear
step cost_compiled.log "ADMM cost ratios on CUDA, compiled steps" timeout 200 $PY "${COST[@]}" \
    --cost-configs admm_compiled admm_emotion_linear_compiled
step attack_fused.log "attack.py, ADMM on CUDA, fused 2s-AGCN, 64 clips" timeout 90 $PY attack.py \
    "ckpt=[$U/utd_agcn_joint/checkpoints/last.ckpt,$U/utd_agcn_bone/checkpoints/last.ckpt]" trainer=gpu \
    limit=64 out_dir=$T/attack_fused
cp $T/attack_fused/metrics.json "$OUT/attack_agcn_fused_cuda_metrics.json"
step train_amp.log "train, 16-mixed" timeout 90 $PY train.py experiment=demo trainer=gpu trainer.max_epochs=3 \
    logger=csv out_dir=$T/train callbacks.figures=null
step adv_amp.log "adversarial fine-tune, 16-mixed, robust validation" timeout 150 $PY train.py experiment=demo_adv \
    trainer=gpu trainer.max_epochs=1 logger=csv out_dir=$T/adv init_from=$T/train/checkpoints/last.ckpt \
    'callbacks.robust_validation={_target_: lightning_skel.callbacks.RobustValidation, every_n_epochs: 1, num_samples: 32, attacks: {admm: {name: admm, max_iter: 5}, pgd: {name: pgd, eps: 0.02, steps: 5}}, budgets: {admm: {linf_mm: 20}}}'
grep -h -i -E "error|Traceback" $T/*.log | head -5
