"""The fast-path guard (issue 26): every path other than the eager full-precision reference checks its first step and
the first evaluation of each split against the reference from the same state and batch; `auto` falls back from the
saved state and records why, an explicit choice stops with one line; a bf16 run that `precision: auto` chose and
that goes non-finite is replayed in fp32; inductor's CPU kernels are built without GCC's IPA-CP clones.

The compile tests use the real torch.compile (inductor, the C++ compiler) on real-size models and are marked slow.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from resnet_core import devices, engine, fast_guard
from resnet_core.engine import Trainer, train, train_members
from resnet_core.fast_path import FastPath
from resnet_core.errors import FastPathMismatch
from resnet_core.graphs import EMULATE_ENV
from resnet_core.record import read_metrics
from resnet_core.run_config import RunConfig

from test_engine import series, tiny

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]


# -- the rule --------------------------------------------------------------------------------------------------------
def _outputs(loss: float, **tensors: torch.Tensor) -> fast_guard.Outputs:
    return fast_guard.Outputs(loss, tensors)


def test_full_precision_paths_must_agree_to_a_tenth_of_each_tensor():
    g = torch.randn(64, 3, 3, 3, generator=torch.Generator().manual_seed(0))
    ref = fast_guard.Reference([_outputs(2.3, w=g)], None)
    assert fast_guard.compare([_outputs(2.3, w=g * (1 + 0.03))], ref) is None  # another fp32 kernel: up to 2.8 %
    problem = fast_guard.compare([_outputs(2.3, w=g * 1.15)], ref)
    assert problem is not None and "gradient of w is 15.0 % off the reference (allowed 10.0 %)" in problem
    assert "loss" in fast_guard.compare([_outputs(2.4, w=g)], ref)
    nan = g.clone()
    nan[0, 0, 0, 0] = float("nan")
    assert fast_guard.compare([_outputs(2.3, w=nan)], ref) == "non-finite gradient of w (the reference is finite)"


def test_autocast_tolerance_is_the_witness_noise_times_three_plus_slack():
    gen = torch.Generator().manual_seed(1)
    g = torch.randn(1000, generator=gen)
    noise = torch.randn(1000, generator=gen)
    noise = noise / noise.norm() * g.norm() * 0.3  # the witness is 30 % off: bf16 at init does this
    ref = fast_guard.Reference([_outputs(2.3, w=g)], [_outputs(2.301, w=g + noise)])
    other = torch.randn(1000, generator=gen)
    other = other / other.norm() * g.norm()
    assert fast_guard.compare([_outputs(2.302, w=g + 0.6 * other)], ref) is None           # 60 % <= 3·30 % + 5 %
    assert "off the reference (allowed 95.0 %)" in fast_guard.compare([_outputs(2.3, w=g + other)], ref)
    assert fast_guard.compare([_outputs(2.3, w=torch.zeros_like(g))], ref) is not None     # zeros: 100 % off
    assert "member 1" in fast_guard.compare([_outputs(2.3, w=g), _outputs(2.3, w=-g)],
                                            fast_guard.Reference([_outputs(2.3, w=g)] * 2, None))


def test_where_rounding_alone_moves_a_tensor_far_the_path_may_too_but_full_precision_may_not():
    """A plain net's near-cancelling gradient (bf16 moves it by 96 %: quickstart's plain-20 at init) is no reason
    to leave bf16; once the path is full precision the witness no longer widens the tolerance."""
    gen = torch.Generator().manual_seed(2)
    g, noise = torch.randn(100, generator=gen), torch.randn(100, generator=gen)
    ref = fast_guard.Reference([_outputs(2.3, w=g)], [_outputs(2.3, w=g + 0.96 * noise / noise.norm() * g.norm())])
    assert fast_guard.compare([_outputs(2.3, w=g * 1.5)], ref) is None
    assert "off the reference (allowed 10.0 %)" in fast_guard.compare([_outputs(2.3, w=g * 1.5)], ref, autocast=False)
    assert fast_guard.compare([_outputs(2.3, w=g)], ref, autocast=False) is None


def test_a_plain_fused_bf16_run_passes_the_guard(tmp_path):
    """The quickstart's fused plain-20 pair in bf16 (a false alarm there failed both trials)."""
    cfgs = [tiny("precision=bf16", "model.depth=20", "model.shortcut=none", fast="eager", name=f"m{g}", seed=g)
            for g in range(2)]
    results = train_members(cfgs, [tmp_path / f"m{g}" for g in range(2)])
    assert [r.status for r in results] == ["complete"] * 2
    assert [r.summary["fast_fallback"] for r in results] == [None, None]


