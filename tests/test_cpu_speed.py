"""The CPU path: precision auto picks bf16 only where the CPU has it natively, channels_last on CPU, and the run
record states what ran (precision, memory format, compiled or not, threads, time spent preparing batches)."""
from __future__ import annotations

import types
from pathlib import Path

import pytest
import torch

from resnet_core import devices
from resnet_core.devices import autocast_dtype, cpu_has_native_bf16, precision_name, uses_channels_last
from resnet_core.engine import Trainer, train
from resnet_core.fast_path import FastPath
from resnet_core.record import read_summary
from resnet_core.run_config import RunConfig

CPU = torch.device("cpu")


def tiny(**over) -> RunConfig:
    d = {"name": "cpu", "device": "cpu",
         "data": {"name": "synthetic", "augment": "none", "synthetic": {"image_size": 8, "n_train": 64, "n_test": 32}},
         "model": {"family": "cifar", "depth": 8}, "schedule": {"name": "constant", "unit": "iter", "total": 4},
         "batch_size": 16, "log_every": 2, "eval_every": 4, "checkpoint": False}
    d.update(over)
    return RunConfig.from_dict(d)


@pytest.mark.parametrize("native, expected", [(True, torch.bfloat16), (False, None)])
def test_precision_auto_on_cpu_is_bf16_only_where_native(monkeypatch, native, expected):
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: native)
    assert autocast_dtype("auto", CPU) is expected
    assert autocast_dtype("fp32", CPU) is None and autocast_dtype("bf16", CPU) is torch.bfloat16
    assert autocast_dtype("auto", torch.device("mps")) is None  # MPS stays fp32
    assert autocast_dtype("auto", torch.device("cuda")) is torch.bfloat16


@pytest.mark.parametrize("avx512_bf16, amx, expected", [(True, False, True), (False, True, True),
                                                        (False, False, False)])
def test_native_bf16_is_detected_from_the_instruction_set(monkeypatch, avx512_bf16, amx, expected):
    fake = types.SimpleNamespace(_is_avx512_bf16_supported=lambda: avx512_bf16, _is_amx_tile_supported=lambda: amx)
    monkeypatch.setattr(devices.torch, "cpu", fake)
    monkeypatch.setattr(devices.platform, "machine", lambda: "x86_64")
    assert cpu_has_native_bf16() is expected


def test_native_bf16_on_arm_reads_the_cpu_features(monkeypatch, tmp_path):
    monkeypatch.setattr(devices.torch, "cpu", types.SimpleNamespace())
    monkeypatch.setattr(devices.platform, "machine", lambda: "aarch64")
    info = tmp_path / "cpuinfo"
    real_path = devices.Path
    monkeypatch.setattr(devices, "Path", lambda p: info if p == "/proc/cpuinfo" else real_path(p))
    info.write_text("processor\t: 0\nFeatures\t: fp asimd evtstrm aes sha2 bf16 i8mm\n")
    assert cpu_has_native_bf16() is True
    info.write_text("processor\t: 0\nFeatures\t: fp asimd evtstrm aes sha2 asimdbf16x\n")
    assert cpu_has_native_bf16() is False


def test_channels_last_where_it_pays():
    assert uses_channels_last(True, CPU, torch.float32) is True
    assert uses_channels_last(True, CPU, torch.float64) is False   # no oneDNN fp64 kernels
    assert uses_channels_last(False, CPU, torch.float32) is False  # a switch to turn it off
    assert uses_channels_last(True, torch.device("mps"), torch.float32) is False
    assert precision_name(torch.bfloat16, torch.float32) == "bf16" and precision_name(None, torch.float64) == "fp64"


