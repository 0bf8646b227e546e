"""Run configuration: validation, overrides, `extends`, the bundled configs; the shared YAML -> dataclass
validation path (build_config) and the YAML alias limit."""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Union

import pytest
import yaml

from medner.cli import main
from medner.config import (MAX_ALIAS_NODES, NOT_IN_FILE, build_config, config_from_dict, dump_config, load_config,
                           load_yaml_config, read_yaml, yaml_key)
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
    gold10 = load_config(ROOT / "configs" / "ccks2019_gold10.yaml")  # continues the weak run on 10% of the gold
    assert gold10.init_from == weak.output_dir and gold10.supervision.gold_fraction == 0.1
    assert gold10.data == ccks.data and gold10.supervision.mode == ccks.supervision.mode and gold10.train.patience == 0


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
    ("data: {train: [x]}\noutput_dir: ''\n", "output_dir"),  # not ./runs/default without a word
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
    assert len(err) == 1 and "unknown key `trian`" in err[0] and "did you mean `train`?" in err[0]
    path = write(tmp_path, "data: {train: [x.jsonl]}\nzzz: {}\n")
    assert main(["finetune", str(path)]) == 2
    assert "Fix: remove or rename the key" in capsys.readouterr().err  # nothing close: no guess


# ------------------------------------------------------------------ the shared validation path (build_config)
@dataclass(frozen=True, kw_only=True)
class _Csv:
    kind: Literal["csv"] = "csv"
    name: str
    delimiter: str | None = None


@dataclass(frozen=True, kw_only=True)
class _Xlsx:
    kind: Literal["xlsx"] = "xlsx"
    name: str
    sheet: str = "全部"


@dataclass(frozen=True, kw_only=True)
class _Options:
    depth: int = 2
    ratio: float = 0.5
    strict: bool = False
    mode: Literal["fast", "exact"] = "fast"
    tags: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.depth > 9:
            raise ConfigError("too deep", field="depth", fix="use 9 or less")


@dataclass(frozen=True, kw_only=True)
class _Top:
    path: Path = field(metadata=NOT_IN_FILE)
    title: str
    options: _Options = field(default_factory=_Options)
    sources: tuple[Union[_Csv, _Xlsx], ...] = ()
    renamed: str = field(default="", metadata=yaml_key("as-written"))
    weights: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len({s.name for s in self.sources}) < len(self.sources):
            raise ConfigError("duplicate source name", field=f"sources[{len(self.sources) - 1}].name",
                              fix="rename it")


def build_top(tree: dict, **kw) -> _Top:
    return build_config(_Top, tree, "top.yaml", extra={"path": Path("top.yaml")}, **kw)


def test_build_config_builds_the_tree() -> None:
    top = build_top({"title": 3, "options": {"depth": "4", "ratio": 1, "tags": ["a"]}, "as-written": "x",
                     "sources": [{"kind": "csv", "name": "a"}, {"kind": "xlsx", "name": "b", "sheet": "S"}],
                     "weights": {"f": 2}})
    assert top.title == "3" and top.path == Path("top.yaml") and top.renamed == "x"
    assert top.options == _Options(depth=4, ratio=1.0, tags=("a",)) and isinstance(top.options.ratio, float)
    assert top.sources == (_Csv(name="a"), _Xlsx(name="b", sheet="S")) and top.weights == {"f": 2.0}
    # null for a field with a default, and {} for a section, mean the default
    assert build_top({"title": "t", "options": None}).options == _Options()
    assert build_top({"title": "t", "options": {}, "sources": None, "weights": None}) == build_top({"title": "t"})
    assert build_top({"title": "t", "sources": [{"kind": "xlsx", "name": "b", "sheet": None}]}).sources[0].sheet == "全部"
    # a lone string is a one-item list only where asked for (run configs)
    assert build_top({"title": "t", "options": {"tags": "a"}}, one_item_lists=True).options.tags == ("a",)


