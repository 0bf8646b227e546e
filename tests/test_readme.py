"""The README's claims that code can check: the paths it names exist, and its 'same run with overrides' example
is the same run."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import yaml

from medner.config import config_changes, dump_config, load_config

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_named_scripts_and_configs_exist():
    named = set(re.findall(r"(?<![\w./])((?:scripts|configs)/[\w./-]+\.(?:sh|py|yaml))", README))
    assert len(named) > 10  # the pattern still finds the README's paths
    missing = sorted(p for p in named if not (ROOT / p).is_file())
    assert not missing, f"README names files that do not exist: {missing}"


def test_emr_zh_with_overrides_is_the_ccks2019_run(monkeypatch):
    """`scripts/finetune.sh configs/emr_zh.yaml --set ...` is shown as the run of configs/ccks2019.yaml."""
    line = next(ln for ln in README.splitlines() if ln.startswith("scripts/finetune.sh configs/emr_zh.yaml --set"))
    words = shlex.split(line)
    overrides = [words[i + 1] for i, w in enumerate(words) if w == "--set"]
    assert len(overrides) >= 2
    monkeypatch.chdir(ROOT)
    shown = load_config("configs/emr_zh.yaml", overrides)
    measured = load_config("configs/ccks2019.yaml")
    changed = config_changes(yaml.safe_load(dump_config(measured)), shown, ignore=("output_dir",))
    assert changed == [], f"the README's example differs from configs/ccks2019.yaml in {changed}"