@pytest.mark.parametrize("native", [True, False])
def test_the_run_record_states_what_ran(monkeypatch, tmp_path, native):
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: native)
    seen = {}
    original = FastPath._logits

    def spy(self, x):
        out = original(self, x)
        seen["x_channels_last"] = x.is_contiguous(memory_format=torch.channels_last)
        seen["autocast"] = self.amp
        return out

    monkeypatch.setattr(FastPath, "_logits", spy)
    result = train(tiny(), tmp_path / "run")
    s = read_summary(tmp_path / "run")
    assert result.status == "complete"
    assert s["precision"] == ("bf16" if native else "fp32") and seen["autocast"] is (torch.bfloat16 if native else None)
    assert s["channels_last"] is True and seen["x_channels_last"] is True
    assert s["compiled"] is False and s["fast_path"] == "eager"
    assert s["threads"] == torch.get_num_threads()
    assert 0 < s["data_time_s"] < s["wall_time_s"] + 1


def test_channels_last_can_be_switched_off_and_fp64_stays_contiguous(tmp_path):
    for over, expected in (({"channels_last": False}, False), ({"precision": "fp64"}, False)):
        trainer = Trainer([tiny(**over)], [tmp_path / str(len(over))], [])
        conv = next(m for m in trainer.path.model.modules() if isinstance(m, torch.nn.Conv2d))
        assert trainer.path.channels_last is expected
        assert conv.weight.is_contiguous()
    trainer = Trainer([tiny(precision="fp32")], [tmp_path / "cl"], [])
    conv = next(m for m in trainer.path.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) and not conv.weight.is_contiguous()


def test_bf16_and_fp32_runs_agree_on_a_learnable_task(tmp_path):
    """bf16 autocast keeps fp32 weights: the same short run in both lands within a few points of test error."""
    cfg = dict(schedule={"name": "constant", "unit": "epoch", "total": 6}, optim={"name": "sgd", "lr": 0.05},
               data={"name": "synthetic", "augment": "none",
                     "synthetic": {"image_size": 12, "num_classes": 4, "n_train": 512, "n_test": 256}},
               eval_every=6, batch_size=32, log_every=8)
    errs = {p: train(tiny(precision=p, **cfg), tmp_path / p).summary["final_test_error"] for p in ("fp32", "bf16")}
    assert errs["fp32"] < 70 and errs["bf16"] < 70, errs  # both learned (chance is 75 %)
    assert abs(errs["fp32"] - errs["bf16"]) < 10, errs


def test_cpu_workers_share_the_cores_without_oversubscription(monkeypatch):
    from sweeps.run import worker

    monkeypatch.setattr(worker, "available_cores", lambda: 8)
    assert worker.cpu_threads(["cpu"] * 8) == 1
    assert worker.cpu_threads(["cpu"] * 2) == 4
    assert worker.cpu_threads(["cpu"]) == 8           # one worker: every core
    assert worker.cpu_threads(["cpu"] * 16) == 1      # never below one
    assert worker.cpu_threads(["cuda:0", "cuda:1"]) is None


