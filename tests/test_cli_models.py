"""`resnet-ablate models`: the named-model table, describing one config, and one-line errors (exit code 2)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from resnet_core import build_model, count_params
from resnet_core.cli import main
from resnet_core.describe import TABLE_SKIP
from resnet_core.zoo import NAMED_MODELS

REPO = Path(__file__).resolve().parents[1]


def parameters_line(out: str) -> int:
    match = re.search(r"^parameters: ([\d,]+)$", out, flags=re.MULTILINE)
    assert match, out
    return int(match.group(1).replace(",", ""))


@pytest.mark.slow
def test_models_table(capsys):
    assert main(["models"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    rows = {line.split()[0]: line for line in captured.out.splitlines() if line.strip()}
    assert "resnet20" in rows
    assert "0.270M" in rows["resnet20"].split()  # He et al.: 0.27M
    assert all(name in rows for name in NAMED_MODELS if name not in TABLE_SKIP)
    for name in ("plain56", "preresnet164", "resnet50-imagenet", "seed002-d2l-resnet18"):  # a few, to stay fast
        with torch.device("meta"):
            n = count_params(build_model(NAMED_MODELS[name]))
        assert f"{n / 1e6:.3f}M" in rows[name].split(), (name, rows[name])
    assert "21.294M" in rows["seed001-resnet34"].split()  # SEEDS.md: 21,294,026
    assert "0.293M" in rows["seed004-resnet20-conv3x3"].split()  # SEEDS.md: 292,954


def test_describe_named_model_with_override(capsys):
    assert main(["models", "--config", "resnet56", "--set", "shortcut=none"]) == 0
    out = capsys.readouterr().out
    assert "853,018" in out
    assert parameters_line(out) == 853_018
    assert "plain-56" in out
    described = yaml.safe_load(out[out.index("config:\n") + len("config:\n"):])
    assert described["shortcut"] == "none" and described["depth"] == 56 and described["stages"] == [9, 9, 9]


def test_describe_accepts_model_prefix_and_several_sets(capsys):
    assert main(["models", "--config", "resnet20", "--set", "model.depth=32", "--set", "pooling=max"]) == 0
    out = capsys.readouterr().out
    assert round(parameters_line(out) / 1e6, 2) == 0.46  # He et al.: ResNet-32 0.46M
    assert "pooling=max" in out


def test_describe_yaml_run_config(tmp_path, capsys):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"model": {"family": "cifar", "depth": 44}, "batch_size": 128}))
    assert main(["models", "--config", str(path)]) == 0
    assert round(parameters_line(capsys.readouterr().out) / 1e6, 2) == 0.66  # He et al.: ResNet-44 0.66M
    bare = tmp_path / "model.yaml"
    bare.write_text(yaml.safe_dump({"family": "cifar", "depth": 56}))
    assert main(["models", "--config", str(bare)]) == 0
    assert round(parameters_line(capsys.readouterr().out) / 1e6, 2) == 0.85


BAD_ARGS = [
    (["--set", "depth=21"], ["model.depth", "21", "20"]),
    (["--config", "resnet56", "--set", "depth=21"], ["model.depth", "21"]),
    (["--set", "shortcut=optionA"], ["optionA", "identity", "conv1x1", "conv3x3", "none"]),
    (["--set", "depht=20"], ["depht", "depth"]),
    (["--set", "depth=abc"], ["model.depth", "abc"]),
    (["--set", "stages=5", "--set", "depth=null"], ["model.stages"]),
    (["--set", "depth"], ["key=value"]),
    (["--config", "resnet9000"], ["resnet9000", "resnet20"]),
]


@pytest.mark.parametrize("args,needles", BAD_ARGS, ids=[" ".join(a) for a, _ in BAD_ARGS])
def test_bad_config_is_one_line_error_exit_2(args, needles, capsys):
    assert main(["models", *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err.strip()
    assert err.startswith("error: ")
    assert "\n" not in err and "Traceback" not in err
    for needle in needles:
        assert needle in err, (needle, err)


def test_bad_yaml_file_is_one_line_error(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("model: {family: cifar, depth: [\n")
    assert main(["models", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and str(path) in err


@pytest.mark.slow
def test_python_m_resnet_core_models():
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-m", "resnet_core", "models", "--config", "resnet20"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert round(parameters_line(proc.stdout) / 1e6, 2) == 0.27  # He et al.: ResNet-20 0.27M
    assert "ResNet-20" in proc.stdout
    assert "Traceback" not in proc.stderr