@pytest.mark.parametrize("tree, key, fragment", [
    ({"title": "t", "colour": 1}, "colour", "valid keys here: as-written, options, sources, title, weights"),
    ({"title": "t", "path": "x"}, "path", "unknown key"),                      # not read from the file
    ({"title": "t", "renamed": "x"}, "renamed", "unknown key"),                # only under its YAML name
    ({"title": "t", "options": {"depht": 1}}, "options.depht", "valid keys here: depth, mode, ratio, strict, tags"),
    ({"title": "t", "sources": [{"kind": "csv", "name": "a", "sheet": "S"}]}, "sources[0].sheet", "for kind csv"),
    ({"options": {}}, "title", "missing required key"),
    ({"title": "t", "sources": [{"kind": "csv"}]}, "sources[0].name", "missing required key"),
    ({"title": "t", "sources": [{"name": "a"}]}, "sources[0].kind", "missing required key"),
    ({"title": "t", "sources": [{"kind": "xls", "name": "a"}]}, "sources[0].kind", "unknown kind 'xls'"),
    ({"title": "t", "sources": [{"kind": ["csv"], "name": "a"}]}, "sources[0].kind", "unknown kind"),
    ({"title": "t", "sources": ["a"]}, "sources[0]", "must be a mapping with `kind:`"),
    ({"title": "t", "sources": {"kind": "csv"}}, "sources", "must be a list of mappings with `kind:` (csv, xlsx)"),
    ({"title": "t", "options": {"tags": "a"}}, "options.tags", "must be a list of strings, got 'a'"),
    ({"title": "t", "options": {"tags": [["a"]]}}, "options.tags[0]", "must be a string, got a list"),
    ({"title": {"a": 1}}, "title", "must be a string, got a mapping"),
    ({"title": None}, "title", "must be a string, got null"),
    ({"title": "t", "options": {"depth": 2.5}}, "options.depth", "must be an integer"),
    ({"title": "t", "options": {"depth": "two"}}, "options.depth", "must be an integer, got 'two'"),
    ({"title": "t", "options": {"depth": True}}, "options.depth", "must be an integer, got true"),
    ({"title": "t", "options": {"ratio": "half"}}, "options.ratio", "must be a number"),
    ({"title": "t", "options": {"strict": "yes"}}, "options.strict", "must be true or false"),
    ({"title": "t", "options": {"mode": "slow"}}, "options.mode", "must be one of fast, exact"),
    ({"title": "t", "options": [1]}, "options", "must be a mapping, got a list"),
    ({"title": "t", "weights": {"f": "x"}}, "weights.f", "must be a number"),
    ({"title": "t", "weights": [1]}, "weights", "must be a mapping"),
    ({"title": "t", "options": {"depth": 10}}, "options.depth", "too deep"),     # __post_init__, key prefixed
    ({"title": "t", "sources": [{"kind": "csv", "name": "a"}, {"kind": "xlsx", "name": "a"}]}, "sources[1].name",
     "duplicate source name"),
])
def test_build_config_errors_name_file_and_dotted_key(tree: dict, key: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_top(tree)
    message = str(info.value)
    assert message.startswith("top.yaml: ") and f"`{key}`" in message and fragment in message
    assert ". Fix: " in message and "\n" not in message


def test_load_yaml_config_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "- a\n- b\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: expected a mapping of keys \(title, options"):
        load_yaml_config(path, _Top, extra={"path": path})
    path = write(tmp_path, "title: t\noptions: {mode: exact}\n")
    assert load_yaml_config(path, _Top, extra={"path": path}).options.mode == "exact"


