#!/usr/bin/env bash
# Taskmaster Coffee reward models on the *SFT* model, LoRA against full, over seeds (issue 11 item 3).
# coffee_rm_pipeline.sh trained them on the base instruct model (LoRA 0.623 ± 0.028 over 3 seeds);
# coffee_rl_pipeline.sh trains its full reward model on its SFT model (0.741 at seed 0). This script
# trains both modes on that SFT model with the RL pipeline's reward-model options exactly (training
# shard 1/2, 100 steps x 16, validation every 50 steps on all 320 validation turns, the best checkpoint
# by validation AUC scored on all 349 test turns, fp32), so their AUCs compare at the same budget:
#
#   bash benchmarks/coffee_rm_sft_seeds.sh [SFT=runs/coffee-rl/sft/merged] [OUT=runs/coffee-rm-sft] [SEEDS="0 1 2"]
#   python benchmarks/coffee_rm_report.py runs/coffee-rm-sft --lora lora-all-r8-lr3e-4 --full full-lr5e-5
#
# - LoRA: all-linear r8 at lr 3e-4, the LoRA rate chosen on validation in coffee_rm_pipeline.sh;
#   full: lr 5e-5 (the same file's best full rate, and the RL pipeline's).
# - The RL pipeline's own reward model is the full run at seed 0: when REUSE_FULL_S0 names its folder
#   (e.g. runs/coffee-rl/rm), it is linked as full-lr5e-5-s0 instead of trained again.
# About 15 min (LoRA) and 16 min (full) a run on a 2-core CPU. Resumable: a run whose summary.json
# exists is skipped. Checkpoints are deleted once a run has finished; full runs' final weights too
# (KEEP_FULL=1 keeps them), LoRA's small final adapter stays.
set -euo pipefail
SFT=${1:-runs/coffee-rl/sft/merged}
OUT=${2:-runs/coffee-rm-sft}
SEEDS=${3:-"0 1 2"}
DATA=${DATA:-../shared/data}
MAX_EVAL=none   # every validation and test turn
RM_STEPS=100
[ -f "$SFT/config.json" ] || { echo "no SFT model at $SFT: run benchmarks/coffee_rl_pipeline.sh first" >&2; exit 2; }
mkdir -p "$OUT"
P="python -m perlhf"
source "$(dirname "$0")/pipeline_step.sh"
source "$(dirname "$0")/coffee_options.sh"   # the RL pipeline's reward-model options: RM, RM_TRAIN, RM_FULL
if [ -n "${REUSE_FULL_S0:-}" ] && [ ! -e "$OUT/full-lr5e-5-s0" ]; then
  [ -f "$REUSE_FULL_S0/summary.json" ] || { echo "REUSE_FULL_S0=$REUSE_FULL_S0: no summary.json" >&2; exit 2; }
  ln -s "$(realpath "$REUSE_FULL_S0")" "$OUT/full-lr5e-5-s0"
fi
for seed in $SEEDS; do
  for run in lora-all-r8-lr3e-4 full-lr5e-5; do
    case $run in
      lora-*) MODE=(--mode lora --lora-targets all-linear --lora-rank 8 --learning-rate 3e-4) ;;
      full-*) MODE=("${RM_FULL[@]}") ;;
    esac
    name="$run-s$seed"
    step "$name" "$OUT/$name/summary.json" $P rm train "${RM[@]}" "${RM_TRAIN[@]}" "${MODE[@]}" --model "$SFT" \
      --seed "$seed" --output-dir "$OUT/$name" --overwrite
    if [ ! -L "$OUT/$name" ]; then
      rm -rf "$OUT/$name/checkpoints"
      if [ "$run" = full-lr5e-5 ] && [ "${KEEP_FULL:-0}" != 1 ]; then rm -rf "$OUT/$name/final"; fi
    fi
  done
done
echo "all done: $OUT"
