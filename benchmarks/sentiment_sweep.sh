#!/usr/bin/env bash
# RL hyperparameter sweep on the sentiment task, judged on *validation* prompts (the test split is kept
# for benchmarks/sentiment_pipeline.sh, which runs the chosen settings). Reuses the reward model and
# the judge that sentiment_pipeline.sh trains into BASE (rm/final, judge/final; built here if missing).
#
#   bash benchmarks/sentiment_sweep.sh [BASE=runs/sentiment] [OUT=runs/sentiment-sweep] [RL_STEPS=20]
#   python benchmarks/sentiment_sweep_report.py runs/sentiment-sweep > runs/sentiment-sweep/report.md
#
# Each configuration: RL_STEPS steps of 4 prompts x 4 samples (RLOO unless named), 24 new tokens,
# seed 0; then `perlhf eval` of the policy against the starting policy on 64 validation prompts under
# the judge. Resumable: a configuration whose eval file exists is skipped.
set -euo pipefail
BASE=${1:-runs/sentiment}
OUT=${2:-runs/sentiment-sweep}
RL_STEPS=${3:-20}
mkdir -p "$OUT"
P="python -m perlhf"
TASK=(--task rotten-tomatoes-sentiment --max-prompt-tokens 64)
# fp32 everywhere (the default --mixed-precision auto would pick bf16 on a CPU with AVX512_BF16)
FP32=(--mixed-precision no)
source "$(dirname "$0")/pipeline_step.sh"

if [ ! -e "$BASE/judge/summary.json" ]; then
  # only the RM and judge steps: RL_STEPS=0 is not a run, so stop the pipeline after them
  echo "building the reward model and the judge in $BASE"
  ONLY_MODELS=1 bash "$(dirname "$0")/sentiment_pipeline.sh" "$BASE"
fi

RL=("${FP32[@]}" --policy smollm2-135m --reward-model "$BASE/rm/final" "${TASK[@]}" --prompts-per-step 4
    --samples-per-prompt 4 --max-new-tokens 24 --max-steps "$RL_STEPS" --max-prompts $((RL_STEPS * 4))
    --sample-every 5 --save-every 0 --seed 0)
# name | options
CONFIGS=(
  "lora-all-r8-lr5e-4|--mode lora --lora-targets all-linear --lora-rank 8 --learning-rate 5e-4 --baseline rloo"
  "lora-all-r8-lr1e-3|--mode lora --lora-targets all-linear --lora-rank 8 --learning-rate 1e-3 --baseline rloo"
  "lora-all-r8-lr2e-3|--mode lora --lora-targets all-linear --lora-rank 8 --learning-rate 2e-3 --baseline rloo"
  "full-lr2e-5|--mode full --learning-rate 2e-5 --baseline rloo"
  "full-lr5e-5|--mode full --learning-rate 5e-5 --baseline rloo"
  "lora-attn-r8-lr1e-3|--mode lora --lora-targets attention --lora-rank 8 --learning-rate 1e-3 --baseline rloo"
  "lora-all-r1-lr1e-3|--mode lora --lora-targets all-linear --lora-rank 1 --lora-alpha 16 --learning-rate 1e-3 --baseline rloo"
  "lora-all-r8-lr1e-3-value|--mode lora --lora-targets all-linear --lora-rank 8 --learning-rate 1e-3 --baseline value --value-learning-rate 1e-3"
)
ONLY=${ONLY:-}   # a space-separated list of names to run (default: all)
for entry in "${CONFIGS[@]}"; do
  name=${entry%%|*}; opts=${entry#*|}
  if [ -n "$ONLY" ] && [[ " $ONLY " != *" $name "* ]]; then continue; fi
  # shellcheck disable=SC2086
  step "rl-$name" "$OUT/$name/summary.json" $P rl "${RL[@]}" $opts --output-dir "$OUT/$name" --overwrite
  step "eval-$name" "$OUT/eval-$name.json" $P eval --sft smollm2-135m --rl "$OUT/$name" \
    --reward-model "$BASE/rm/final" --judge-rm "$BASE/judge/final" "${TASK[@]}" --split validation \
    --num-prompts 64 --max-new-tokens 24 --batch-size 16 --seed 0 --output "$OUT/eval-$name.json"
done
echo "all done: $OUT"
