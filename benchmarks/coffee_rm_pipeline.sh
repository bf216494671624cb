#!/usr/bin/env bash
# Taskmaster Coffee reward models, LoRA against full fine-tuning, over 3 seeds (issue 11 item 3).
#
#   bash benchmarks/coffee_rm_pipeline.sh [OUT=runs/coffee-rm]
#   python benchmarks/coffee_rm_report.py runs/coffee-rm > runs/coffee-rm/report.md
#
# 1. A sweep at seed 0, chosen on *validation* AUC (the best checkpoint's): LoRA on all linear
#    layers at lr 1e-3 (the sentiment task's best) and 3e-4, and full tuning at 5e-5 (the sentiment
#    task's best).
# 2. The best LoRA and the best full configuration on validation again at seeds 1 and 2.
# 3. References at seed 0, outside the choice: the paper's attention-only LoRA at 1e-3, and full
#    tuning at 2e-5.
# Nothing is chosen on test.
# Every run: 100 steps x 16 rated turns (0.63 epoch), validation every 50 steps on all 320 validation
# turns, the best checkpoint scored once on all 349 test turns; prompt budget 128 tokens (oldest turns
# dropped), response 48; fp32. Resumable: a run whose summary.json exists is skipped, and its
# checkpoints are deleted once it has finished (full-model checkpoints are 1.6 GB each).
set -euo pipefail
OUT=${1:-runs/coffee-rm}
DATA=${DATA:-../shared/data}
mkdir -p "$OUT"
P="python -m perlhf"
source "$(dirname "$0")/pipeline_step.sh"
COMMON=(--task taskmaster-coffee --data-dir "$DATA" --model smollm2-135m --batch-size 16 --max-steps 100
        --eval-every 50 --max-prompt-tokens 128 --max-response-tokens 48 --eval-batch-size 32
        --mixed-precision no --report-to none --progress false)
run_one() {  # NAME SEED OPTIONS...
  local name=$1 seed=$2; shift 2
  local dir="$OUT/$name-s$seed"
  # shellcheck disable=SC2068
  step "$name-s$seed" "$dir/summary.json" $P rm "${COMMON[@]}" $@ --seed "$seed" --output-dir "$dir" --overwrite
  rm -rf "$dir/checkpoints"
}
# name | options, in the order they run
SWEEP=(
  "lora-all-r8-lr1e-3|--mode lora --lora-targets all-linear --lora-rank 8 --learning-rate 1e-3"
  "full-lr5e-5|--mode full --learning-rate 5e-5 --eval-untrained false"
  "lora-all-r8-lr3e-4|--mode lora --lora-targets all-linear --lora-rank 8 --learning-rate 3e-4 --eval-untrained false"
)
EXTRA=(
  "lora-attn-r8-lr1e-3|--mode lora --lora-targets attention --lora-rank 8 --learning-rate 1e-3 --eval-untrained false"
  "full-lr2e-5|--mode full --learning-rate 2e-5 --eval-untrained false"
)
opts_of() { for e in "${SWEEP[@]}"; do [ "${e%%|*}" = "$1" ] && echo "${e#*|}"; done; }
for entry in "${SWEEP[@]}"; do
  # shellcheck disable=SC2086
  run_one "${entry%%|*}" 0 ${entry#*|}
done
best() {  # the configuration of the sweep for a mode with the highest validation AUC at seed 0
  python - "$OUT" "$1" "${SWEEP[@]%%|*}" <<'PY'
import json, pathlib, sys
out, prefix, names = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
runs = {n: json.loads((out / f"{n}-s0" / "summary.json").read_text())["validation_best"]
        for n in names if n.startswith(prefix)}
print(max(runs, key=runs.get))
PY
}
for mode in lora full; do
  name=$(best "$mode")
  echo "chosen on validation for $mode: $name"
  for seed in 1 2; do
    # shellcheck disable=SC2046
    run_one "$name" "$seed" $(opts_of "$name") --eval-untrained false
  done
done
for entry in "${EXTRA[@]}"; do
  # shellcheck disable=SC2086
  run_one "${entry%%|*}" 0 ${entry#*|}
done
echo "all done: $OUT"
