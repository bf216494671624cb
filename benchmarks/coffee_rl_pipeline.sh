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
# - EVAL_VAL=1: the same on every *validation* context (293; eval-val-MODE.json): the split on which RL
#   settings are chosen (benchmarks/COFFEE_RL_RESULTS.md), never the test split.
# - Seeds and sweeps on the same SFT model, reward model and judge: RL_SEED=1 (the RL run's seed; every
#   eval keeps seed 0, so the same contexts and SFT answers), MODES="full" (the modes to run),
#   TAG=-s1 (suffix of the RL folders and eval files: rl-full-s1, eval-all-full-s1.json). An all-context
#   eval reuses the SFT answers of any earlier one of its split in OUT (`--sft-answers-from`, which
#   refuses answers sampled with other options), so each further policy costs only its own answers.
#   EVAL_PROMPTS=0 skips the 128-context eval.
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
MODES=${MODES:-lora full}
RL_SEED=${RL_SEED:-0}
TAG=${TAG:-}
mkdir -p "$OUT"
P="python -m perlhf"
source "$(dirname "$0")/pipeline_step.sh"
source "$(dirname "$0")/coffee_options.sh"   # CTX, QUIET, RM, RM_TRAIN, RM_FULL

step sft "$OUT/sft/merged" $P sft --task taskmaster-coffee-dialogues "${CTX[@]}" "${QUIET[@]}" --mode lora \
  --lora-rank 8 --merge true --max-steps "$SFT_STEPS" --batch-size 8 --max-response-tokens 48 \
  --max-eval-examples 64 --eval-every "$SFT_STEPS" --save-every "$SFT_STEPS" --seed 0 --output-dir "$OUT/sft" \
  --overwrite true

step rm "$OUT/rm/summary.json" $P rm train "${RM[@]}" "${RM_TRAIN[@]}" "${RM_FULL[@]}" --model "$OUT/sft/merged" \
  --seed 0 --output-dir "$OUT/rm" --overwrite
step judge "$OUT/judge/summary.json" $P rm train "${RM[@]}" --model minilm-l6 --mode full --learning-rate 1e-4 \
  --warmup-steps 5 --batch-size 32 --max-steps "$JUDGE_STEPS" --eval-every 50 --eval-batch-size 128 \
  --train-shard 2/2 --seed 1 --output-dir "$OUT/judge" --overwrite

RL=(--policy "$OUT/sft/merged" --reward-model "$OUT/rm/final" --task taskmaster-coffee "${CTX[@]}" "${QUIET[@]}"
    --baseline rloo --prompts-per-step 4 --samples-per-prompt 4 --max-new-tokens 32 --max-steps "$RL_STEPS"
    --save-every 10 --seed "$RL_SEED")
if [ "$WATCH" = 1 ]; then RL+=(--sample-every 1 --num-samples-logged 16); else RL+=(--sample-every 5); fi
for mode in $MODES; do
  case $mode in
    lora) LR=(--learning-rate "${LORA_LR:-1e-3}") ;;
    full) LR=(--learning-rate "${FULL_LR:-5e-5}" --warmup-steps "${FULL_WARMUP:-0}") ;;
    *) echo "MODES: unknown mode '$mode' (lora, full)"; exit 2 ;;
  esac
  step "rl-$mode$TAG" "$OUT/rl-$mode$TAG/summary.json" $P rl "${RL[@]}" --mode "$mode" "${LR[@]}" \
    --output-dir "$OUT/rl-$mode$TAG" --overwrite
done

# the judge's verdict, every eval alike; only the prompts and the files written differ
EVAL=(--sft "$OUT/sft/merged" --reward-model "$OUT/rm/final" --judge-rm "$OUT/judge/final" --task taskmaster-coffee
      --data-dir "$DATA" --max-new-tokens 32 --max-prompt-tokens 128 --batch-size 16 --seed 0)
if [ "$EVAL_PROMPTS" != 0 ]; then
  for mode in $MODES; do
    step "eval-$mode$TAG" "$OUT/eval-$mode$TAG.json" $P eval "${EVAL[@]}" --split test --rl "$OUT/rl-$mode$TAG" \
      --num-prompts "$EVAL_PROMPTS" --output "$OUT/eval-$mode$TAG.json"
  done
fi
all_contexts() {   # all_contexts SPLIT NAME: judge every policy of this run on every context of SPLIT
  local split=$1 name=$2 mode reuse
  for mode in $MODES; do
    reuse=$(ls "$OUT/$name"-*.json 2>/dev/null | head -1 || true)   # any earlier eval of the split: its SFT answers
    step "$name-$mode$TAG" "$OUT/$name-$mode$TAG.json" $P eval "${EVAL[@]}" --split "$split" --rl "$OUT/rl-$mode$TAG" \
      --num-prompts 100000 --output "$OUT/$name-$mode$TAG.json" --samples-out "$OUT/$name-$mode$TAG-answers.jsonl" \
      ${reuse:+--sft-answers-from "$reuse"}
  done
}
if [ "${EVAL_VAL:-0}" = 1 ]; then all_contexts validation eval-val; fi
if [ "${EVAL_ALL:-0}" = 1 ]; then all_contexts test eval-all; fi
echo "all done: $OUT"