def test_bench_cpu_table_has_every_variant(capsys):
    """The CPU table in one run: every variant, a failing one reported as failed, each figure its fastest window
    (the windows taken in turn), the ratio to the seed-style loop and the share of the best variant."""
    import argparse
    import contextlib

    from resnet_core import bench
    from resnet_core.bench_cpu import VARIANTS, run_cpu_bench
    from resnet_core.errors import FastPathMismatch
    from resnet_core.graphs import GraphCaptureError

    args = argparse.Namespace(depths="8", threads="1", batch_size=8, steps=6, warmup=1, rounds=3, no_seed_style=False,
                              data="synthetic", overrides=[], fast="auto", device="cpu", members="1")
    labels = [v[0] for v in VARIANTS if v[1]["fast"] != "compile"]
    calls: list[tuple[str, int]] = []

    class Scripted:  # bench.Timer's interface: timer(steps) -> img/s, .fast, .fallback (only while it is open)
        def __init__(self, name: str, figures: list[float], fast: str, fallback: str | None = None) -> None:
            self.name, self.figures, self._fast, self._fallback, self.open = name, figures, fast, fallback, True

        @property
        def fast(self) -> str:
            assert self.open, "read after its trainer was closed"
            return self._fast

        @property
        def fallback(self) -> str | None:
            assert self.open, "read after its trainer was closed"
            return self._fallback

        def __call__(self, steps: int) -> float:
            calls.append((self.name, steps))
            return self.figures.pop(0)

    @contextlib.contextmanager
    def engine_timer(cfg, members, warmup):  # bench.engine_timer's signature: (config, members, warm-up steps)
        if cfg.fast == "compile":
            raise GraphCaptureError("fast=compile: torch.compile failed (no compiler); set fast: eager")
        if (cfg.precision, cfg.channels_last) == ("bf16", False):  # the guard stops an explicit path that is wrong
            raise FastPathMismatch("precision=bf16: eager, bf16 disagreed with the eager reference at its first "
                                   "step: gradient of fc.weight is 140.0 % off the reference (allowed 20.0 %)")
        name = f"{cfg.precision}/{cfg.channels_last}"
        fallback = ("eager, fp32, channels_last disagreed with the eager reference at its first step: …"
                    if (cfg.precision, cfg.channels_last) == ("fp32", True) else None)
        # the configured engine's middle window is its fastest: the figure must be the best, not the last or first
        timer = Scripted(name, [90.0, 100.0, 80.0] if cfg.precision == "auto" else [150.0, 200.0, 120.0], cfg.fast,
                         fallback)
        yield timer
        timer.open = False  # as bench.engine_timer closes its trainer

    @contextlib.contextmanager
    def seed_timer(cfg, warmup):
        yield Scripted("seed", [50.0, 40.0, 30.0], "eager")

    rows = run_cpu_bench(args, bench._config, engine_timer, seed_timer)
    out = capsys.readouterr().out
    assert "peak matmul fp32" in out and "fastest of 3 windows of 2 steps" in out
    assert "engine as configured (" in out and "= 50% of the best variant, 2.00× the seed-style loop" in out
    assert "engine compile bf16 channels_last  failed: fast=compile: torch.compile failed (no compiler)" in out
    assert "engine bf16 NCHW                   wrong numbers: precision=bf16: eager, bf16 disagreed" in out
    assert "engine fp32 channels_last          wrong numbers: eager, fp32, channels_last disagreed" in out
    assert not {"engine bf16 NCHW", "engine fp32 channels_last"} & {r["variant"] for r in rows}  # no speed for them
    assert [r["variant"] for r in rows][:3] == ["seed-style loop", "engine as configured", f"engine {labels[0]}"]
    assert all(r["gflop_per_s"] > 0 and r["peak_gflop_per_s"] > 0 for r in rows)
    assert {c[1] for c in calls} == {2}
    # taken in turn: every timer's first window before any timer's second
    first_round = calls[:len(rows)]
    assert len({c[0] for c in first_round}) == len({c[0] for c in calls}), calls


def test_fast_compile_on_cpu_is_torch_compile_alone(monkeypatch, tmp_path, a_cpp_compiler):
    """`fast: compile` on a CPU (no graph backend) wraps the model in torch.compile and trains: no graph capture
    (which needs a backend; it failed with an AssertionError before), and the record says compiled."""
    compiled = []

    def fake_compile(model, **kw):   # torch.compile's contract without inductor's build time: the same module
        compiled.append(model)
        return model

    monkeypatch.setattr(torch, "compile", fake_compile)
    result = train(tiny(fast="compile"), tmp_path / "run")
    s = read_summary(tmp_path / "run")
    assert result.status == "complete" and len(compiled) == 1
    assert s["compiled"] is True and s["fast_path"] == "compile" and s["fast_fallback"] is None


def dynamo_only(monkeypatch) -> list:
    """torch.compile as it wraps and traces the model (a real OptimizedModule, dynamo's graphs, AOT autograd), minus
    inductor's C++ build (tens of seconds cold): the `eager` backend, which needs no C++ compiler. Returns the models
    it was given."""
    from resnet_core import fast_path

    monkeypatch.setattr(fast_path, "cpu_compiler", lambda: "/usr/bin/g++")   # no build: no compiler needed
    real, given = torch.compile, []

    def compile_(model, **kw):
        given.append(model)
        return real(model, backend="eager")

    monkeypatch.setattr(torch, "compile", compile_)
    return given


