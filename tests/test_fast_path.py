"""The engine's fast path (issue 14), on the CPU: the graph logic through the stand-in backend
(resnet_core/graphs.py, RESNET_ABLATE_EMULATE_CUDA_GRAPH=1), exact resume under the graph, checkpoint slots as the
optimizer expects them, the device made current, loud capture failures, fp16 refused, memory freed without the
cyclic collector, the TF32 / cudnn policy.

Runs are tiny (ResNet-8 on 16×16 synthetic images, 4 steps an epoch) and single-threaded.
"""
from __future__ import annotations

import contextlib
import gc
import json
import weakref
from pathlib import Path
from typing import Any

import pytest
import torch

from resnet_core import checkpoint as ckpt
from resnet_core import devices, engine, graphs
from resnet_core.config import ModelConfig
from resnet_core.engine import Trainer, train, train_members
from resnet_core.fast_path import FastPath
from resnet_core.errors import ConfigError
from resnet_core.graphs import EMULATE_ENV, EmulatedGraphs, GraphCaptureError, HostValueChanged
from resnet_core.model import build_model
from resnet_core.record import read_summary
from resnet_core.run_config import RunConfig

from test_engine import load_pt, rows_of, tiny
from train_callbacks import InterruptAt

torch.set_num_threads(1)


def small(*overrides: str, **top: Any) -> dict[str, Any]:
    """4 steps an epoch, 3 epochs, eval every half epoch, cosine schedule (the lr changes every step)."""
    return tiny("schedule.name=cosine", "schedule.total=3", *overrides, n_train=128, eval_every=0.5, log_every=2,
                **top)


@pytest.fixture
def emulated(monkeypatch) -> list[EmulatedGraphs]:
    """Turn the CPU graph stand-in on; the list collects every backend the engine creates."""
    monkeypatch.setenv(EMULATE_ENV, "1")
    made: list[EmulatedGraphs] = []
    original = engine.graph_backend

    def recording(device):
        backend = original(device)
        made.append(backend)
        return backend

    monkeypatch.setattr(engine, "graph_backend", recording)
    return made


@pytest.fixture
def layouts(monkeypatch) -> list[bool]:
    """Records, for every trainer run, whether its conv weights are channels_last."""
    seen: list[bool] = []
    original = Trainer.run

    def run(self, resume):
        w = self.path.model.stem.conv.weight
        seen.append(w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous())
        return original(self, resume)

    monkeypatch.setattr(Trainer, "run", run)
    return seen


def assert_same_run(a: Path, b: Path) -> None:
    """Every metric row (wall-clock aside) and every checkpointed tensor equal: same CPU, same kernels."""
    assert rows_of(a) == rows_of(b)
    x, y = load_pt(a / "last.pt"), load_pt(b / "last.pt")
    assert x["step"] == y["step"]
    for key in x["model"]:
        assert torch.equal(x["model"][key], y["model"][key]), key
    assert x["optim"].keys() == y["optim"].keys()
    for name in x["optim"]:
        for k in x["optim"][name]:
            assert torch.equal(x["optim"][name][k], y["optim"][name][k]), (name, k)


# -- the stand-in runs the graph logic --------------------------------------------------------------------------
@pytest.mark.parametrize("members", [1, 2])
def test_emulated_graph_run_equals_the_eager_run(tmp_path, emulated, members):
    cfgs = [small("precision=fp64", name=f"m{g}", seed=g) for g in range(members)]
    eager = train_members([{**c, "fast": "eager"} for c in cfgs], [tmp_path / f"eager{g}" for g in range(members)])
    graphed = train_members([{**c, "fast": "graph"} for c in cfgs], [tmp_path / f"graph{g}" for g in range(members)])
    for g in range(members):
        assert_same_run(graphed[g].run_dir, eager[g].run_dir)
        assert graphed[g].summary["fast_path"] == "graph" and eager[g].summary["fast_path"] == "eager"
        assert graphed[g].summary["fast_fallback"] is None
    backend = emulated[-1]
    assert backend.captures == 1  # one capture, then replays of it for all 12 steps


