#!/usr/bin/env bash
# Reward hacking against a single LoRA reward model, and an ensemble of LoRA reward models on the same
# backbone as the guard (issue 14). The offline sentiment task, smollm2-135m, fp32, sized for a 2-core CPU;
# the run behind benchmarks/ENSEMBLE_RESULTS.md.
#
#   [RL_LR=2e-3 K=4 AGG=mean-minus-std] bash benchmarks/ensemble_pipeline.sh [OUT=runs/ensemble] [RL_STEPS=40]
#
# - single: one LoRA reward model (all-linear, r=8, lr 1e-3, 40 steps, training reviews shard 1/2, seed 0),
#   exactly the reward model of benchmarks/sentiment_pipeline.sh;
# - ensemble: K such reward models in one run (`perlhf rm --ensemble K`), each on a bootstrap resample of
#   the same shard, seeds 0..K-1, on one frozen backbone;
# - judge: all-MiniLM-L6-v2, full fine-tuning on shard 2/2 (shares neither weights nor data with either);
# - RL: LoRA policy, RLOO, 4 prompts x 4 samples, 24 new tokens, at the learning rate that over-optimised
#   the single reward model in the validation sweep (2e-3: highest training reward, degenerate text,
#   lower judge win rate than 1e-3; SENTIMENT_RESULTS.md), for RL_STEPS steps, every episode logged;
#   the same seed, prompts and options against the single RM and against the ensemble (AGG);
# - eval: each RL policy against the starting policy on 128 held-out test prompts under the judge.
# Each step is skipped when its output already exists (resumable; a step cut short reruns from its start).
set -euo pipefail
OUT=${1:-runs/ensemble}
RL_STEPS=${2:-40}
RL_LR=${RL_LR:-2e-3}
K=${K:-4}
AGG=${AGG:-mean-minus-std}
mkdir -p "$OUT"
P="python -m perlhf"
TASK=(--task rotten-tomatoes-sentiment --max-prompt-tokens 64)
FP32=(--mixed-precision no)  # the default auto would pick bf16 on a CPU with AVX512_BF16

source "$(dirname "$0")/pipeline_step.sh"

RM=("${TASK[@]}" --max-response-tokens 40 --max-train-examples 2000 --max-eval-examples 256
    --eval-batch-size 64 --eval-untrained true --report-to none --progress false "${FP32[@]}")
LORA_RM=(--model smollm2-135m --mode lora --lora-targets all-linear --learning-rate 1e-3 --batch-size 16
         --max-steps 40 --eval-every 20 --train-shard 1/2 --seed 0)
step rm "$OUT/rm/summary.json" $P rm train "${RM[@]}" "${LORA_RM[@]}" --output-dir "$OUT/rm" --overwrite
step ensemble "$OUT/ensemble/summary.json" $P rm train "${RM[@]}" "${LORA_RM[@]}" --ensemble "$K" \
  --ensemble-data bootstrap --output-dir "$OUT/ensemble" \
  "$([ -f "$OUT/ensemble/config.yaml" ] && echo --resume || echo --overwrite)"  # finished members are kept
step judge "$OUT/judge/summary.json" $P rm train "${RM[@]}" --model minilm-l6 --mode full \
  --learning-rate 1e-4 --warmup-steps 5 --batch-size 32 --max-steps 60 --eval-every 30 \
  --max-eval-examples 512 --eval-batch-size 128 --train-shard 2/2 --seed 1 --output-dir "$OUT/judge" --overwrite

RL=("${FP32[@]}" --policy smollm2-135m "${TASK[@]}" --baseline rloo --prompts-per-step 4 --samples-per-prompt 4
    --max-new-tokens 24 --max-steps "$RL_STEPS" --max-prompts $((RL_STEPS * 4)) --save-every 10 --seed 0
    --mode lora --lora-targets all-linear --learning-rate "$RL_LR" --sample-every 1 --num-samples-logged 16
    --report-to none --progress false)
step rl-single "$OUT/rl-single/summary.json" $P rl "${RL[@]}" --reward-model "$OUT/rm/final" \
  --output-dir "$OUT/rl-single" --overwrite
step rl-ensemble "$OUT/rl-ensemble/summary.json" $P rl "${RL[@]}" --reward-model "$OUT/ensemble/final" \
  --ensemble-reward "$AGG" --output-dir "$OUT/rl-ensemble" --overwrite

for run in single ensemble; do
  step "eval-$run" "$OUT/eval-$run.json" $P eval --sft smollm2-135m --rl "$OUT/rl-$run" \
    --reward-model "$OUT/rm/final" --judge-rm "$OUT/judge/final" "${TASK[@]}" --split test \
    --num-prompts 128 --max-new-tokens 24 --batch-size 16 --seed 0 --output "$OUT/eval-$run.json"
done
echo "all done: $OUT"