def rows(run: Path, split: str) -> dict[tuple, float]:
    from resnet_core.record import read_metrics

    return {(r["step"], r["name"]): r["value"] for r in read_metrics(run) if r["split"] == split}


@pytest.mark.slow
def test_fast_compile_on_cpu_records_the_gradient_probes(monkeypatch, tmp_path):
    """A compiled model's parameters are named `_orig_mod.*`: the probes must still find every layer (they recorded
    all-zero gradient norms under `fast: compile` before), and match the eager run's."""
    dynamo_only(monkeypatch)
    cfg = dict(precision="fp32", probes=True)
    train(tiny(fast="eager", **cfg), tmp_path / "eager")
    train(tiny(fast="compile", **cfg), tmp_path / "compile")
    eager, compiled = rows(tmp_path / "eager", "grad_norm"), rows(tmp_path / "compile", "grad_norm")
    assert read_summary(tmp_path / "compile")["compiled"] is True
    assert eager.keys() == compiled.keys() and len(eager) >= 8
    scale = max(abs(v) for v in eager.values())
    assert scale > 0
    for key, v in eager.items():
        assert abs(compiled[key] - v) <= 1e-4 * scale, (key, v, compiled[key])


@pytest.mark.parametrize("threshold, compiler, expected", [
    pytest.param(0.0, "/usr/bin/g++", "compile", marks=pytest.mark.slow),  # a real torch.compile build
    (1e30, "/usr/bin/g++", "eager"),
    (0.0, None, "eager")])
def test_fast_auto_on_cpu_compiles_runs_long_enough_to_repay_it(monkeypatch, tmp_path, threshold, compiler,
                                                                 expected):
    """`fast: auto` on a CPU compiles where a C++ compiler is there and the run's training FLOPs reach the
    threshold; the record says which path ran."""
    given = dynamo_only(monkeypatch)
    monkeypatch.setattr(devices, "CPU_COMPILE_PAYS_FLOPS", threshold)
    monkeypatch.setattr(devices, "cpu_compiler", lambda: compiler)
    result = train(tiny(fast="auto"), tmp_path / "run")
    s = read_summary(tmp_path / "run")
    assert result.status == "complete" and s["fast_path"] == expected and s["fast_fallback"] is None
    assert s["compiled"] is (expected == "compile") and len(given) == (expected == "compile")


def test_the_compile_threshold_separates_real_studies_from_the_quickstart():
    """Where the threshold falls: He et al.'s CIFAR ResNet-20, even the 4-epoch CPU study, repays a compile; the
    quickstart's trials (ResNet-20 at 16×16, 36,000 images) and one-epoch toy runs do not."""
    from resnet_core.config import ModelConfig
    from resnet_core.flops import train_flops

    resnet20 = ModelConfig(family="cifar", depth=20)
    assert devices.CPU_COMPILE_PAYS_FLOPS <= train_flops(resnet20, 32, images=4 * 50_000)
    assert train_flops(ModelConfig(family="cifar", depth=20, num_classes=4), 16, 12 * 3_000) \
        < devices.CPU_COMPILE_PAYS_FLOPS
    assert train_flops(ModelConfig(family="cifar", depth=8), 32, images=50_000) < devices.CPU_COMPILE_PAYS_FLOPS


