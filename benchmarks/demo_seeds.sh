#!/usr/bin/env bash
# The demo's RL step over seeds: how much of `perlhf demo`'s judge verdict is one seed's luck?
# Reuses a finished demo's reward model and judge (reports/demo/runs/rm-lora-r8, rm-judge) and reruns
# its RL (full and LoRA, the demo's exact options) and eval at other RL seeds; the eval seed stays 0,
# so every policy is judged on the same 128 test prompts against the same starting-policy samples.
#
#   bash benchmarks/demo_seeds.sh [DEMO=reports/demo] [OUT=runs/demo-seeds] [SEEDS="1 2"]
#   python benchmarks/demo_seeds_report.py reports/demo runs/demo-seeds     # the table over seeds
#
# About 11 min (full) and 8 min (LoRA) a seed on a 2-core CPU in fp32. Resumable: a finished step
# (its summary or eval file exists) is skipped.
set -euo pipefail
DEMO=${1:-reports/demo}
OUT=${2:-runs/demo-seeds}
SEEDS=${3:-"1 2"}
mkdir -p "$OUT"
P="python -m perlhf"
source "$(dirname "$0")/pipeline_step.sh"
RM="$DEMO/runs/rm-lora-r8/final"
JUDGE="$DEMO/runs/rm-judge/final"
for f in "$RM" "$JUDGE"; do
  [ -d "$f" ] || { echo "no $f: run perlhf demo --report-dir $DEMO first" >&2; exit 2; }
done
# CONFIGS: mode[:learning-rate[:beta[:warm-up steps]]] each. A bare mode is the demo's own setting (its RL rate
# and warm-up, from perlhf/demo.py; run names rl-<mode>-s<seed>). A setting names the run
# rl-<mode>[-lr<rate>][-beta<beta>][-warm<steps>]-s<seed> (benchmarks/demo_rl_sweep.sh); its empty fields take
# the demo's rate and beta but no warm-up (e.g. full:3e-5 has none, full:3e-5::5 has 5). SPLIT: the
# prompts judged (test; the sweep uses validation). DROP_WEIGHTS=1 deletes each policy once judged.
CONFIGS=${CONFIGS:-"full lora"}
SPLIT=${SPLIT:-test}
# The demo's own RL and eval commands (perlhf/demo.py, not retyped here); a setting's options come after them
demo_args RL_FULL rl-full --reward-dir "$RM"
demo_args RL_LORA rl-lora --reward-dir "$RM"
demo_args EVAL eval --reward-dir "$RM" --judge-dir "$JUDGE"
REUSE=""   # the first eval's report: later evals judge against its SFT answers (perlhf eval --sft-answers-from)
for seed in $SEEDS; do
  for config in $CONFIGS; do
    IFS=: read -r mode lr beta warm <<< "$config"
    if [ "$mode" = full ]; then RL=("${RL_FULL[@]}"); else RL=("${RL_LORA[@]}"); fi
    SET=()   # a setting: its rate and beta, and its warm-up (none unless given); a bare mode: the demo's own
    if [ "$config" != "$mode" ]; then SET=(${lr:+--learning-rate "$lr"} ${beta:+--beta "$beta"} --warmup-steps "${warm:-0}"); fi
    name="$mode${lr:+-lr$lr}${beta:+-beta$beta}${warm:+-warm$warm}"
    run="$OUT/rl-$name-s$seed"
    step "rl-$name-s$seed" "$run/summary.json" $P "${RL[@]}" "${SET[@]}" --report-to none --progress false \
      --seed "$seed" --output-dir "$run" --overwrite
    rm -rf "$run/checkpoints"
    step "eval-$name-s$seed" "$OUT/eval-$name-s$seed.json" $P "${EVAL[@]}" --rl "$run" --split "$SPLIT" \
      --output "$OUT/eval-$name-s$seed.json" --samples-out "$OUT/eval-$name-s$seed-answers.jsonl" \
      ${REUSE:+--sft-answers-from "$REUSE"}
    REUSE=${REUSE:-"$OUT/eval-$name-s$seed.json"}
    if [ "${DROP_WEIGHTS:-0}" = 1 ]; then rm -rf "$run/final"; fi   # judged: its metrics and answers are kept
  done
done
echo "all done: $OUT"
