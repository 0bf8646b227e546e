"""The fault suite: `medner annotate` under random kills and damage (see test_fault_annotate.py)."""
from __future__ import annotations


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "fault: fault-injection loops (kills, truncation, corruption); run in CI "
                                       "with `pytest -m fault`")
