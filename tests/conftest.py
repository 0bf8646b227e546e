"""Shared pytest fixtures.

``shared_data``: the real corpora and lexicons in ``../shared/data`` (relative to the repository root).
Tests using it also carry ``@pytest.mark.realdata``; they skip with a reason when the folder is absent.
"""
from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def shared_data_path() -> Path:
    """``../shared/data`` or ``pytest.skip`` when it is absent (usable outside fixtures too)."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data not found: real-corpus test needs it")
    return SHARED_DATA


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of ``../shared/data``; skips the test when the folder is absent."""
    return shared_data_path()