# -- the guard in the engine, with stand-ins ---------------------------------------------------------------------------
def _perturb_first_step(monkeypatch, paths: list[str]) -> None:
    """A wrong fast step: on a path other than the eager fp32 reference, the first step's gradients are tripled
    (the engine's own `_step`, so the graph stand-in captures it too)."""
    original = FastPath._step

    def wrong(self, x, y):
        original(self, x, y)
        paths.append(self.path_name())
        if not self._guarded and not self._is_reference():  # every call of the guarded step (warm-up, capture, …)
            for p in self.model_for_state().parameters():
                p.grad.mul_(3.0)

    monkeypatch.setattr(FastPath, "_step", wrong)


def test_a_wrong_fast_step_under_auto_falls_back_from_the_same_state_and_says_why(tmp_path, monkeypatch):
    clean = train(tiny("precision=fp32", fast="eager", channels_last=False), tmp_path / "ref")
    paths: list[str] = []
    _perturb_first_step(monkeypatch, paths)
    with pytest.warns(UserWarning, match="disagreed with the eager reference"):
        fell = train(tiny("precision=fp32", fast="auto", channels_last=True), tmp_path / "fell")
    s = fell.summary
    assert paths[0] == "eager, fp32, channels_last" and s["channels_last"] is False
    assert "eager, fp32, channels_last disagreed with the eager reference at its first step" in s["fast_fallback"]
    assert "% off the reference" in s["fast_fallback"] and s["fast_path_checked"] is False
    assert s["paths"] == [{"from_step": 1, "path": "eager, fp32"}]   # the wrong try trained nothing
    # the fallen-back run is the reference run: the wrong step left nothing behind
    for split in ("train", "test"):
        a = [r["value"] for r in read_metrics(fell.run_dir) if r["split"] == split and r["name"] == "loss"]
        b = [r["value"] for r in read_metrics(clean.run_dir) if r["split"] == split and r["name"] == "loss"]
        assert a == pytest.approx(b, rel=1e-5, abs=1e-6)


def test_a_wrong_graphed_step_stops_an_explicit_graph_run_with_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv(EMULATE_ENV, "1")
    _perturb_first_step(monkeypatch, [])
    with pytest.raises(FastPathMismatch, match=r"^fast=graph: graph, fp32.* disagreed with the eager reference at "
                                               r"its first step: gradient of .*; set fast: eager \(or auto\)$"):
        train(tiny("precision=fp32", fast="graph"), tmp_path / "run")


def test_a_right_fused_run_passes_the_guard_member_by_member(tmp_path, monkeypatch):
    monkeypatch.setenv(EMULATE_ENV, "1")
    cfgs = [tiny("precision=fp32", fast="graph", name=f"m{g}", seed=g) for g in range(2)]
    results = train_members(cfgs, [tmp_path / f"m{g}" for g in range(2)])
    assert [r.summary["fast_path_checked"] for r in results] == [True, True]
    assert [r.summary["fast_fallback"] for r in results] == [None, None]