def test_stand_in_replays_the_static_inputs_and_rejects_changed_host_values():
    static = torch.zeros(2)
    seen: list[torch.Tensor] = []
    host = {"lr": 0.1}
    graph = EmulatedGraphs().capture(lambda: seen.append(static.clone()), watch=lambda: dict(host))
    static.copy_(torch.tensor([1.0, 2.0]))
    graph.replay()
    assert torch.equal(seen[-1], torch.tensor([1.0, 2.0])) and graph.replays == 1
    host["lr"] = 0.05  # a float the step read at capture: a real graph would keep using 0.1
    with pytest.raises(HostValueChanged, match="device tensor"):
        graph.replay()


def test_no_graph_backend_without_cuda_or_the_stand_in(monkeypatch):
    monkeypatch.delenv(EMULATE_ENV, raising=False)
    assert graphs.graph_backend(torch.device("cpu")) is None
    assert isinstance(graphs.graph_backend(torch.device("cuda:1")), graphs.CudaGraphs)
    monkeypatch.setenv(EMULATE_ENV, "1")
    assert isinstance(graphs.graph_backend(torch.device("cpu")), EmulatedGraphs)


# -- fault 2 (and 3): resume under the graph == uninterrupted -----------------------------------------------------
@pytest.mark.parametrize("fast", ["eager", "graph"])
@pytest.mark.parametrize("channels_last", [True, False], ids=["channels_last", "contiguous"])
@pytest.mark.parametrize("optim", ["sgd", "adam"])
def test_resume_matrix_equals_uninterrupted(tmp_path, emulated, layouts, optim, fast, channels_last):
    """Interrupted at step 6 (the middle of epoch 1), resumed: the same metrics, weights and optimizer state as the
    uninterrupted run, on both paths, with and without channels_last weights."""
    cfg = small(f"optim.name={optim}", "optim.lr=0.002" if optim == "adam" else "optim.lr=0.05",
                fast=fast, channels_last=channels_last)
    whole = train(cfg, tmp_path / "whole")
    broken = tmp_path / "broken"
    with pytest.raises(KeyboardInterrupt):
        train(cfg, broken, callbacks=[InterruptAt(6)])
    assert load_pt(broken / "last.pt")["step"] == 6
    resumed = train(cfg, broken, resume=True)
    assert resumed.status == whole.status == "complete" and resumed.summary["step"] == 12
    assert_same_run(broken, whole.run_dir)
    for key in ("final_test_error", "test_error_at_best_val", "final_train_error", "final_train_loss", "fast_path"):
        assert resumed.summary[key] == whole.summary[key], key
    assert resumed.summary["fast_path"] == fast
    assert layouts == [channels_last] * 3  # the layout asked for is the one that ran
    if fast == "graph":
        assert [b.captures for b in emulated] == [1, 1, 1]  # the resumed run captured after loading its state


def test_divergence_step_counts_from_the_start_after_a_graphed_resume(tmp_path, emulated, monkeypatch):
    """diverged_at is the run's step, not the step since the resume (the undo must keep the loaded counter)."""
    poison = 9  # 0-based step whose loss becomes NaN, after the resume at step 6

    original = FastPath._logits

    def poisoned(self, x):  # device-side test, as a captured graph would need it
        logits = original(self, x)
        return logits + torch.where(self.step_t == poison, float("nan"), 0.0).to(logits.dtype)

    monkeypatch.setattr(FastPath, "_logits", poisoned)
    cfg = small(fast="graph")
    whole = train(cfg, tmp_path / "whole")
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "broken", callbacks=[InterruptAt(6)])
    resumed = train(cfg, tmp_path / "broken", resume=True)
    assert whole.status == resumed.status == "diverged"
    assert resumed.summary["diverged_at"] == whole.summary["diverged_at"] == poison + 1


