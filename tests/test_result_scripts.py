"""The scripts that finish a committed study: scripts/lesion_seed0.sh lesions seed 0 of each cell (its completed run)
into the study folder's lesion.csv, which the report reads."""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LESION = REPO / "scripts" / "lesion_seed0.sh"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A finished ResNet-8 run on 16 px synthetic data (3 residual blocks)."""
    from resnet_core.engine import train
    from resnet_core.overrides import apply_overrides

    cfg = apply_overrides({"name": "tiny", "device": "cpu", "seed": 0, "batch_size": 32, "eval_batch_size": 250,
                           "eval_every": 1, "log_every": 4},
                          ["data.name=synthetic", "data.synthetic.image_size=16", "data.synthetic.n_train=128",
                           "data.synthetic.n_test=250", "model.depth=8", "schedule.total=1", "precision=fp32"])
    out = tmp_path_factory.mktemp("tiny") / "run"
    assert train(cfg, out).status == "complete"
    return out


def _lesion(study_dir: Path, *cells: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PY": sys.executable, "PYTHONPATH": str(REPO)}
    return subprocess.run(["bash", str(LESION), str(study_dir), *cells], capture_output=True, text=True, env=env,
                          timeout=600)


def test_lesion_seed0_lesions_each_completed_seed0_run_and_skips_the_rest(tiny_run, tmp_path):
    trials = tmp_path / "study" / "trials"
    shutil.copytree(tiny_run, trials / "depth-8_shortcut-identity-s0")        # complete
    shutil.copytree(tiny_run, trials / "depth-8_shortcut-identity-s1")        # not seed 0
    stopped = trials / "depth-8_shortcut-none-s0"                             # stopped mid-run: no lesion
    shutil.copytree(tiny_run, stopped)
    summary = json.loads((stopped / "summary.json").read_text())
    (stopped / "summary.json").write_text(json.dumps({**summary, "status": "interrupted"}, indent=2))
    proc = _lesion(tmp_path / "study")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "depth-8_shortcut-none: no completed seed-0 run with a last.pt; skipped" in proc.stderr
    rows = list(csv.DictReader((tmp_path / "study" / "lesion.csv").open()))
    assert [r["block"] for r in rows] == ["stage1.block0", "stage2.block0", "stage3.block0"]
    assert {r["model"] for r in rows} == {"ResNet-8, seed 0"}
    assert all(0 <= float(r["test_error"]) <= 100 for r in rows)
    assert not list((tmp_path / "study").glob("lesion.part*")) and not list((tmp_path / "study").glob("*.tmp"))


def test_lesion_seed0_without_a_completed_seed0_run_is_exit_2(tmp_path):
    proc = _lesion(tmp_path)
    assert proc.returncode == 2 and proc.stderr.strip() == f"lesion_seed0: no trials/ folder in {tmp_path}"
    (tmp_path / "trials" / "depth-8_shortcut-none-s0").mkdir(parents=True)
    proc = _lesion(tmp_path)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1] == \
        f"lesion_seed0: no completed seed-0 run in {tmp_path}"
    assert not (tmp_path / "lesion.csv").exists()
