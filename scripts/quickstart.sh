#!/usr/bin/env bash
# Install everything, then run the main job: `perlhf demo` on the offline defaults
# (SmolLM2-135M-Instruct on the offline sentiment task; `--task taskmaster-coffee` for the paper's
# task). Extra arguments go to the demo,
# e.g. `bash scripts/quickstart.sh --quick` or `--report-dir reports/mine`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
source scripts/env.sh
perlhf demo "$@"