# -- fault 3: optimizer slots created on restore as the optimizer expects them ---------------------------------------
def _trained_member_checkpoint(cfg: ModelConfig, opt_cls, **opt_kw) -> dict[str, Any]:
    torch.manual_seed(0)
    model = build_model(cfg)
    opt = opt_cls(model.parameters(), lr=0.01, **opt_kw)
    model(torch.randn(4, cfg.in_channels, 8, 8)).sum().backward()
    opt.step()
    return ckpt.member_checkpoint(model, opt, 0, step=1)


TINY_MODEL = ModelConfig.from_dict({"family": "cifar", "depth": 8, "widths": [4, 8, 8], "num_classes": 3})


@pytest.mark.parametrize("members", [1, 2])
def test_restored_momentum_slots_have_the_weights_layout(members):
    state = _trained_member_checkpoint(TINY_MODEL, torch.optim.SGD, momentum=0.9)
    model = build_model(TINY_MODEL, members=members).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, fused=True)
    ckpt.restore_member(model, opt, 0, state)
    convs = [p for p in model.parameters() if p.dim() == 4]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    for p in model.parameters():
        buf = opt.state[p]["momentum_buffer"]
        assert buf.stride() == p.stride() and buf.dtype == p.dtype and buf.device == p.device
    model(torch.randn(2, 3 * members, 8, 8).contiguous(memory_format=torch.channels_last)).sum().backward()
    opt.step()  # fused SGD runs on the restored buffers


@pytest.mark.parametrize("capturable", [True, False])
def test_restored_adam_step_lives_where_the_optimizer_expects_it(capturable):
    """Capturable Adam keeps `step` on the parameters' device (a CUDA graph updates it there); the meta device stands
    in for a GPU here. Non-capturable Adam keeps it on the CPU."""
    state = _trained_member_checkpoint(TINY_MODEL, torch.optim.Adam)
    model = build_model(TINY_MODEL).to("meta")
    opt = torch.optim.Adam(model.parameters(), lr=0.01, capturable=capturable)
    ckpt.restore_member(model, opt, 0, state)
    for p in model.parameters():
        slot = opt.state[p]
        assert slot["step"].device.type == ("meta" if capturable else "cpu")
        assert slot["step"].dtype == torch.float32 and slot["step"].dim() == 0
        assert slot["exp_avg"].device.type == "meta" and slot["exp_avg"].shape == p.shape


# -- fault 4: the device is made current before any CUDA work ---------------------------------------------------
def test_make_current_sets_the_indexed_cuda_device(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: calls.append(torch.device(d)))
    devices.make_current("cuda:1")
    devices.make_current(torch.device("cpu"))
    devices.make_current("cuda")  # no index: whatever is current (CUDA_VISIBLE_DEVICES narrowed it)
    assert calls == [torch.device("cuda:1")]


def test_cuda_graph_backend_creates_streams_and_graphs_on_its_own_device(monkeypatch):
    """With torch.cuda mocked: every stream and graph is created while cuda:1 is the current device."""
    events: list[str] = []
    current = ["cuda:0"]

    @contextlib.contextmanager
    def device_guard(d):
        before = current[0]
        current[0] = str(torch.device(d))
        events.append(f"enter {current[0]}")
        yield
        current[0] = before
        events.append(f"exit -> {before}")

    class Stream:
        def __init__(self, device=None):
            events.append(f"Stream on {current[0]}")

        def wait_stream(self, other):
            pass

    class Graph:
        def __init__(self):
            events.append(f"CUDAGraph on {current[0]}")

    monkeypatch.setattr(torch.cuda, "device", device_guard)
    monkeypatch.setattr(torch.cuda, "Stream", Stream)
    monkeypatch.setattr(torch.cuda, "CUDAGraph", Graph)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: Stream())
    monkeypatch.setattr(torch.cuda, "stream", lambda s: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "graph", lambda g: contextlib.nullcontext())
    backend = graphs.CudaGraphs(torch.device("cuda:1"))
    ran = []
    backend.warmup(lambda: ran.append("step"), 2)
    backend.capture(lambda: ran.append("step"))
    created = [e for e in events if e.startswith(("Stream", "CUDAGraph"))]
    assert created and all(e.endswith("on cuda:1") for e in created), events
    assert current == ["cuda:0"] and ran == ["step"] * 3


