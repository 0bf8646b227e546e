"""The fault suite: `medner annotate` under random kills and damage (see test_fault_annotate.py); the `fault`
marker is registered in pyproject.toml."""
