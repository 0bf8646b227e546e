"""Run configuration: validation, overrides, `extends`, and the bundled configs."""
from __future__ import annotations

from pathlib import Path

import pytest

from medner.cli import main
from medner.config import config_from_dict, dump_config, load_config
from medner.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str, name: str = "c.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_bundled_configs_load():
    config = load_config(ROOT / "configs" / "emr_zh.yaml")
    assert config.data.format == "jsonl" and config.lora is not None and config.crf.enabled
    assert set(config.data.labels) == {"疾病和诊断", "影像检查", "实验室检验", "手术", "药物", "解剖部位"}
    ccks = load_config(ROOT / "configs" / "ccks2019.yaml")
    assert ccks.data.format == "ccks2019" and ccks.data.dev_last == 100 and ccks.data.dev == []
    assert ccks.crf.transition_weights == config.crf.transition_weights  # inherited through `extends`
    weak = load_config(ROOT / "configs" / "ccks2019_weak.yaml")
    assert weak.supervision.mode == "weak" and (ROOT / weak.supervision.weak_config).is_file()
    assert weak.data.train == ccks.data.train and weak.train.warmup_ratio == 0.25


def test_unknown_key_names_the_key_and_the_valid_ones(tmp_path):
    path = write(tmp_path, "data: {train: [x.jsonl], formt: jsonl}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert "data.formt" in message and "format" in message and str(path) in message


@pytest.mark.parametrize("text, key", [
    ("data: {train: [x], on_error: ignore}\n", "data.on_error"),
    ("data: {train: [x]}\ntrain: {epochs: zero}\n", "train.epochs"),
    ("data: {train: [x]}\ntrain: {epochs: 0}\n", "train.epochs"),
    ("data: {train: [x]}\ntrain: {log_every: -1}\n", "train.log_every"),
    ("data: {train: [x]}\nwindow: {max_chars: 100, overlap: 60}\n", "window.overlap"),
    ("data: {train: [x]}\ncrf: {transition_mode: frozen}\n", "crf.transition_mode"),
    ("data: {train: [x]}\ndevice: gpu\n", "device"),
    ("data: {train: []}\n", "data.train"),
])
def test_invalid_values_name_the_key(tmp_path, text, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(write(tmp_path, text))


def test_overrides_are_yaml_values(tmp_path):
    path = write(tmp_path, "data: {train: [x.jsonl]}\n")
    config = load_config(path, ["train.epochs=3", "lora=null", "crf.transition_weights={'O -> B-X': 0.5}",
                                "data.labels=[A, B]"])
    assert config.train.epochs == 3 and config.lora is None
    assert config.crf.transition_weights == {"O -> B-X": 0.5} and config.data.labels == ["A", "B"]
    with pytest.raises(ConfigError, match="key.sub=value"):
        load_config(path, ["train.epochs"])


def test_extends_merges_sections(tmp_path):
    write(tmp_path, "seed: 1\ndata: {train: [a.jsonl], scheme: BIOES}\ntrain: {epochs: 9}\n", "base.yaml")
    path = write(tmp_path, "extends: base.yaml\ndata: {train: [b.jsonl]}\n")
    config = load_config(path)
    assert config.seed == 1 and config.train.epochs == 9 and config.data.scheme == "BIOES"
    assert config.data.train == ["b.jsonl"]


def test_invalid_yaml_points_at_the_line(tmp_path):
    path = write(tmp_path, "data:\n  train: [x\n  dev: y\n")
    with pytest.raises(ConfigError, match=r"c\.yaml:\d+"):
        load_config(path)


def test_resolved_config_round_trips():
    config = load_config(ROOT / "configs" / "emr_zh.yaml")
    import yaml

    assert config_from_dict(yaml.safe_load(dump_config(config))) == config


def test_cli_reports_config_errors_in_one_line(tmp_path, capsys):
    path = write(tmp_path, "data: {train: [x.jsonl]}\ntrian: {}\n")
    assert main(["finetune", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown key `trian`" in err[0]
