#!/usr/bin/env bash
# Set up (or reuse) .venv with test extras, then run the test suite. Extra args go to pytest.
set -euo pipefail
EXTRAS="test"
source "$(dirname "${BASH_SOURCE[0]}")/_bootstrap.sh"
cd "$ROOT"
exec python -m pytest "$@"
