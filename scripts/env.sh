# Sourced by the scripts: where the data comes from when PERLHF_DATA_DIR is not set.
# Inside this project's own checkouts the datasets sit at ../shared/data beside the
# repository; a user's machine downloads them instead (see README, "Data").
_repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -z "${PERLHF_DATA_DIR:-}" ] && [ -d "$_repo_root/../shared/data" ]; then
    PERLHF_DATA_DIR="$(cd "$_repo_root/../shared/data" && pwd)"
    export PERLHF_DATA_DIR
fi