def test_a_fused_member_that_disagrees_with_its_solo_twin_is_named(tmp_path, monkeypatch):
    original = FastPath._step

    def member_one_wrong(self, x, y):
        original(self, x, y)
        for p in self.model_for_state().parameters():
            p.grad[p.grad.shape[0] // 2:].mul_(2.0)  # member 1's rows (member-major layout)

    monkeypatch.setattr(FastPath, "_step", member_one_wrong)
    cfgs = [tiny("precision=fp32", fast="eager", channels_last=False, name=f"m{g}", seed=g) for g in range(2)]
    with pytest.raises(FastPathMismatch, match=r"member 1: gradient of .* off the reference.*sweep --fuse off"):
        train_members(cfgs, [tmp_path / f"m{g}" for g in range(2)])


class _StopMember:
    """Stop member ``g`` at its first evaluation, as a pruner does."""

    def __init__(self, g: int) -> None:
        self.g = g

    def on_eval(self, member: int, step: int, metrics: dict) -> bool:
        return member == self.g


@pytest.mark.parametrize("switch", ["bn_mode=eval_after_first_eval", "precision=auto"])
def test_a_stopped_member_is_not_held_to_its_solo_twin_when_the_step_is_checked_again(tmp_path, monkeypatch,
                                                                                        switch):
    """The step is checked again after the BatchNorm mode switch and after a replay in fp32; a member a pruner
    stopped takes no step there (its loss is masked out, its gradient is zero), and the guard held it to its solo
    twin's gradient: the whole fused run stopped with FastPathMismatch ("… at its first step: member 1: gradient of
    stem.conv.weight is 100.0 % off", at step 9)."""
    if switch == "precision=auto":
        _poison_under_autocast(monkeypatch, from_step=12)
    cfgs = [tiny("precision=fp32", switch, fast="eager", channels_last=False, name=f"m{g}", seed=g)
            for g in range(2)]
    results = train_members(cfgs, [tmp_path / f"m{g}" for g in range(2)], callbacks=[_StopMember(1)])
    assert [r.status for r in results] == ["complete", "pruned"]


def test_a_wrong_first_evaluation_falls_back_too(tmp_path, monkeypatch):
    original = FastPath._fast_eval_outputs

    def wrong(self, x, y):
        out = original(self, x, y)
        if self.channels_last:
            out[0].tensors["logits"] = out[0].tensors["logits"].flip(0)
        return out

    monkeypatch.setattr(FastPath, "_fast_eval_outputs", wrong)
    with pytest.warns(UserWarning, match="its first (val|test) evaluation: logits of logits"):
        result = train(tiny("precision=fp32", fast="auto", channels_last=True), tmp_path / "run")
    assert result.status == "complete" and result.summary["channels_last"] is False
    assert "first test evaluation" in result.summary["fast_fallback"]
    assert result.summary["paths"] == [{"from_step": 1, "path": "eager, fp32, channels_last"},
                                       {"from_step": 9, "path": "eager, fp32"}]   # evaluated after step 8


def test_guarded_paths_agree_on_real_runs(tmp_path):
    """bf16 autocast and channels_last (eager), as a CPU runs them by default, pass the guard on a real ResNet-20
    step at 32 px: the tolerance lets bf16 noise through (a false alarm would slow every run down)."""
    cfg = tiny("precision=bf16", "model.depth=20", "data.synthetic.image_size=32", "schedule.total=1",
               fast="eager", channels_last=True, batch_size=128, n_train=256)
    result = train(cfg, tmp_path / "run")
    assert result.summary["fast_path_checked"] is True and result.summary["fast_fallback"] is None
    assert result.summary["guard_s"] > 0


# -- bf16 that diverges, told apart from a net that diverges ---------------------------------------------------------
def _poison_under_autocast(monkeypatch, from_step: int, always: bool = False) -> None:
    """The loss goes NaN from 0-based step `from_step` on while bf16 autocast runs (or in any precision)."""
    original = FastPath._logits

    def poisoned(self, x):
        logits = original(self, x)
        if self.amp is not None or always:
            return logits + torch.where(self.step_t >= from_step, float("nan"), 0.0).to(logits.dtype)
        return logits

    monkeypatch.setattr(FastPath, "_logits", poisoned)
    monkeypatch.setattr(engine, "autocast_dtype", lambda precision, device: torch.bfloat16)  # auto chooses bf16


def test_bf16_that_goes_non_finite_is_replayed_in_fp32_from_the_last_good_state(tmp_path, monkeypatch):
    _poison_under_autocast(monkeypatch, from_step=10)
    with pytest.warns(UserWarning, match="non-finite training loss at step 11 in bf16"):
        result = train(tiny("precision=auto", fast="eager"), tmp_path / "run")
    s = result.summary
    assert result.status == "complete" and s["precision"] == "fp32"
    assert s["precision_changed"] == {"at_step": 11, "from": "bf16", "to": "fp32", "replayed_from_step": 8,
                                      "reason": "non-finite training loss at step 11 in bf16 (chosen by precision: "
                                                "auto); replayed from step 8 in fp32"}
    assert s["paths"] == [{"from_step": 1, "path": "eager, bf16, channels_last"},
                          {"from_step": 9, "path": "eager, fp32, channels_last"}]   # step 11's part was replaced
    rows = [(r["step"], r["split"], r["name"]) for r in read_metrics(result.run_dir)]
    assert len(rows) == len(set(rows))  # the replayed steps are recorded once
    losses = [r["value"] for r in read_metrics(result.run_dir) if r["split"] == "train" and r["name"] == "loss"]
    assert all(v == v for v in losses)  # no NaN left in the record


def test_a_replay_keeps_no_number_of_the_steps_it_replaces(tmp_path, monkeypatch):
    """The bf16 log of step 10, replaced by the replay from step 8, leaves nothing behind: the summary's lowest
    training loss (the dead-run rule reads it) is the record's, not that bf16 window's (made 100 times lower here)."""
    _poison_under_autocast(monkeypatch, from_step=10)
    original = FastPath.read_window

    def low_after_step_8_in_bf16(self):
        loss, *rest = original(self)
        replaced = self.amp is not None and int(self.step_t) > 8
        return ([v / 100 for v in loss] if replaced else loss), *rest

    monkeypatch.setattr(FastPath, "read_window", low_after_step_8_in_bf16)
    with pytest.warns(UserWarning, match="replayed from step 8 in fp32"):
        result = train(tiny("precision=auto", fast="eager", log_every=2), tmp_path / "run")
    losses = [r["value"] for r in read_metrics(result.run_dir) if r["split"] == "train" and r["name"] == "loss"]
    assert result.summary["lowest_train_loss"] == min(losses)


class _CompiledForAutocastOnly(torch.nn.Module):
    """torch.compile's model whose rebuild for another autocast state fails (dynamo recompiles on that change)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self._orig_mod = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.is_autocast_enabled("cpu"):
            raise RuntimeError("InductorError: the fp32 rebuild failed")
        return self._orig_mod(x)


def test_a_compiled_run_replayed_in_fp32_is_built_again_with_the_fallback_of_a_first_build(tmp_path, monkeypatch):
    """After a replay in fp32 the compiled step went on as built, its rebuild for fp32 outside the first build's
    handling: a failing rebuild failed the run under fast: auto (a first build falls back to eager)."""
    _poison_under_autocast(monkeypatch, from_step=10)
    monkeypatch.setattr(engine, "cpu_compile_pays", lambda flops: True)
    monkeypatch.setattr(torch, "compile", lambda model, **kw: _CompiledForAutocastOnly(model))
    with pytest.warns(UserWarning, match="replayed from step 8 in fp32"):
        result = train(tiny("precision=auto", fast="auto", channels_last=False), tmp_path / "run")
    s = result.summary
    assert result.status == "complete" and s["fast_path"] == "eager" and s["precision"] == "fp32"
    assert "the fp32 rebuild failed" in s["fast_fallback"]
    assert s["paths"] == [{"from_step": 1, "path": "compile, bf16"}, {"from_step": 9, "path": "eager, fp32"}]


def test_fp32_that_diverges_too_is_the_nets_own_divergence(tmp_path, monkeypatch):
    _poison_under_autocast(monkeypatch, from_step=10, always=True)
    with pytest.warns(UserWarning, match="replayed from step 8 in fp32"):
        result = train(tiny("precision=auto", fast="eager"), tmp_path / "run")
    assert result.status == "diverged" and result.summary["diverged_at"] == 11
    assert result.summary["precision_changed"]["to"] == "fp32"


def test_an_explicit_bf16_run_is_not_replayed(tmp_path, monkeypatch):
    _poison_under_autocast(monkeypatch, from_step=10)
    result = train(tiny("precision=bf16", fast="eager"), tmp_path / "run")
    assert result.status == "diverged" and result.summary["precision_changed"] is None


# -- the real torch.compile --------------------------------------------------------------------------------------------
needs_gcc = pytest.mark.skipif(devices.cpu_compiler() is None or shutil.which("nm") is None,
                               reason="needs a C++ compiler and nm for torch.compile's CPU backend")

REAL_COMPILE = r"""
import json, sys, torch
from resnet_core.engine import train
torch.set_num_threads(2)
cfg = {"name": "rc", "device": "cpu", "seed": 0, "fast": sys.argv[2], "precision": "bf16",
       "data": {"name": "synthetic", "synthetic": {"image_size": 32, "n_train": 256, "n_test": 128}},
       "model": {"family": "cifar", "depth": int(sys.argv[4]), "shortcut": "identity"},
       "optim": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4},
       "schedule": {"name": "constant", "unit": "iter", "total": 2}, "batch_size": 128, "eval_batch_size": 128,
       "log_every": 1, "eval_every": 2}
