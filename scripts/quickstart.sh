#!/usr/bin/env bash
# Install everything, then run the main job on the offline defaults
# (SmolLM2-135M-Instruct and Taskmaster Coffee). Extra arguments go to the job.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
source scripts/env.sh
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"
perlhf data stats taskmaster-coffee "$@"
perlhf models show smollm2-135m
