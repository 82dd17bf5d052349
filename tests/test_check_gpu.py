"""scripts/check_gpu.sh / benchmarks/check_gpu.py: says so and exits 2 without CUDA; its checks pass on the CPU
graph stand-in (tiny sizes), so the script a GPU session runs first has itself been run."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
torch.set_num_threads(1)


def load_check_gpu():
    spec = importlib.util.spec_from_file_location("check_gpu", REPO / "benchmarks" / "check_gpu.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_without_cuda_the_script_says_so_and_exits_2():
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHON": sys.executable}
    env.pop("RESNET_ABLATE_EMULATE_CUDA_GRAPH", None)
    proc = subprocess.run(["bash", str(REPO / "scripts" / "check_gpu.sh")], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout.strip().splitlines() == [proc.stdout.strip()]  # one line
    assert proc.stdout.startswith("FAIL setup: no CUDA device")


@pytest.mark.slow
def test_the_checks_pass_on_the_cpu_stand_in(capsys, monkeypatch):
    monkeypatch.setenv("RESNET_ABLATE_EMULATE_CUDA_GRAPH", "1")  # main() sets it too; monkeypatch restores it
    check_gpu = load_check_gpu()
    # fused_graph (5 more runs) is left out for time: test_engine and test_fast_path cover fused == solo and graph ==
    # eager; diverging_member runs the fused graphed baseline it compares with
    checks = ["graph_vs_eager", "resume_graph", "diverging_member"]
    assert check_gpu.main(["--emulate", "--small", "--only", ",".join(checks)]) == 0, capsys.readouterr()
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == [f"PASS {c}" for c in checks]
    assert "diverged at step 11 (want 11)" in lines[2]


def test_a_failing_check_is_a_fail_line_and_exit_1(capsys, monkeypatch):
    monkeypatch.setenv("RESNET_ABLATE_EMULATE_CUDA_GRAPH", "1")
    check_gpu = load_check_gpu()
    monkeypatch.setitem(check_gpu.CHECKS, "resume_graph", lambda root, sizes, device: 1 / 0)
    assert check_gpu.main(["--emulate", "--small", "--only", "resume_graph"]) == 1
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("FAIL resume_graph: ZeroDivisionError")