if sys.argv[2] == "auto":  # as auto does for a run long enough to repay the build
    import resnet_core.engine
    resnet_core.engine.cpu_compile_pays = lambda flops: True
if sys.argv[3] == "inject":  # inductor's own fault injection: its generated relu kernels compute relu(x) + 1
    import torch._inductor.config as c
    c.cpp.inject_relu_bug_TESTING_ONLY = "accuracy"
r = train(cfg, sys.argv[1])
print(json.dumps({k: r.summary[k] for k in ("status", "compiled", "fast_path", "fast_fallback", "fast_path_checked",
                                             "guard_s", "compile_s")}))
"""


def _real_compile(tmp_path: Path, fast: str, mode: str, depth: int = 20) -> subprocess.CompletedProcess:
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor"), "PYTHONPATH": str(ROOT)}
    script = tmp_path / "real_compile.py"
    script.write_text(REAL_COMPILE)
    return subprocess.run([sys.executable, str(script), str(tmp_path / "run"), fast, mode, str(depth)], env=env,
                          capture_output=True, text=True, timeout=1800)


@pytest.mark.slow
@needs_gcc
def test_real_compiled_bf16_resnet20_passes_the_guard_and_has_no_ipa_cp_clone(tmp_path):
    """The real torch.compile of a CIFAR ResNet-20 (option A) in bf16, channels_last, 32 px, batch 128: its first
    step agrees with the eager reference, and no kernel inductor built holds GCC's IPA-CP clone of
    `transpose_mxn<BFloat16>` (the clone that computed NaN on a Xeon with AMX; present in the BatchNorm-backward
    kernel here too when built at plain -O3)."""
    proc = _real_compile(tmp_path, "compile", "clean")
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["compiled"] is True and summary["fast_fallback"] is None and summary["fast_path_checked"] is True
    kernels = [p for p in (tmp_path / "inductor").rglob("*.cpp") if "transpose_mxn" in p.read_text(errors="ignore")]
    assert kernels, "no kernel of the compiled step transposes bf16 tiles: the test no longer covers the fault"
    for cpp in kernels:
        so = cpp.with_suffix(".so")
        symbols = subprocess.run(["nm", "-C", str(so)], capture_output=True, text=True).stdout
        clones = [ln for ln in symbols.splitlines() if "transpose_mxn" in ln and ".constprop" in ln]
        assert not clones, f"{so.name}: {clones}"


@pytest.mark.slow
@needs_gcc
def test_a_really_miscompiled_step_is_caught_and_auto_goes_on_eagerly(tmp_path):
    """inductor's own fault injection (relu kernels computing relu(x) + 1) through the real torch.compile: fast: auto
    falls back to eager with the reason recorded; fast: compile stops with one line. A ResNet-8 (the same kernels
    as a ResNet-20's, fewer of them to build): the real-size build is the test above."""
    proc = _real_compile(tmp_path, "compile", "inject", depth=8)
    assert proc.returncode == 1 and "FastPathMismatch: fast=compile: compile, bf16, channels_last disagreed" in \
        proc.stderr, proc.stderr[-3000:]
    proc = _real_compile(tmp_path, "auto", "inject", depth=8)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["status"] == "complete" and summary["compiled"] is False and summary["fast_path"] == "eager"
    assert summary["fast_fallback"].startswith("compile, bf16, channels_last disagreed with the eager reference at "
                                               "its first step")


@pytest.mark.slow
@pytest.mark.skipif(devices.cpu_compiler() is None, reason="torch.compile needs a C++ compiler on a CPU")
def test_a_compiled_random_part_draws_what_the_eager_one_draws(tmp_path, random_pooling):
    """Inductor drew a random part's numbers from its own generator: the guard found the compiled step 'loss 2.34034
    against the reference's 2.40308', so fast: auto ran such a model eagerly and fast: compile stopped. Compiled, it
    now draws as eager torch does: it passes the guard and trains as the eager run."""
    clean = train(tiny("precision=fp32", random_pooling, fast="eager", channels_last=False), tmp_path / "ref")
    compiled = train(tiny("precision=fp32", random_pooling, fast="compile", channels_last=False), tmp_path / "run")
    s = compiled.summary
    assert s["compiled"] is True and s["fast_fallback"] is None and s["fast_path_checked"] is True
    a, b = ([v for step, v in series(run.run_dir, "train", "loss") if step <= 8] for run in (compiled, clean))
    assert a == pytest.approx(b, rel=1e-3)


# -- what the user reads -----------------------------------------------------------------------------------------------
def test_a_diverging_run_names_its_real_step_its_path_and_what_to_try(tmp_path, capsys):
    import yaml

    from resnet_core.cli import main

    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(tiny("precision=fp32", "optim.lr=1.0e+12", fast="eager", log_every=8)))
    code = main(["train", "--config", str(config), "--out", str(tmp_path / "run"), "--wandb", "off"])
    line = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("tiny: ")][-1]
    s = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert code == 1 and s["status"] == "diverged" and s["diverged_at"] < s["step"]
    assert line.startswith(f"tiny: diverged at step {s['diverged_at']}/{s['total_steps']} (non-finite training loss "
                           f"at step {s['diverged_at']}; found at the log of step {s['step']}) on eager, fp32")
    assert "try a lower optim.lr" in line