class BuildFails(torch.nn.Module):
    """What torch.compile returns where inductor cannot build (no working C++ toolchain): the first call runs part
    of the model (BN statistics move) and then raises."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self._orig_mod = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._orig_mod(x)
        raise RuntimeError("InductorError: CppCompileError: C++ compile error\n\nSet TORCHDYNAMO_VERBOSE=1 for the "
                           "internal stack trace (please do this especially if you're reporting a bug to PyTorch).")


def test_fast_auto_goes_on_eagerly_from_the_same_state_when_compile_fails(monkeypatch, tmp_path):
    monkeypatch.setattr(torch, "compile", lambda model, **kw: BuildFails(model))
    monkeypatch.setattr(devices, "CPU_COMPILE_PAYS_FLOPS", 0.0)
    monkeypatch.setattr(devices, "cpu_compiler", lambda: "/usr/bin/g++")
    with pytest.warns(UserWarning, match="torch.compile failed.*goes on eagerly"):
        train(tiny(fast="auto", precision="fp32"), tmp_path / "auto")
    train(tiny(fast="eager", precision="fp32"), tmp_path / "eager")
    s = read_summary(tmp_path / "auto")
    assert s["status"] == "complete" and s["fast_path"] == "eager" and s["compiled"] is False
    assert "CppCompileError" in s["fast_fallback"]
    fell_back, eager = rows(tmp_path / "auto", "train"), rows(tmp_path / "eager", "train")
    fell_back.update(rows(tmp_path / "auto", "test"))
    eager.update(rows(tmp_path / "eager", "test"))
    losses = [k for k in eager if k[1] == "loss"]
    assert losses and fell_back.keys() == eager.keys()
    for key in losses:   # the same process, the same eager ops from the same state
        assert abs(fell_back[key] - eager[key]) <= 1e-6 * max(1.0, abs(eager[key])), key


def test_explicit_fast_compile_stops_with_the_cause_when_compile_fails(monkeypatch, tmp_path, a_cpp_compiler):
    from resnet_core.graphs import GraphCaptureError

    monkeypatch.setattr(torch, "compile", lambda model, **kw: BuildFails(model))
    with pytest.raises(GraphCaptureError, match="fast=compile: torch.compile failed .*CppCompileError.*fast: eager"):
        train(tiny(fast="compile"), tmp_path / "run")
    s = read_summary(tmp_path / "run")
    assert s["status"] == "failed" and s["compiled"] is False  # it said compiled: true although nothing compiled


def test_explicit_fast_compile_failing_is_one_line_on_the_command_line(monkeypatch, tmp_path, capsys, a_cpp_compiler):
    """The CLI prints the cause in one line (exit 1: the run failed, the input was fine), without torch's
    traceback and advice pages (it printed ~120 lines before)."""
    import yaml

    from resnet_core.cli import main

    monkeypatch.setattr(torch, "compile", lambda model, **kw: BuildFails(model))
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump(tiny(fast="compile").to_dict()))
    assert main(["train", "--config", str(cfg), "--out", str(tmp_path / "run")]) == 1
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip() and "%|" not in ln]
    assert len(err) == 1, err
    assert err[0].startswith("error: fast=compile: torch.compile failed (RuntimeError: InductorError: CppCompileError")
    assert "TORCHDYNAMO_VERBOSE" not in err[0] and "Traceback" not in err[0]


class FailsAtSecondEvaluation(torch.nn.Module):
    """A compiled model that builds and trains, then raises at its second evaluation: not a compile failure."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self._orig_mod, self.evaluations = model, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._orig_mod.training:
            self.evaluations += 1
            if self.evaluations == 2:
                raise RuntimeError("a fault in the second evaluation")
        return self._orig_mod(x)


def test_only_the_first_evaluation_may_fall_back_from_compile(monkeypatch, tmp_path):
    """`fast: auto` falls back to eager when the compiled model fails its first call; a later failure is a real
    fault and stops the run (every evaluation went through the fallback, hiding it as "compile failed")."""
    monkeypatch.setattr(torch, "compile", lambda model, **kw: FailsAtSecondEvaluation(model))
    monkeypatch.setattr(devices, "CPU_COMPILE_PAYS_FLOPS", 0.0)
    monkeypatch.setattr(devices, "cpu_compiler", lambda: "/usr/bin/g++")
    cfg = tiny(fast="auto", schedule={"name": "constant", "unit": "iter", "total": 8}, eval_every=4)
    with pytest.raises(RuntimeError, match="a fault in the second evaluation"):
        train(cfg, tmp_path / "run")
    s = read_summary(tmp_path / "run")
    assert s["status"] == "failed" and s["fast_path"] == "compile" and s["fast_fallback"] is None
