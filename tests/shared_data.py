"""Where the real corpora and lexicons live: ``../shared/data`` relative to the repository root."""
from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def shared_data_path() -> Path:
    """``../shared/data`` or ``pytest.skip`` when it is absent (usable outside fixtures too)."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data not found: real-corpus test needs it")
    return SHARED_DATA