def test_a_run_replayed_in_fp32_stays_in_fp32_when_resumed(tmp_path, monkeypatch):
    from train_callbacks import InterruptAt

    _poison_under_autocast(monkeypatch, from_step=10)
    cfg = tiny("precision=auto", fast="eager", eval_every=0.5)
    with pytest.raises(KeyboardInterrupt), pytest.warns(UserWarning, match="replayed from step 8 in fp32"):
        train(cfg, tmp_path / "run", callbacks=[InterruptAt(12)])
    resumed = train(cfg, tmp_path / "run", resume=True)
    assert resumed.status == "complete" and resumed.summary["precision"] == "fp32"
    assert resumed.summary["precision_changed"]["replayed_from_step"] == 8
    assert resumed.summary["paths"] == [{"from_step": 1, "path": "eager, bf16, channels_last"},
                                        {"from_step": 9, "path": "eager, fp32, channels_last"}]


def test_a_resumed_run_records_the_path_each_part_ran_on(tmp_path):
    """A resume may change how a run executes (`fast`, `channels_last`): its summary said only the last part's path,
    as if every step had run on it."""
    from train_callbacks import InterruptAt

    with pytest.raises(KeyboardInterrupt):
        train(tiny("precision=fp32", fast="eager", channels_last=True), tmp_path / "run", callbacks=[InterruptAt(8)])
    resumed = train(tiny("precision=fp32", fast="eager", channels_last=False), tmp_path / "run", resume=True)
    assert resumed.status == "complete" and resumed.summary["channels_last"] is False
    assert resumed.summary["paths"] == [{"from_step": 1, "path": "eager, fp32, channels_last"},
                                        {"from_step": 9, "path": "eager, fp32"}]


