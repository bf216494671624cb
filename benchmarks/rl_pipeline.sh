#!/usr/bin/env bash
# SFT -> RM -> RL on Taskmaster Coffee with smollm2-135m, RL in both modes, judged against SFT.
# The run behind benchmarks/RL_RESULTS.md. Sized for a 2-core CPU (about 2 hours there).
#
#   bash benchmarks/rl_pipeline.sh [OUT=runs/rl-pipeline] [DATA_DIR=../shared/data]
#
# Each step is skipped when its output already exists, so an interrupted pipeline continues
# where it stopped (a step cut short is rerun from its start: --overwrite).
set -euo pipefail
OUT=${1:-runs/rl-pipeline}
DATA=${2:-../shared/data}
mkdir -p "$OUT"
P="python -m perlhf"
# bf16 autocast for the supervised stages (weights and optimizer stay fp32); RL stays fp32.
# LoRA on the attention projections, the default when RL_RESULTS.md ran (all-linear since 2026-12-03).
COMMON=(--data-dir "$DATA" --max-prompt-tokens 192 --seed 0 --lora-targets attention)

source "$(dirname "$0")/pipeline_step.sh"

# 1. SFT (LoRA r=8, merged): the RL start and the KL anchor.
step sft "$OUT/sft/merged" $P sft --task taskmaster-coffee-dialogues "${COMMON[@]}" --mode lora --lora-rank 8 \
  --merge true --max-steps 32 --batch-size 8 --max-response-tokens 48 --max-eval-examples 64 \
  --eval-every 32 --save-every 32 --mixed-precision bf16 --output-dir "$OUT/sft" --overwrite true

# 2. The training reward model (LoRA r=8 on the SFT model, training conversations shard 1/2) and
#    the judge (LoRA r=8, shard 2/2, another seed): the judge never saw the reward model's data.
RM=(--task taskmaster-coffee "${COMMON[@]}" --model "$OUT/sft/merged" --mode lora --lora-rank 8
    --learning-rate 1e-3 --batch-size 16 --max-steps 80 --eval-every 40 --max-response-tokens 48
    --eval-batch-size 32 --max-eval-examples 200 --mixed-precision bf16 --report-to none --progress false)
step rm "$OUT/rm/summary.json" $P rm train "${RM[@]}" --train-shard 1/2 --output-dir "$OUT/rm" --overwrite
step judge "$OUT/judge/summary.json" $P rm train "${RM[@]}" --train-shard 2/2 --seed 1 \
  --output-dir "$OUT/judge" --overwrite

# 3. RL, full and LoRA, the same reward model, prompts, seeds and budgets. The rates are pinned to the
#    defaults of the day RL_RESULTS.md ran (policy 2e-6 full / 1e-4 LoRA, value 1e-5 / 1e-4, the learned value
#    baseline), so the script still reproduces that file now that `perlhf rl`'s defaults are 3e-5 / 1e-3
#    with RLOO.
RL=(--policy "$OUT/sft/merged" --reward-model "$OUT/rm/final" --task taskmaster-coffee "${COMMON[@]}"
    --max-steps 24 --prompts-per-step 4 --samples-per-prompt 2 --max-new-tokens 32 --max-prompts 96
    --save-every 12 --baseline value)
step rl-full "$OUT/rl-full/summary.json" $P rl "${RL[@]}" --mode full --learning-rate 2e-6 \
  --value-learning-rate 1e-5 --output-dir "$OUT/rl-full" --overwrite
step rl-lora "$OUT/rl-lora/summary.json" $P rl "${RL[@]}" --mode lora --lora-rank 8 \
  --learning-rate 1e-4 --value-learning-rate 1e-4 --output-dir "$OUT/rl-lora" --overwrite

# 4. Each RL policy against the SFT policy on 64 held-out (test) prompts, under the judge.
for mode in full lora; do
  step "eval-$mode" "$OUT/eval-$mode.json" $P eval --sft "$OUT/sft/merged" --rl "$OUT/rl-$mode" \
    --reward-model "$OUT/rm/final" --judge-rm "$OUT/judge/final" --task taskmaster-coffee --data-dir "$DATA" \
    --split test --num-prompts 64 --max-new-tokens 32 --max-prompt-tokens 192 --seed 0 \
    --output "$OUT/eval-$mode.json"
done
echo "all done: $OUT"