# ----------------------------------------------------------------------------------------- YAML aliases
def laughs(levels: int, width: int = 9) -> str:
    """A "billion laughs" document: each level lists the previous one `width` times (width ** levels scalars)."""
    lines = ['lol0: &lol0 "lol"']
    for level in range(1, levels + 1):
        lines.append(f"lol{level}: &lol{level} [" + ", ".join([f"*lol{level - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


def test_alias_bomb_is_refused_at_once(tmp_path: Path) -> None:
    # safe_load shares aliased nodes, so this returns quickly even without the limit; whatever walks the
    # result (validation, --set merging, dump) would visit 9 ** 9 = 387 million strings
    path = write(tmp_path, laughs(9))
    start = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        read_yaml(path)
    assert time.perf_counter() - start < 2.0
    message = str(info.value)
    assert message.startswith(f"{path}:6: aliases expand to more than {MAX_ALIAS_NODES} YAML nodes (alias *lol4)")
    assert "Fix: write the values out" in message and "\n" not in message


def test_alias_limit_counts_expanded_nodes(tmp_path: Path) -> None:
    items = ", ".join(["x"] * 99)  # the anchored list: 1 + 99 nodes
    under = f"base: &b [{items}]\nuses:\n" + "".join(["  - *b\n"] * (MAX_ALIAS_NODES // 100))
    assert len(read_yaml(write(tmp_path, under))["uses"]) == MAX_ALIAS_NODES // 100
    with pytest.raises(ConfigError, match=rf"c\.yaml:{MAX_ALIAS_NODES // 100 + 3}: aliases expand"):
        read_yaml(write(tmp_path, under + "  - *b\n"))


@pytest.mark.parametrize("text", ["a: &a [1, *a]\n", "a: &a {b: *a}\n"])
def test_recursive_alias_is_refused(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError, match=r"c\.yaml:1: alias \*a stands for a node that holds it"):
        read_yaml(write(tmp_path, text))


def test_configs_with_and_without_aliases_still_load(tmp_path: Path) -> None:
    path = write(tmp_path, "data: {train: [x.jsonl]}\ntrain: {epochs: 2}\n")
    assert "&" not in path.read_text() and load_config(path).train.epochs == 2
    path = write(tmp_path, "data: {train: &t [x.jsonl], dev: *t}\n")
    assert load_config(path).data.dev == ["x.jsonl"]


def test_alias_bomb_in_a_config_and_an_override(tmp_path: Path, capsys) -> None:
    bomb = laughs(5, width=10)  # 10 ** 5 strings once expanded: bounded even without the limit
    path = write(tmp_path, "data: {train: [x.jsonl]}\n" + bomb)  # refused while parsing, before the unknown keys
    assert main(["finetune", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "aliases expand to more than" in err[0]
    with pytest.raises(ConfigError, match=r"override data\.labels:1: aliases expand"):
        load_config(write(tmp_path, "data: {train: [x.jsonl]}\n", "ok.yaml"),
                    ["data.labels=" + "{" + bomb.replace("\n", ", ").rstrip(", ") + "}"])


def test_an_error_from_an_override_names_the_override_not_the_file(tmp_path):
    path = write(tmp_path, "data: {train: [x.jsonl]}\ntrain: {epochs: 3}\n")
    with pytest.raises(ConfigError, match=r"^--set train.epoch=2: unknown key `train.epoch`"):
        load_config(path, ["train.epoch=2"])
    with pytest.raises(ConfigError, match=r"^--set train.epochs=zero: `train.epochs` must be an integer"):
        load_config(path, ["train.epochs=zero"])
    write(tmp_path, "data: {train: [x.jsonl]}\ntrain: {epoch: 3}\n")  # the file's own mistake: the file is named
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: unknown key `train.epoch`"):
        load_config(path, ["train.epochs=2"])


def test_an_override_is_named_for_the_part_of_its_key_that_is_wrong(tmp_path):
    path = write(tmp_path, "data: {train: [x.jsonl]}\n")
    with pytest.raises(ConfigError, match=r"^--set trian.epochs=3: unknown key `trian`"):  # blamed the file
        load_config(path, ["trian.epochs=3"])
    with pytest.raises(ConfigError, match=r"^--set data=\{\}: `data.train` is empty"):
        load_config(path, ["data={}"])


@pytest.mark.parametrize("override, message", [
    ("data.labels=[O, 药物]", "`data.labels`: invalid entity type 'O'"),  # tracebacks once the corpus was read
    ("data.labels=['', 药物]", "`data.labels`: invalid entity type ''"),
    ("data.labels=[药物, 药物]", "`data.labels` names '药物' twice"),  # was de-duplicated without a word
    ("head.dropout=2", "`head.dropout` must be in [0, 1), got 2"),
    ("lora.dropout=1.5", "`lora.dropout` must be in [0, 1)"),
    ("encoder.hidden_dropout=-1", "`encoder.hidden_dropout` must be in [0, 1)"),  # blamed encoder.name
    ("lora.alpha=0", "`lora.alpha` must be > 0"),
    ("window.max_tokens=0", "`window.max_tokens` must be >= 8"),
    ("data.dev_last=-3", "`data.dev_last` must be >= 0"),  # trained on 3 records, 45 as dev
    ("data.train_limit=-5", "`data.train_limit` must be >= 0"),  # dropped the last 5 records
])
def test_out_of_range_values_are_refused_naming_the_override(tmp_path, override, message):
    path = write(tmp_path, "data: {train: [x.jsonl]}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, [override])
    assert str(info.value).startswith(f"--set {override}: ") and message in str(info.value)


def test_extends_of_a_file_that_is_no_mapping_and_list_keys_are_one_line(tmp_path):
    write(tmp_path, "- a\n- b\n", "base.yaml")
    with pytest.raises(ConfigError, match="`extends` names base.yaml, which holds a list, not a mapping"):
        load_config(write(tmp_path, "extends: base.yaml\n"))
    with pytest.raises(ConfigError, match=r"c.yaml:1: a key is a list, not a name"):
        load_config(write(tmp_path, "? [a, b]\n: x\n"))
    with pytest.raises(ConfigError, match="a key is a list, not a name"):
        load_config(write(tmp_path, "data: {train: [x.jsonl]}\n"), ["crf.transition_weights={[a]: 1}"])


def test_home_is_expanded_in_output_dir_and_init_from(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "start").mkdir()
    config = load_config(write(tmp_path, "data: {train: [x.jsonl]}\n"), ["output_dir=~/runs/x", "init_from=~/start"])
    assert config.output_dir == str(tmp_path / "runs" / "x") and config.init_from == str(tmp_path / "start")


def test_a_key_written_twice_is_refused_but_a_merge_may_override(tmp_path):
    from medner.config import parse_yaml

    with pytest.raises(ConfigError, match=r"c.yaml:3: key 'dis' is written twice in one mapping \(lines 2 and 3\)"):
        parse_yaml("label_map:\n  dis: 疾病和诊断\n  dis: 药物\n", "c.yaml")
    tree = parse_yaml("base: &b {epochs: 3, lr: 1}\ntrain:\n  <<: *b\n  epochs: 5\n", "c.yaml")
    assert tree["train"] == {"epochs": 5, "lr": 1}


def test_a_key_a_later_version_added_at_its_default_is_no_change_for_resume():
    """A run saved before a config key existed resumes under the version that added it, while the key keeps its
    default; any other value of it, or a changed old key, is still a change."""
    from medner.config import config_changes
    config = load_config("configs/ccks2019_multi.yaml")
    saved = yaml.safe_load(dump_config(config))
    for aux in saved["data"]["auxiliary"]:  # as a run of the version before `encoding` / `on_error` saved it
        del aux["encoding"], aux["on_error"]
    del saved["train"]["fgm_epsilon"]
    assert config_changes(saved, config) == []
    config.data.auxiliary[0].on_error = "raise"
    config.train.epochs += 1
    assert config_changes(saved, config) == ["data.auxiliary[0].on_error", "train.epochs"]