def test_the_guard_leaves_the_runs_rng_as_it_was(tmp_path):
    """The guard's evaluation batch and reference models do not move the global RNG, which a torch DataLoader's
    iterator draws its seed from (a resumed run drew other augmentations than the uninterrupted one)."""
    cfg = RunConfig.from_dict(tiny("data.loader=torch", "data.num_workers=0", "precision=fp32", fast="eager",
                                   channels_last=True))
    trainer = Trainer([cfg], [tmp_path / "run"], [])
    try:
        before = torch.get_rng_state()
        trainer.path._guard_eval("test", [0])
        assert torch.equal(torch.get_rng_state(), before)
        x, y = next(iter(trainer.train_loader.epoch(0)))
        before = torch.get_rng_state()
        trainer.path._guarded_step(x, y)
        assert torch.equal(torch.get_rng_state(), before) and trainer.path.fast_fallback is None
    finally:
        trainer.close()


class _DropGAP(torch.nn.Module):
    """A random part (a drop-path-like pooling, which an unfused run may use): in training, each image's features
    are dropped with probability 1/2."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x.mean((2, 3))
        return out * (torch.rand(out.shape[0], 1) > 0.5) if self.training else out


@pytest.fixture
def random_pooling():
    """``model.pooling: drop_gap`` (`_DropGAP`) while the test runs."""
    from resnet_core.pooling import POOLINGS

    saved = dict(POOLINGS._parts), dict(POOLINGS._meta), dict(POOLINGS._source)
    POOLINGS.register("drop_gap")(lambda *, channels, members: _DropGAP())
    yield "model.pooling=drop_gap"
    POOLINGS._parts, POOLINGS._meta, POOLINGS._source = saved


@pytest.mark.parametrize("path", [dict(fast="eager", channels_last=True), dict(fast="graph", channels_last=False)])
def test_a_random_part_is_checked_on_the_draws_of_its_step_and_trains_as_the_reference(tmp_path, monkeypatch,
                                                                                         random_pooling, path):
    """The guard's reference step drew the random part's numbers ahead of the step (and a graph's warm-up and
    capture drew more): a right path disagreed with the reference (channels_last fell back to NCHW, an explicit
    path stopped) and the run trained on other draws than the eager reference run. The reference and every try
    now draw what the step draws: the path agrees, and the run is the reference run."""
    monkeypatch.setenv(EMULATE_ENV, "1")
    clean = train(tiny("precision=fp32", random_pooling, fast="eager", channels_last=False), tmp_path / "ref")
    fast = train(tiny("precision=fp32", random_pooling, **path), tmp_path / "fast")
    assert fast.summary["fast_fallback"] is None and fast.summary["fast_path_checked"] is True
    a, b = ([v for step, v in series(run.run_dir, "train", "loss") if step <= 8] for run in (fast, clean))
    assert a == pytest.approx(b, rel=1e-4)   # the first epoch: later, another kernel's round-off grows (~3e-3)


def test_the_reference_and_its_witness_draw_the_same_numbers(random_pooling):
    """The bf16 witness drew other numbers than the fp32 reference (it ran after it): its distance, and so the
    tolerance, measured the random part's draws, not rounding."""
    from resnet_core.config import ModelConfig
    from resnet_core.model import build_model

    model = build_model(ModelConfig(family="cifar", depth=8, pooling="drop_gap"))
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(32, 3, 16, 16, generator=gen), torch.randint(0, 10, (32,), generator=gen)
    ref = fast_guard.reference(lambda g: model, x, y, members=1, amp=torch.bfloat16, device=torch.device("cpu"))
    grad = "fc.weight"
    assert fast_guard._rel(ref.witness[0].tensors[grad], ref.exact[0].tensors[grad], 1e-12) < 0.2


# -- the compiler command inductor builds CPU kernels with ----------------------------------------------------------------
@pytest.mark.parametrize("version, flagged", [("g++ (Debian 12.2.0-14+deb12u1) 12.2.0", True),
                                              ("gcc (GCC) 13.2.1 20231011", True),
                                              ("Debian clang version 14.0.6", False),
                                              ("Apple clang version 15.0.0 (clang-1500.1.0.2.5)", False)])
def test_gcc_builds_without_ipa_cp_clones_and_clang_as_it_is(monkeypatch, tmp_path, version, flagged):
    compiler = tmp_path / "my c++"
    compiler.write_text(f"#!/bin/sh\necho '{version}'\n")
    compiler.chmod(0o755)
    monkeypatch.setenv("CXX", str(compiler))
    command = devices.cpu_compiler_command()
    assert command.startswith(f"'{compiler}'")   # quoted: inductor splits the command like a shell
    assert command.endswith(" -fno-ipa-cp-clone") is flagged
    import torch._inductor.config as inductor_config

    before = inductor_config.cpp.cxx
    try:
        assert devices.configure_cpu_compiler() == command and inductor_config.cpp.cxx == command
    finally:
        inductor_config.cpp.cxx = before
