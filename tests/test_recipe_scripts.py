"""The recipe scripts' control flow (scripts/ccks2019_best.sh, ccks2019_distilled.sh, ccks2019_gold10_distilled.sh), with `medner` and
`python` replaced by recorders: which steps run, in what order, with which options, and what a rerun does."""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

FAKE_MEDNER = r"""#!/usr/bin/env bash
echo "medner $*" >> "$CALLS"
cmd=$1; shift
out=""; prev=""
for a in "$@"; do
  case "$a" in output_dir=*) out="${a#output_dir=}" ;; esac
  [ "$prev" = "-o" ] && out="$a"
  prev="$a"
done
case $cmd in
  finetune|soup|distill)
    mkdir -p "$out" && touch "$out/medner_model.json"
    if [[ "$*" == *ccks2019_multi.yaml* ]] && [ ! -f "$out/phases/auxiliary/medner_model.json" ]; then
      mkdir -p "$out/phases/auxiliary" && echo "$out" > "$out/phases/auxiliary/medner_model.json"
    fi ;;
esac
"""


@pytest.fixture
def repo(tmp_path) -> tuple[Path, dict]:
    """A copy of the scripts with a virtual environment whose `medner` and `python` only record their calls."""
    root = tmp_path / "repo"
    (root / "scripts").mkdir(parents=True)
    for name in ("_bootstrap.sh", "_chain.sh", "ccks2019_best.sh", "ccks2019_distilled.sh",
                 "ccks2019_gold10_distilled.sh"):
        shutil.copy(REPO / "scripts" / name, root / "scripts" / name)
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "medner").write_text(FAKE_MEDNER)
    (venv / "bin" / "python").write_text('#!/usr/bin/env bash\necho "python $*" >> "$CALLS"\n')
    for tool in ("medner", "python"):
        (venv / "bin" / tool).chmod(0o755)
    digest = hashlib.sha256((root / "pyproject.toml").read_bytes()).hexdigest()[:16]
    (venv / ".medner-install-stamp").write_text(f"{digest} torch=torch==2.13.0 extras=\n")  # no install
    env = {**os.environ, "MEDNER_VENV": str(venv), "TORCH_SPEC": "torch==2.13.0", "EXTRAS": "",
           "CALLS": str(tmp_path / "calls.log")}
    return root, env


def _run(repo: tuple[Path, dict], script: str, *args: str, **variables: str) -> tuple[int, list[str], str]:
    root, env = repo
    calls = Path(env["CALLS"])
    calls.unlink(missing_ok=True)
    proc = subprocess.run(["bash", str(root / "scripts" / script), *args], cwd=root, env={**env, **variables},
                          capture_output=True, text=True, timeout=60)
    return proc.returncode, calls.read_text().splitlines() if calls.exists() else [], proc.stderr


def test_distilled_recipe_runs_its_steps_in_order_and_a_rerun_trains_nothing(repo):
    root, _ = repo
    rc, calls, err = _run(repo, "ccks2019_distilled.sh", "--set", "train.patience=0")
    assert rc == 0, err
    out = "runs/ccks2019_distilled"
    assert calls[0] == "medner pretrain configs/pretrain_clinical.yaml --resume"
    fine = [c for c in calls if c.startswith("medner finetune")]
    assert [c.split("seed=")[1].split()[0] for c in fine] == ["13", "29", "7"]
    assert "--resume" not in fine[0] and all("--resume" in c for c in fine[1:])  # 29 / 7: the copied phase
    assert all(c.endswith("--set train.patience=0") for c in fine)
    for seed in (29, 7):  # the other seeds start from seed 13's intermediate phase, as the measured teachers did
        assert (root / out / f"multi_{seed}/phases/auxiliary/medner_model.json").read_text().strip() == \
            f"{out}/multi_13"
    (distill,) = [c for c in calls if c.startswith("medner distill")]
    assert distill.startswith(f"medner distill {out}/multi_13 {out}/multi_29 {out}/multi_7 -o {out}/student")
    assert "--resume" not in distill and "--set train.epochs=5" in distill
    assert "--set train.fgm_epsilon=0 --set train.rdrop_alpha=0" in distill  # teachers' regularisers stay theirs
    assert calls[-1] == f"python scripts/bench/bench_dev.py {out}/student"

    rc, calls, err = _run(repo, "ccks2019_distilled.sh", "--set", "train.patience=0")  # all finished
    assert rc == 0, err
    assert all("--resume" in c for c in calls if c.startswith("medner finetune"))
    assert not [c for c in calls if c.startswith("medner distill")]


def test_an_interrupted_student_is_resumed(repo):
    root, _ = repo
    student = root / "runs/ccks2019_distilled/student"
    student.mkdir(parents=True)
    (student / "checkpoint").mkdir()  # killed while training: no medner_model.json yet
    rc, calls, err = _run(repo, "ccks2019_distilled.sh")
    assert rc == 0, err
    (distill,) = [c for c in calls if c.startswith("medner distill")]
    assert distill.endswith("--resume")