def test_trainer_makes_its_device_current_first(tmp_path, monkeypatch):
    order = []
    monkeypatch.setattr(engine, "make_current", lambda d: order.append(("current", str(d))))
    original = engine.build_model
    monkeypatch.setattr(engine, "build_model", lambda *a, **k: order.append(("model",)) or original(*a, **k))
    train(small("schedule.total=0.5", probes=False, checkpoint=False), tmp_path / "r")
    assert order[0] == ("current", "cpu") and ("model",) in order


def test_worker_makes_its_device_current_before_anything(monkeypatch):
    pytest.importorskip("optuna")
    from sweeps.run import worker

    class Stop(Exception):
        pass

    order = []

    def current(d):
        order.append(("current", d))
        raise Stop

    monkeypatch.setattr(worker, "make_current", current)
    monkeypatch.setattr(worker, "quiet_optuna", lambda: order.append(("quiet",)))
    with pytest.raises(Stop):
        worker.run_worker(worker.WorkerSpec(spec={}, storage=None, study_dir="unused", device="cuda:1"))
    assert order == [("current", "cuda:1")]


# -- fault 5: no silent fallback ----------------------------------------------------------------------------------
@pytest.fixture
def failing_capture(monkeypatch):
    def capture(self, fn, watch=None):
        fn()  # it got as far as running the step (state changed) and then failed
        raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(EmulatedGraphs, "capture", capture)


def test_explicit_graph_fails_loudly_when_capture_fails(tmp_path, emulated, failing_capture):
    with pytest.raises(GraphCaptureError, match="fast=graph: capturing the training step failed.*fast: eager"):
        train(small(fast="graph"), tmp_path / "r")
    s = read_summary(tmp_path / "r")
    assert s["status"] == "failed" and "GraphCaptureError" in s["reason"]


def test_auto_falls_back_from_the_exact_state_and_says_so(tmp_path, emulated, failing_capture):
    with pytest.warns(UserWarning, match="graph capture failed"):
        fell = train(small(fast="auto"), tmp_path / "auto")
    eager = train(small(fast="eager"), tmp_path / "eager")
    assert fell.summary["fast_path"] == "eager" and "stream is capturing" in fell.summary["fast_fallback"]
    assert read_summary(tmp_path / "auto")["fast_path"] == "eager"
    assert_same_run(tmp_path / "auto", tmp_path / "eager")  # the warm-up and the failed capture left no trace
    assert eager.summary["fast_fallback"] is None


def test_graph_without_a_graph_backend_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.delenv(EMULATE_ENV, raising=False)
    for fast in ("graph",):  # compile without a graph backend is torch.compile alone (the CPU path)
        with pytest.raises(ConfigError) as e:
            train(small(fast=fast), tmp_path / fast)
        assert f"fast={fast}" in str(e.value) and "\n" not in str(e.value)
        assert not (tmp_path / fast).exists()  # refused before anything was written
    assert train(small("schedule.total=0.5", probes=False), tmp_path / "auto").summary["fast_path"] == "eager"


