#!/usr/bin/env bash
# Set up (or reuse) .venv, then fine-tune with a YAML config: scripts/finetune.sh configs/emr_zh.yaml [--set key=value ...]
set -euo pipefail
if [ $# -lt 1 ]; then
  echo "usage: scripts/finetune.sh CONFIG.yaml [medner finetune options]" >&2
  exit 2
fi
source "$(dirname "${BASH_SOURCE[0]}")/_bootstrap.sh"
cd "$ROOT"
exec medner finetune "$@"