def test_soup_recipe_runs_its_steps_in_order(repo):
    rc, calls, err = _run(repo, "ccks2019_best.sh")
    assert rc == 0, err
    out = "runs/ccks2019_best"
    assert calls[0].startswith(f"medner finetune configs/ccks2019_weak.yaml --set output_dir={out}/weak")
    gold = calls[1:4]
    assert all(f"init_from={out}/weak" in c and "configs/ccks2019_best.yaml" in c for c in gold)
    assert calls[4] == f"medner soup {out}/gold_13 {out}/gold_29 {out}/gold_7 -o {out}/soup"
    assert calls[5] == f"python scripts/bench/bench_dev.py {out}/soup"


def test_gold10_recipe_distils_three_runs_of_each_seeds_share(repo):
    rc, calls, err = _run(repo, "ccks2019_gold10_distilled.sh")
    assert rc == 0, err
    out = "runs/ccks2019_gold10_distilled"
    assert calls[0] == f"medner finetune configs/ccks2019_weak.yaml --set output_dir={out}/weak"
    for seed, first in (("13", 1), ("7", 6)):  # per seed: three teachers, their student, its dev score
        runs = f"{out}/seed_{seed}"
        teachers = calls[first:first + 3]
        assert [c.split("output_dir=")[1].split()[0] for c in teachers] == [f"{runs}/fgm", f"{runs}/rdrop",
                                                                           f"{runs}/plain"]
        assert all("configs/ccks2019_gold10.yaml" in c and f"init_from={out}/weak" in c and f"seed={seed}" in c
                   for c in teachers)
        assert "train.fgm_epsilon=1.0" in teachers[0] and "train.rdrop_alpha=1.0" in teachers[1]
        assert "fgm_epsilon" not in teachers[2] and "rdrop_alpha" not in teachers[2]  # the plain teacher
        student = calls[first + 3]
        assert student.startswith(f"medner distill {runs}/fgm {runs}/rdrop {runs}/plain -o {runs}/student")
        assert "--set train.fgm_epsilon=0" in student  # the student starts from the FGM run, without FGM
        assert calls[first + 4] == f"python scripts/bench/bench_dev.py {runs}/student"
    assert len(calls) == 11

    rc, calls, err = _run(repo, "ccks2019_gold10_distilled.sh")  # all finished: nothing trains again
    assert rc == 0, err
    assert all("--resume" in c for c in calls if c.startswith("medner finetune"))
    assert not [c for c in calls if c.startswith("medner distill")]


def test_gold10_recipe_on_the_adapted_encoder_pretrains_first_and_keeps_its_own_folder(repo):
    rc, calls, err = _run(repo, "ccks2019_gold10_distilled.sh", ENCODER="adapted", SEEDS="13")
    assert rc == 0, err
    out = "runs/ccks2019_gold10_distilled_adapted"  # not the plain recipe's folder
    assert calls[0] == "medner pretrain configs/pretrain_clinical.yaml --resume"
    assert calls[1] == f"medner finetune configs/ccks2019_multi_weak.yaml --set output_dir={out}/weak"
    teachers = calls[2:5]
    assert all("configs/ccks2019_gold10.yaml" in c and f"init_from={out}/weak" in c and "seed=13" in c
               and "--set encoder.name=runs/encoders/clinical_tapt" in c for c in teachers)
    assert calls[5].startswith(f"medner distill {out}/seed_13/fgm {out}/seed_13/rdrop {out}/seed_13/plain")
    assert len(calls) == 7

    rc, calls, err = _run(repo, "ccks2019_gold10_distilled.sh", OUT=out, SEEDS="13")  # the plain recipe, same folder
    assert rc == 2 and "another recipe (SEEDS=13 ENCODER=adapted)" in err and calls == []
    root, _ = repo
    earlier = root / "runs/ccks2019_gold10_distilled"  # a plain-recipe folder made before ENCODER existed
    earlier.mkdir(parents=True)
    (earlier / "recipe.txt").write_text("SEEDS=13\n")
    assert _run(repo, "ccks2019_gold10_distilled.sh", SEEDS="13")[0] == 0  # still its recipe: continued
    rc, calls, err = _run(repo, "ccks2019_gold10_distilled.sh", ENCODER="clinical")
    assert rc == 2 and "ENCODER=clinical is not a recipe" in err and calls == []


@pytest.mark.parametrize("script", ["ccks2019_best.sh", "ccks2019_distilled.sh", "ccks2019_gold10_distilled.sh"])
def test_options_the_script_sets_and_another_recipe_in_the_same_folder_are_refused(repo, script):
    rc, calls, err = _run(repo, script, "--set", "seed=5")
    assert rc == 2 and "seed=5 is set by the script" in err and calls == []
    assert _run(repo, script, "--set", "train.epochs=3")[0] == 0
    rc, calls, err = _run(repo, script, "--set", "train.epochs=4")
    assert rc == 2 and "another recipe" in err and calls == []
