#!/usr/bin/env bash
# The demo's RL step on *validation* prompts, over settings and seeds: which full-tuning (or LoRA) RL
# setting makes `perlhf demo`'s judge verdict hold across seeds? Choosing on validation keeps the test
# prompts of the demo's table unseen.
#
#   [CONFIGS="full:5e-5 full:3e-5"] [SEEDS="0 1 2"] bash benchmarks/demo_rl_sweep.sh [OUT=runs/demo-rl-sweep]
#   python benchmarks/demo_seeds_report.py runs/demo-rl-sweep runs/demo-rl-sweep     # the table
#
# 1. The demo's LoRA reward model and MiniLM judge, with the demo's exact commands (fp32, from
#    `python -m perlhf.demo`), into
#    OUT/runs/rm-lora-r8 and OUT/runs/rm-judge (skipped when a demo's are linked there).
# 2. For each CONFIG (mode:learning-rate[:beta[:warm-up steps]], see demo_seeds.sh) and seed: the demo's RL command (20 steps x 16 episodes,
#    RLOO, 24 new tokens), then `perlhf eval --split validation` on 128 prompts, eval seed 0, so every
#    policy is judged on the same prompts against the same starting-policy answers.
# About 7 min a run on a 2-core CPU in fp32. Resumable: a finished step is skipped. Each policy's
# weights are deleted once judged (its metrics, samples and answers are kept).
set -euo pipefail
OUT=${1:-runs/demo-rl-sweep}
CONFIGS=${CONFIGS:-"full:5e-5 full:3e-5"}
SEEDS=${SEEDS:-"0 1 2"}
mkdir -p "$OUT/runs"
P="python -m perlhf"
source "$(dirname "$0")/pipeline_step.sh"
demo_args RM_LORA rm-lora    # the demo's own commands (perlhf/demo.py), not retyped here
demo_args JUDGE rm-judge
step rm "$OUT/runs/rm-lora-r8/summary.json" $P "${RM_LORA[@]}" --output-dir "$OUT/runs/rm-lora-r8" --overwrite
step judge "$OUT/runs/rm-judge/summary.json" $P "${JUDGE[@]}" --output-dir "$OUT/runs/rm-judge" --overwrite
rm -rf "$OUT/runs/rm-lora-r8/checkpoints" "$OUT/runs/rm-judge/checkpoints"
# 2. the demo's RL and eval per configuration and seed, on validation prompts (benchmarks/demo_seeds.sh)
CONFIGS="$CONFIGS" SPLIT=validation DROP_WEIGHTS=1 bash "$(dirname "$0")/demo_seeds.sh" "$OUT" "$OUT" "$SEEDS"
