#!/usr/bin/env bash
# Create or reuse .venv at the repository root and install medner into it.
# Sourced by finetune.sh and test.sh. EXTRAS selects pip extras (e.g. "test").
# TORCH_SPEC overrides the torch requirement (default: torch==2.13.0, whichever build pip finds: a CPU wheel from
# local disk on the project's machines; PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu adds PyTorch's CPU builds).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MEDNER_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
EXTRAS="${EXTRAS:-}"

if [ ! -x "$VENV/bin/python" ]; then
  echo "medner: creating virtual environment in $VENV" >&2
  "$PY" -m venv "$VENV"
fi
# Reinstall only when the inputs to the install change.
stamp="$VENV/.medner-install-stamp"
want="$(cat "$ROOT/pyproject.toml" | sha256sum | cut -c1-16) torch=$TORCH_SPEC extras=$EXTRAS"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "medner: installing $TORCH_SPEC and medner${EXTRAS:+[$EXTRAS]} into $VENV" >&2
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$TORCH_SPEC"
  target="$ROOT"
  [ -n "$EXTRAS" ] && target="$ROOT[$EXTRAS]"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$target"
  echo "$want" > "$stamp"
fi
export PATH="$VENV/bin:$PATH"
# Never reach for a hub: everything is local.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
export TOKENIZERS_PARALLELISM="${TOKENIZERS_PARALLELISM:-false}"