def test_bench_rows_record_the_path_that_ran(emulated, monkeypatch):
    from resnet_core import bench

    cfg = RunConfig.from_dict(small("schedule.name=constant", probes=False, checkpoint=False, fast="auto"))
    ips, path = bench.engine_throughput(cfg, 2, steps=2, warmup=1)
    assert ips > 0 and path == "graph"

    def capture(self, fn, watch=None):
        raise RuntimeError("no")

    monkeypatch.setattr(EmulatedGraphs, "capture", capture)
    with pytest.warns(UserWarning):
        assert bench.engine_throughput(cfg, 1, steps=2, warmup=1)[1] == "eager"
    assert bench.fast_path_field({1: "graph", 2: "graph"}) == "graph"
    assert bench.fast_path_field({1: "graph", 8: "eager"}) == "G1=graph,G8=eager"


# -- fault 6: fp16 refused ----------------------------------------------------------------------------------------
def test_fp16_is_refused_with_one_line(tmp_path):
    with pytest.raises(ConfigError) as e:
        RunConfig.from_dict(small("precision=fp16"))
    message = str(e.value)
    assert "fp16" in message and "bf16" in message and "loss scaling" in message and "\n" not in message


# -- fault 7: a finished trainer is freed at once -----------------------------------------------------------------
@pytest.mark.parametrize("fast", ["eager", "graph"])
def test_a_finished_trainer_is_freed_without_the_cyclic_collector(tmp_path, emulated, monkeypatch, fast):
    refs: list[weakref.ref] = []
    original = Trainer.run

    def run(self, resume):
        refs.extend([weakref.ref(self), weakref.ref(self.path), weakref.ref(self.path.model),
                     weakref.ref(self.path.opt), weakref.ref(self.train_loader)])
        return original(self, resume)

    monkeypatch.setattr(Trainer, "run", run)
    gc.collect()
    gc.disable()
    try:
        result = train(small("schedule.total=1", fast=fast), tmp_path / "r")
        alive = [r() for r in refs]
    finally:
        gc.enable()
    assert result.status == "complete" and len(refs) == 5
    assert alive == [None] * 5, f"still referenced: {[type(o).__name__ for o in alive if o is not None]}"


# -- item 8: TF32 and cudnn.benchmark -----------------------------------------------------------------------------
def test_tf32_policy_is_explicit_and_recorded(tmp_path):
    cuda = torch.device("cuda")
    assert devices.tf32_policy("fp32", cuda) is False  # fp32 means IEEE float32
    assert devices.tf32_policy("auto", cuda) is True and devices.tf32_policy("bf16", cuda) is True
    assert devices.tf32_policy("fp64", cuda) is False and devices.tf32_policy("fp32", torch.device("cpu")) is False
    flags = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark)
    try:
        devices.apply_cuda_math(tf32=False, static_shapes=True)
        assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
                torch.backends.cudnn.benchmark) == (False, False, True)
        devices.apply_cuda_math(tf32=True, static_shapes=False)
        assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
                torch.backends.cudnn.benchmark) == (True, True, False)
    finally:
        (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
         torch.backends.cudnn.benchmark) = flags
    s = train(small("schedule.total=0.5", probes=False), tmp_path / "r").summary
    assert s["tf32"] is False and json.loads((tmp_path / "r" / "summary.json").read_text())["tf32"] is False


def test_fast_compile_without_a_cpp_compiler_is_one_line_before_anything_is_written(tmp_path, monkeypatch, capsys):
    """An explicit fast: compile on a CPU without a C++ compiler failed at its first step (exit 1, 'InvalidCxxCompiler:
    No working C++ compiler found'), after config.yaml and summary.json were written; fast: graph on a CPU was
    already refused up front."""
    import yaml

    from resnet_core.cli import main

    monkeypatch.setenv("CXX", str(tmp_path / "no-such-c++"))
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(tiny(fast="compile")))
    code = main(["train", "--config", str(config), "--out", str(tmp_path / "run"), "--wandb", "off"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and err.startswith("error: fast=compile needs a C++ compiler"), err
    assert "fast: auto or eager" in err and not (tmp_path / "run").exists()
