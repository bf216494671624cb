#!/usr/bin/env bash
# The issue-6 benchmarks on one CUDA GPU, in one call of the device tool (bench_rm.py + bench_rl.py, perlhf
# against TRL 1.16, LoRA against full, bf16 autocast on both sides).
#
# The GPU box has no network and takes at most 64 MiB per call, so before the call, here:
#   bash benchmarks/bench_gpu.sh prepare        # wheels into .whl/, hh data + smollm2 config/tokenizer into .benchdata/
# then on the device (carry .whl and .benchdata):   bash benchmarks/bench_gpu.sh run "$OUT"
# The model is a random-initialised smollm2-135m (make_random_model.py): the weights do not change the cost, and
# the accuracies it prints mean nothing. STEPS/WARMUP/PY/WHEELS override the sizes, interpreter and wheel install
# (a CPU dry run: WHEELS=0 PY=/work/bench-venv/bin/python STEPS=2 WARMUP=1 bash benchmarks/bench_gpu.sh run /tmp/x).
set -uo pipefail
cd "$(dirname "$0")/.."
cmd=${1:?usage: bench_gpu.sh prepare | run OUTDIR}
if [ "$cmd" = prepare ]; then
    set -e
    mkdir -p .whl .benchdata/data/hh-rlhf .benchdata/smollm2-135m-config
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .whl \
        trl==1.16.0 transformers==5.24.0 peft==0.21.2 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 fsspec==2026.9.0
    cp ../shared/data/hh-rlhf/harmless-base-dev.jsonl.gz .benchdata/data/hh-rlhf/
    src=$(HF_HUB_OFFLINE=1 python3 -c "from perlhf.models import resolve_model; print(resolve_model('smollm2-135m').path)")
    for f in config.json tokenizer.json tokenizer_config.json special_tokens_map.json chat_template.jinja generation_config.json; do
        [ -f "$src/$f" ] && cp "$src/$f" .benchdata/smollm2-135m-config/
    done
    du -sh .whl .benchdata
    exit 0
fi
out=${2:?run needs an output folder}
PY=${PY:-python3}
STEPS=${STEPS:-30}
WARMUP=${WARMUP:-5}
RL_STEPS=${RL_STEPS:-12}
RL_WARMUP=${RL_WARMUP:-2}
work=${WORK:-/tmp/perlhf-bench}
mkdir -p "$out" "$work"
out=$(cd "$out" && pwd)
if [ "${WHEELS:-1}" = 1 ]; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site:$PWD
else
    export PYTHONPATH=$PWD
fi
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TRANSFORMERS_VERBOSITY=error
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi";
  $PY -c "import torch, transformers, peft, trl, accelerate; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'transformers', transformers.__version__, 'peft', peft.__version__, 'trl', trl.__version__, 'accelerate', accelerate.__version__)"; } 2>&1 | tee "$out/env.txt"
$PY benchmarks/make_random_model.py .benchdata/smollm2-135m-config "$work/smollm2-135m-random" || exit 1
export PERLHF_BENCH_MODEL="$work/smollm2-135m-random"
$PY benchmarks/bench_rm.py run --steps "$STEPS" --warmup "$WARMUP" --reps 1 --mixed-precision bf16 \
    --data-dir .benchdata/data --out "$work/rm" \
    --variants perlhf-lora trl-lora perlhf-full trl-full perlhf-lora-gc perlhf-full-gc 2>&1 | tee "$out/rm.log"
$PY benchmarks/bench_rl.py run --steps "$RL_STEPS" --warmup "$RL_WARMUP" --reps 1 --mixed-precision bf16 \
    --data-dir .benchdata/data --out "$work/rl" --reward-model "$work/rm/perlhf-lora-rep0/final" \
    --variants perlhf-lora trl-lora perlhf-full trl-full perlhf-lora-nofold perlhf-lora-gc perlhf-full-gc 2>&1 | tee "$out/rl.log"
(cd "$work" && tar czf "$out/results.tgz" --exclude='checkpoints' --exclude='*.safetensors' --exclude='best' \
    --exclude='final' rm/*.json rl/*.json rm/*/metrics.jsonl rl/*/metrics.jsonl rm/*/summary.json rl/*/summary.json 2>/dev/null)
ls -la "$out"
