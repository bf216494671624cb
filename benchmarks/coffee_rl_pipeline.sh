#!/usr/bin/env bash
# Taskmaster Coffee RLHF, LoRA against full (issue 11 item 2): SFT -> reward model -> independent
# judge -> RL in both modes -> each RL policy judged against the SFT policy. smollm2-135m, fp32,
# sized for a 2-core CPU (about 1.5 h there at the default sizes).
#
#   [DATA=../shared/data RL_STEPS=60 WATCH=0 ...] bash benchmarks/coffee_rl_pipeline.sh [OUT=runs/coffee-rl]
#   python benchmarks/sentiment_report.py runs/coffee-rl > runs/coffee-rl/report.md   # the same tables
#
# - SFT: LoRA (all-linear, r=8) on the Taskmaster-4 coffee dialogues, merged: the RL start and anchor.
# - reward model: full fine-tuning of the SFT model at lr 5e-5 (the best Coffee reward model on
#   validation, benchmarks/COFFEE_RM_RESULTS.md) on shard 1/2 of the training conversations;
#   one reward model for both RL modes (in LoRA RL it is a separate, frozen model).
# - judge: a *different backbone*, all-MiniLM-L6-v2 (minilm-l6), full fine-tuning on shard 2/2 with
#   another seed: it shares neither weights nor conversations with the reward model. `perlhf eval`
#   reports its own test AUC and gives no verdict when it is within 2 SE of chance.
# - RL: RLOO over 4 samples of 4 prompts per step (16 episodes), 32 new tokens, beta 0.05, the
#   learning rates LORA_LR=1e-3 and FULL_LR=5e-5 (the rates of the 2026-12-06 run; `perlhf rl`'s full
#   default is 3e-5 since 2026-12-07), LoRA and full from the same SFT model; FULL_WARMUP=0 steps
#   of learning-rate warm-up for full RL (the demo's full RL warms up over 5), LoRA none.
# - WATCH=1 logs every RL episode (samples.jsonl), which sentiment_report.py scores with the judge:
#   the reward-hacking watch, training reward beside judge score per window.
# - eval: 128 held-out (test) contexts, the judge's win / tie / loss of RL against SFT.
# - EVAL_ALL=1: then judge both policies again on every test context (328), answers kept
#   (eval-all-MODE.json, eval-all-MODE-answers.jsonl); benchmarks/coffee_eval_split.py splits that
#   verdict into the contexts of the 128-prompt eval and the others (an independent replication).
# Every size can be set from the environment (a smoke test: SFT_STEPS=1 RM_STEPS=1 JUDGE_STEPS=1
# RL_STEPS=1 MAX_EVAL=16 EVAL_PROMPTS=4). Each step is skipped when its output exists, so an
# interrupted pipeline continues where it stopped (a step cut short is rerun from its start).
set -euo pipefail
OUT=${1:-runs/coffee-rl}
DATA=${DATA:-../shared/data}
SFT_STEPS=${SFT_STEPS:-64}
RM_STEPS=${RM_STEPS:-100}
JUDGE_STEPS=${JUDGE_STEPS:-150}
RL_STEPS=${RL_STEPS:-60}
WATCH=${WATCH:-0}
MAX_EVAL=${MAX_EVAL:-none}      # validation/test turns scored by the reward models (none: all)
EVAL_PROMPTS=${EVAL_PROMPTS:-128}
mkdir -p "$OUT"
P="python -m perlhf"
CTX=(--data-dir "$DATA" --max-prompt-tokens 128 --mixed-precision no)   # fp32 everywhere
QUIET=(--report-to none --progress false)

source "$(dirname "$0")/pipeline_step.sh"

step sft "$OUT/sft/merged" $P sft --task taskmaster-coffee-dialogues "${CTX[@]}" "${QUIET[@]}" --mode lora \
  --lora-rank 8 --merge true --max-steps "$SFT_STEPS" --batch-size 8 --max-response-tokens 48 \
  --max-eval-examples 64 --eval-every "$SFT_STEPS" --save-every "$SFT_STEPS" --seed 0 --output-dir "$OUT/sft" \
  --overwrite true

RM=(--task taskmaster-coffee "${CTX[@]}" "${QUIET[@]}" --max-response-tokens 48 --max-eval-examples "$MAX_EVAL")
step rm "$OUT/rm/summary.json" $P rm train "${RM[@]}" --model "$OUT/sft/merged" --mode full --learning-rate 5e-5 \
  --batch-size 16 --max-steps "$RM_STEPS" --eval-every 50 --eval-batch-size 32 --train-shard 1/2 --seed 0 \
  --output-dir "$OUT/rm" --overwrite
step judge "$OUT/judge/summary.json" $P rm train "${RM[@]}" --model minilm-l6 --mode full --learning-rate 1e-4 \
  --warmup-steps 5 --batch-size 32 --max-steps "$JUDGE_STEPS" --eval-every 50 --eval-batch-size 128 \
  --train-shard 2/2 --seed 1 --output-dir "$OUT/judge" --overwrite

RL=(--policy "$OUT/sft/merged" --reward-model "$OUT/rm/final" --task taskmaster-coffee "${CTX[@]}" "${QUIET[@]}"
    --baseline rloo --prompts-per-step 4 --samples-per-prompt 4 --max-new-tokens 32 --max-steps "$RL_STEPS"
    --save-every 10 --seed 0)
if [ "$WATCH" = 1 ]; then RL+=(--sample-every 1 --num-samples-logged 16); else RL+=(--sample-every 5); fi
step rl-lora "$OUT/rl-lora/summary.json" $P rl "${RL[@]}" --mode lora --learning-rate "${LORA_LR:-1e-3}" --output-dir "$OUT/rl-lora" --overwrite
step rl-full "$OUT/rl-full/summary.json" $P rl "${RL[@]}" --mode full --learning-rate "${FULL_LR:-5e-5}" \
  --warmup-steps "${FULL_WARMUP:-0}" --output-dir "$OUT/rl-full" --overwrite

# the judge's verdict, every eval alike; only the prompts and the files written differ
EVAL=(--sft "$OUT/sft/merged" --reward-model "$OUT/rm/final" --judge-rm "$OUT/judge/final" --task taskmaster-coffee
      --data-dir "$DATA" --split test --max-new-tokens 32 --max-prompt-tokens 128 --batch-size 16 --seed 0)
for mode in lora full; do
  step "eval-$mode" "$OUT/eval-$mode.json" $P eval "${EVAL[@]}" --rl "$OUT/rl-$mode" --num-prompts "$EVAL_PROMPTS" \
    --output "$OUT/eval-$mode.json"
done
if [ "${EVAL_ALL:-0}" = 1 ]; then
  REUSE=""   # the second policy is judged against the first one's SFT answers
  for mode in lora full; do
    step "eval-all-$mode" "$OUT/eval-all-$mode.json" $P eval "${EVAL[@]}" --rl "$OUT/rl-$mode" --num-prompts 100000 \
      --output "$OUT/eval-all-$mode.json" --samples-out "$OUT/eval-all-$mode-answers.jsonl" \
      ${REUSE:+--sft-answers-from "$REUSE"}
    REUSE=${REUSE:-"$OUT/eval-all-$mode.json"}
  done
fi
echo "all done: $OUT"
