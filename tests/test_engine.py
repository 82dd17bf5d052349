"""The training engine: `train`, `train_members`, the run record, checkpoints, resume, divergence,
fused trials and the gradient probe at initialisation.

Every run here is tiny (the offline synthetic dataset at 16×16, a few hundred images, tens of steps) and runs on
the CPU with one thread: small convs gain nothing from OpenMP threads, and they spin badly on a busy machine.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

import resnet_core
from resnet_core.config import ModelConfig
from resnet_core.engine import RunResult, evaluate_model, train, train_members
from resnet_core.fast_path import FastPath
from resnet_core.errors import ConfigError
from resnet_core.model import build_model, count_params
from resnet_core.overrides import apply_overrides
from resnet_core.provenance import provenance
from resnet_core.record import read_config, read_metrics, read_summary
from resnet_core.run_config import RunConfig

from numerics import assert_series_close, assert_states_close
from run_configs import BAD_ASSIGNMENTS
from train_callbacks import InterruptAt

torch.set_num_threads(1)


def tiny(*overrides: str, n_train: int = 256, **top: Any) -> dict[str, Any]:
    """A tiny CPU run config: ResNet-8 on 16×16 synthetic glyphs; `overrides` as `--set key=value`."""
    d: dict[str, Any] = {
        "name": "tiny", "device": "cpu", "seed": 0,
        "data": {"name": "synthetic", "synthetic": {"image_size": 16, "n_train": n_train, "n_test": 100}},
        "model": {"family": "cifar", "depth": 8},
        "optim": {"name": "sgd", "lr": 0.05},
        "schedule": {"name": "constant", "unit": "epoch", "total": 2},
        "batch_size": 32, "eval_batch_size": 100, "log_every": 4, "eval_every": 1,
    }
    d.update(top)
    return apply_overrides(d, overrides)


def rows_of(run_dir: Path, *, skip=("throughput",)) -> list[tuple]:
    """Metric rows as tuples, in file order, without the wall-clock ones."""
    return [(r["step"], r["epoch"], r["split"], r["name"], r["value"]) for r in read_metrics(run_dir)
            if r["name"] not in skip]


def series(run_dir: Path, split: str, name: str) -> list[tuple[int, float]]:
    return [(r["step"], r["value"]) for r in read_metrics(run_dir) if r["split"] == split and r["name"] == name]


def load_pt(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=True)


def assert_weights_close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], tol: float) -> None:
    """Every tensor within `tol` of the reference, against a floor tied to the state's scale (tests/numerics.py)."""
    assert_states_close(a, b, tol, "weights")


PROBE_TOL = 1e-6  # probe buffers are float32 by design (resnet_core/grad_probes.py), whatever the run's precision
FUSED_TOL = 1e-10  # float64 fused vs separate runs, 16 steps: round-off only (1e-9 on one weight fails)


def assert_metrics_close(a: Path, b: Path, tol: float) -> None:
    """Same rows; train/val/test values within `tol`, probe values within float32 rounding, each against a floor
    tied to its series' scale (a series: one split and name over the steps)."""
    ra = {(s, sp, n): v for s, _, sp, n, v in rows_of(a)}
    rb = {(s, sp, n): v for s, _, sp, n, v in rows_of(b)}
    assert_series_close(ra, rb, lambda k: tol if k[1] in ("train", "val", "test") else max(tol, PROBE_TOL))


def strict_json_lines(path: Path) -> list[dict]:
    """Parse JSON lines rejecting NaN/Infinity tokens, as strict readers (JS, jq) do."""
    def reject(token: str) -> None:
        raise ValueError(f"non-standard JSON token {token}")

    return [json.loads(line, parse_constant=reject) for line in path.read_text().splitlines()]


# -- 1. a short run, and everything it writes -------------------------------------------------------------------
@pytest.fixture(scope="module")
def short_run(tmp_path_factory) -> tuple[RunResult, Path, RunConfig]:
    """ResNet-8, Adam, 4 epochs of 384 images (+128 held out for val), batch 32: 48 steps."""
    cfg = RunConfig.from_dict(tiny("optim.name=adam", "optim.lr=0.002", "data.val_size=128", "schedule.total=4",
                                   "data.augment=none", "precision=fp32", n_train=512, log_every=6))
    run_dir = tmp_path_factory.mktemp("short") / "run"
    return train(cfg, run_dir), run_dir, cfg


def test_short_run_lowers_the_training_loss(short_run):
    result, run_dir, _ = short_run
    assert result.status == "complete" and result.reason is None
    loss = series(run_dir, "train", "loss")
    assert [s for s, _ in loss] == list(range(6, 49, 6))
    first, last = loss[0][1], loss[-1][1]
    assert last < first - 0.2, f"training loss did not fall: {loss}"
    error = series(run_dir, "train", "error")
    assert error[-1][1] < error[0][1]


def test_run_record_files(short_run):
    result, run_dir, cfg = short_run
    for name in ("config.yaml", "metrics.jsonl", "summary.json", "last.pt", "best.pt"):
        assert (run_dir / name).is_file(), name
    assert result.run_dir == run_dir

    # config.yaml: the resolved config, which loads back as the same run
    saved = read_config(run_dir)
    assert saved["model"]["stages"] == [1, 1, 1] and saved["model"]["widths"] == [16, 32, 64]
    again = RunConfig.from_dict(saved)
    assert again.to_dict()["optim"] == cfg.to_dict()["optim"]
    assert again.schedule == cfg.schedule and again.data == cfg.data and again.seed == cfg.seed

    # metrics.jsonl: step, epoch, split, name, value on every line
    rows = strict_json_lines(run_dir / "metrics.jsonl")
    assert rows and all(set(r) == {"step", "epoch", "split", "name", "value"} for r in rows)
    splits = {r["split"] for r in rows}
    assert {"train", "val", "test", "grad_norm", "grad_norm_max", "grad_norm_block", "grad_norm_block_max",
            "weight_norm"} <= splits
    model = build_model(ModelConfig.from_dict(saved["model"]))
    layers = [n for n, _ in model.probe_layers()]
    blocks = [n for n, _ in model.blocks()]
    assert "stage1.block0.conv1" in layers and "stage3.block0" in blocks
    at_end = [r for r in rows if r["step"] == 48]
    for split, names in (("grad_norm", layers), ("grad_norm_max", layers), ("weight_norm", layers),
                         ("grad_norm_block", blocks), ("grad_norm_block_max", blocks)):
        got = [r["name"] for r in at_end if r["split"] == split]
        assert got == names, split
    for r in rows:
        if r["split"].startswith("grad_norm") or r["split"] == "weight_norm":
            assert r["value"] > 0 and math.isfinite(r["value"])
    # the window maximum is at least the window mean (and not the zeroed buffer: CPU .cpu() aliases)
    for r in rows:
        if r["split"] in ("grad_norm_max", "grad_norm_block_max"):
            mean_split = r["split"][: -len("_max")]
            mean = next(m for m in rows if (m["step"], m["split"], m["name"]) == (r["step"], mean_split, r["name"]))
            assert r["value"] >= mean["value"] * (1 - 1e-6), (r, mean)
    # a block's norm combines its layers' norms: at least the largest of them, at most their root-sum-square
    gn = {r["name"]: r["value"] for r in at_end if r["split"] == "grad_norm"}
    blk = {r["name"]: r["value"] for r in at_end if r["split"] == "grad_norm_block"}
    convs = [gn["stage2.block0.conv1"], gn["stage2.block0.conv2"]]
    assert blk["stage2.block0"] >= max(convs) * (1 - 1e-6)
    assert blk["stage2.block0"] < sum(convs) + 10 * max(convs)
    # weight norms are the weights' actual norms (the last log follows the last update)
    last = load_pt(run_dir / "last.pt")["model"]
    wn = {r["name"]: r["value"] for r in at_end if r["split"] == "weight_norm"}
    assert wn["stem.conv"] == pytest.approx(last["stem.conv.weight"].norm().item(), rel=1e-5)
    assert series(run_dir, "train", "lr") == [(s, 0.002) for s in range(6, 49, 6)]
    assert [s for s, _ in series(run_dir, "val", "error")] == [12, 24, 36, 48]

    # summary.json
    s = read_summary(run_dir)
    assert s == json.loads(json.dumps(result.summary))
    assert s["status"] == "complete" and s["step"] == s["total_steps"] == 48
    assert s["params"] == count_params(model)
    test_err = [v for _, v in series(run_dir, "test", "error")]
    val_err = [v for _, v in series(run_dir, "val", "error")]
    assert s["final_test_error"] == test_err[-1] and s["best_val_error"] == min(val_err)
    # "best" is chosen on val: the test error logged at the first step with the lowest val error
    assert s["test_error_at_best_val"] == test_err[val_err.index(min(val_err))]
    assert s["final_val_error"] == val_err[-1]
    train_err = [v for st, v in series(run_dir, "train", "error") if st > 48 - 12]  # the last epoch
    assert s["final_train_error"] == pytest.approx(sum(train_err) / len(train_err))
    assert s["wall_time_s"] > 0 and s["img_per_s"] > 0
    assert s["diverged_at"] is None and s["fused_members"] == 1 and s["device"] == "cpu"


def test_atomic_writes_replace_whole_or_not_at_all(tmp_path):
    """record.atomic_file is the one atomic write: text records, checkpoints (torch.save) and heartbeats use it."""
    from resnet_core.checkpoint import atomic_save
    from resnet_core.record import atomic_write_text

    path = tmp_path / "sub" / "last.pt"
    atomic_save({"w": torch.arange(3.0), "step": 2}, path)
    assert torch.load(path, weights_only=True)["w"].tolist() == [0.0, 1.0, 2.0]
    with pytest.raises(Exception):  # noqa: B017 - whatever pickle raises for a lambda
        atomic_save({"w": torch.zeros(1), "bad": lambda: 0}, path)  # cannot be pickled: the old file stays
    assert torch.load(path, weights_only=True)["step"] == 2
    atomic_write_text(tmp_path / "a.json", "{}\n", fsync=False)
    assert (tmp_path / "a.json").read_text() == "{}\n"
    # an exclusive write creates a file whole, and leaves one already there as it was
    atomic_write_text(tmp_path / "b.json", "1\n", exclusive=True)
    with pytest.raises(FileExistsError):
        atomic_write_text(tmp_path / "b.json", "2\n", exclusive=True)
    assert (tmp_path / "b.json").read_text() == "1\n"
    assert not list(tmp_path.rglob(".*.tmp"))  # no temporary file left behind


def test_the_summary_records_the_code_that_wrote_it(short_run):
    result, run_dir, _ = short_run
    assert read_summary(run_dir)["provenance"] == result.summary["provenance"] == provenance()


def test_checkpoints_load_with_weights_only(short_run):
    _, run_dir, _ = short_run
    last, best = load_pt(run_dir / "last.pt"), load_pt(run_dir / "best.pt")
    assert last["step"] == 48
    # best.pt is the first eval with the lowest val error
    val = series(run_dir, "val", "error")
    best_step = min(val, key=lambda sv: sv[1])[0]
    assert best["step"] == best_step and best["best_val"] == min(v for _, v in val)
    for state in (last, best):
        model = build_model(ModelConfig.from_dict(state["model_config"]))
        model.load_state_dict(state["model"])
        assert set(state["optim"]) == {n for n, _ in model.named_parameters()}


def test_evaluate_model_reproduces_the_logged_test_error(short_run):
    _, run_dir, cfg = short_run
    from resnet_core.data import build_loaders, load_dataset

    state = load_pt(run_dir / "last.pt")
    model = build_model(ModelConfig.from_dict(state["model_config"]))
    model.load_state_dict(state["model"])
    data = load_dataset(cfg.data)
    test = build_loaders(data, cfg.data, seeds=[0], batch_size=32, eval_batch_size=64).test  # other batching
    loss, err = evaluate_model(model, test, 1, torch.device("cpu"))
    assert err[0] == pytest.approx(read_summary(run_dir)["final_test_error"], abs=1e-9)
    assert loss[0] == pytest.approx(series(run_dir, "test", "loss")[-1][1], rel=1e-5)
    assert model.training  # evaluate_model restores the mode it found


def test_top_level_api():
    assert resnet_core.train is train and resnet_core.train_members is train_members


# -- 2. a residual net trains better than its plain twin ----------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_residual_beats_plain_at_depth_20(tmp_path, seed):
    """Degradation (He et al. 2016, Fig. 1/6) in miniature: ResNet-20 vs plain-20, same seed, data and budget
    (Adam 2e-3, 4 epochs of 512 images at batch 32 = 64 steps, no augmentation).

    Measured (final_train_error = mean train error over the last epoch, %), seeds 0..11:
    residual 43.4 36.7 34.2 44.9 59.8 50.2 42.8 52.1 48.6 50.4 43.0 48.2,
    plain    78.9 79.7 81.2 78.1 86.7 80.5 79.3 83.6 82.0 81.4 78.1 79.9: gap 26.9..47.0 points (35.5, 43.0 here).
    """
    errors, losses = {}, {}
    for shortcut in ("identity", "none"):
        cfg = tiny(f"model.shortcut={shortcut}", "model.depth=20", "optim.name=adam", "optim.lr=0.002",
                   "schedule.total=4", "data.augment=none", n_train=512, log_every=16, eval_every=4,
                   probes=False, checkpoint=False, seed=seed)
        result = train(cfg, tmp_path / shortcut)
        assert result.status == "complete"
        errors[shortcut] = result.summary["final_train_error"]
        losses[shortcut] = result.summary["final_train_loss"]
    assert errors["identity"] < errors["none"] - 15, errors
    assert losses["identity"] < losses["none"], losses


# -- 3. resume == uninterrupted ---------------------------------------------------------------------------------
@pytest.mark.parametrize("optim", ["sgd", "adam"])
def test_resume_equals_uninterrupted(tmp_path, optim):
    # 8 steps an epoch, eval every half epoch: the interrupt at step 12 falls in the middle of epoch 1
    cfg = tiny(f"optim.name={optim}", "optim.lr=0.002" if optim == "adam" else "optim.lr=0.05",
               "schedule.name=cosine", "schedule.total=3", eval_every=0.5, log_every=3)
    whole = train(cfg, tmp_path / "whole")
    assert whole.status == "complete"

    broken = tmp_path / "broken"
    with pytest.raises(KeyboardInterrupt):
        train(cfg, broken, callbacks=[InterruptAt(12)])
    s = read_summary(broken)
    assert s["status"] == "interrupted" and s["step"] == 12 and s["reason"] == "interrupted (Ctrl-C)"
    assert load_pt(broken / "last.pt")["step"] == 12
    assert max(r["step"] for r in read_metrics(broken)) == 12

    resumed = train(cfg, broken, resume=True)
    assert resumed.status == "complete" and resumed.summary["step"] == 24
    assert rows_of(broken) == rows_of(whole.run_dir)  # every metric, in order, exactly (wall-clock throughput aside)
    a, b = load_pt(broken / "last.pt"), load_pt(whole.run_dir / "last.pt")
    assert a["step"] == b["step"] == 24
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for name in a["optim"]:
        for k in a["optim"][name]:
            assert torch.equal(a["optim"][name][k], b["optim"][name][k]), (name, k)
    for key in ("final_test_error", "test_error_at_best_val", "final_train_error", "final_train_loss"):
        assert resumed.summary[key] == whole.summary[key], key


class ThreadsSeen:
    """The CPU thread count at each evaluation, and the engine's messages."""

    def __init__(self) -> None:
        self.threads: list[int] = []
        self.messages: list[str] = []

    def on_eval(self, member: int, step: int, metrics: dict) -> bool:
        self.threads.append(torch.get_num_threads())
        return False

    def on_message(self, text: str) -> None:
        self.messages.append(text)


def test_a_run_resumed_by_a_process_with_another_thread_count_goes_on_with_its_own(tmp_path):
    """A sweep relaunched with another --workers resumes a half-done trial in a worker with another CPU thread count
    (1 → 2 on 2 cores), and so with other round-off than the uninterrupted run, silently. The run now goes on with
    the count its checkpoint was trained with, and the process gets its own count back afterwards."""
    cfg = tiny("schedule.name=cosine", "schedule.total=3", eval_every=0.5, log_every=3)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        whole = train(cfg, tmp_path / "whole")
        broken = tmp_path / "broken"
        with pytest.raises(KeyboardInterrupt):
            train(cfg, broken, callbacks=[InterruptAt(12)])
        assert load_pt(broken / "last.pt")["threads"] == 1
        torch.set_num_threads(2)
        seen = ThreadsSeen()
        resumed = train(cfg, broken, callbacks=[seen], resume=True)
        assert torch.get_num_threads() == 2            # the process's own count, back
    finally:
        torch.set_num_threads(before)
    assert seen.threads and set(seen.threads) == {1}, seen.threads
    assert any("resumed with 1 CPU thread, as the run trained before (this process has 2)" in m
               for m in seen.messages), seen.messages
    assert resumed.summary["threads"] == 1 and resumed.summary["step"] == 24
    assert rows_of(broken) == rows_of(whole.run_dir)   # exactly, as test_resume_equals_uninterrupted: one process,
    # one thread count, the same kernels: a resume is bitwise, and a tolerance would hide the round-off of 2 threads


def test_a_thread_count_change_drops_what_torch_compile_built(tmp_path):
    """torch.compile's own cache (dynamo, with a backend that counts its compiles): inductor bakes the thread count
    into its CPU kernels and dynamo does not guard on it, so after ``set_cpu_threads`` changes the count the same
    function is compiled again (at the new count), not reused."""
    import torch._dynamo
    from torch._dynamo.testing import CompileCounter

    from resnet_core.devices import set_cpu_threads

    counter = CompileCounter()
    f = torch.compile(lambda x: (x * 2).sum(), backend=counter)
    x = torch.randn(64)
    before = torch.get_num_threads()
    try:
        set_cpu_threads(1)
        f(x)
        f(x)
        assert counter.frame_count == 1
        set_cpu_threads(1)                              # no change: nothing dropped
        f(x)
        assert counter.frame_count == 1
        set_cpu_threads(2)
        f(x)
        assert counter.frame_count == 2 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
        torch._dynamo.reset()


@pytest.fixture
def interactive_sigint():
    """SIGINT handled as in an interactive shell (Python's KeyboardInterrupt), which the signal tests below send to
    this process: a suite started as a background job (``cmd &``) inherits it ignored, and the engine, called here
    without the CLI (which restores it), would then never see it."""
    import signal

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.usefixtures("interactive_sigint")
@pytest.mark.parametrize("at", [9, 11, 12], ids=["at-a-log", "between-logs", "at-a-log-and-an-eval"])
def test_a_signal_during_a_step_resumes_to_the_uninterrupted_record(tmp_path, monkeypatch, at):
    """SIGINT while step ``at`` trains (logs every 3 steps, evaluations every 4): the step ends, its log and its
    evaluation are not lost (the evaluation is made on resume where the stop came first), and the resumed record
    equals the uninterrupted one row for row. Before: a stop in the step that ends at a log or an evaluation left
    that row out for good (results/cifar10-pilot's ResNet-20 had no epoch-16 test error)."""
    import os
    import signal

    cfg = tiny("optim.lr=0.05", "schedule.name=cosine", "schedule.total=3", eval_every=0.5, log_every=3,
               checkpoint_every=1)
    whole = train(cfg, tmp_path / "whole")
    real, calls = FastPath.train_step, []

    def step_then_signal(self, x, y):
        real(self, x, y)
        calls.append(1)
        if len(calls) == at:
            os.kill(os.getpid(), signal.SIGINT)   # arrives while the step is still "inside": deferred to its end

    broken = tmp_path / "broken"
    with monkeypatch.context() as m:
        m.setattr(FastPath, "train_step", step_then_signal)
        with pytest.raises(KeyboardInterrupt):
            train(cfg, broken)
    assert read_summary(broken)["step"] == at == load_pt(broken / "last.pt")["step"]
    resumed = train(cfg, broken, resume=True)
    assert resumed.status == "complete"
    assert rows_of(broken) == rows_of(whole.run_dir)
    assert sorted(p.name for p in broken.glob("epoch_*.pt")) == sorted(p.name for p in whole.run_dir.glob("epoch_*.pt"))


@pytest.mark.usefixtures("interactive_sigint")
def test_a_stop_as_the_best_evaluation_is_recorded_leaves_best_pt_at_the_best_step(tmp_path, monkeypatch):
    """SIGINT arriving as the evaluation of the best step starts writing its checkpoints: the rows, best.pt and
    last.pt are all written before the stop, so the resumed run's best.pt is the uninterrupted run's. Before: the
    stop fell between them, last.pt (and the summary) held the new best and best.pt stayed at an older step for
    good."""
    import os
    import signal

    from resnet_core import members as members_module

    cfg = tiny("optim.lr=0.05", "schedule.name=cosine", "schedule.total=3", "data.val_size=64", eval_every=0.5,
               log_every=4)
    whole = train(cfg, tmp_path / "whole")
    best_step = load_pt(whole.run_dir / "best.pt")["step"]
    assert best_step > 4   # the best is not the first evaluation: an older best.pt exists when it is written
    real, sent = members_module.ckpt.atomic_save, []

    def signal_then_save(state, path):
        if state.get("step") == best_step and not sent:
            sent.append(path.name)
            os.kill(os.getpid(), signal.SIGINT)   # before the first write of that evaluation
        real(state, path)

    broken = tmp_path / "broken"
    with monkeypatch.context() as m:
        m.setattr(members_module.ckpt, "atomic_save", signal_then_save)
        with pytest.raises(KeyboardInterrupt):
            train(cfg, broken)
    assert sent == ["best.pt"]
    assert load_pt(broken / "best.pt")["step"] == best_step == read_summary(broken)["step"]
    train(cfg, broken, resume=True)
    a, b = load_pt(broken / "best.pt"), load_pt(whole.run_dir / "best.pt")
    assert a["step"] == b["step"] == best_step
    assert_states_close(a["model"], b["model"], 1e-5, "best.pt")


def test_resuming_a_finished_run_leaves_its_record_as_it_is(tmp_path):
    """`train --resume` of a completed run changes nothing (before: img/s and data time were rewritten as 0)."""
    cfg = tiny("schedule.total=1", eval_every=0.5, log_every=4)
    run = train(cfg, tmp_path / "r").run_dir
    before = {f: (run / f).read_bytes() for f in ("summary.json", "metrics.jsonl", "last.pt")}
    again = train(cfg, run, resume=True)
    assert again.status == "complete" and again.summary["img_per_s"] > 0
    assert {f: (run / f).read_bytes() for f in before} == before


@pytest.mark.usefixtures("interactive_sigint")
@pytest.mark.parametrize("where", ["loading-a-batch", "in-the-test-evaluation"])
def test_a_signal_outside_a_step_resumes_the_torch_loader_to_the_uninterrupted_record(tmp_path, monkeypatch, where):
    """`data.loader: torch` with `data.test_augment`: SIGINT while the PIL pipeline draws a training batch's
    augmentation (mid-epoch) or while the augmented test split is evaluated, both outside the deferred step. The
    resumed record equals the uninterrupted one row for row. Before: the checkpoint written at the interrupt held the
    global RNG part-way through those draws, so every row from the next log on differed (a tester's 71.80 vs 58.80 %)."""
    import os
    import signal

    from resnet_core.data.seed_style import PILImages

    cfg = tiny("data.loader=torch", "data.num_workers=0", "data.test_augment=true", "schedule.total=3",
               eval_every=1, log_every=2)
    whole = train(cfg, tmp_path / "whole")
    real, fetched, steps = PILImages.__getitem__, [], []
    n_train, n_test = cfg["data"]["synthetic"]["n_train"], cfg["data"]["synthetic"]["n_test"]

    def fetch_then_signal(self, i):
        fetched.append((len(steps), len(self)))
        if (where == "loading-a-batch" and fetched.count((10, n_train)) == 6 or  # step 11's batch: stop at step 10
                where == "in-the-test-evaluation" and fetched.count((16, n_test)) == 60):  # step 16's evaluation
            os.kill(os.getpid(), signal.SIGINT)
        return real(self, i)

    real_step = FastPath.train_step

    def counted_step(self, x, y):
        real_step(self, x, y)
        steps.append(1)

    broken = tmp_path / "broken"
    with monkeypatch.context() as m:
        m.setattr(PILImages, "__getitem__", fetch_then_signal)
        m.setattr(FastPath, "train_step", counted_step)
        with pytest.raises(KeyboardInterrupt):
            train(cfg, broken)
    assert read_summary(broken)["step"] == load_pt(broken / "last.pt")["step"] == len(steps)
    resumed = train(cfg, broken, resume=True)
    assert resumed.status == "complete"
    assert rows_of(broken) == rows_of(whole.run_dir)


ADDED_LATER = ("checkpoint_every", "data.shuffle", "model.bias_init", "schedule.base_momentum")


def _drop(d: dict, dotted: str) -> None:
    *path, last = dotted.split(".")
    for k in path:
        d = d[k]
    del d[last]


def test_a_run_written_before_keys_were_added_resumes_with_their_defaults(tmp_path):
    """An interrupted run whose config.yaml predates some keys (an upgrade mid-study): the missing keys read as their
    defaults, which reproduce what the earlier version did, so it resumes and ends as the uninterrupted run; a
    missing key the new config sets to something else is still a different experiment, refused by name."""
    cfg = tiny("schedule.total=2", eval_every=0.5, log_every=4)
    whole = train(cfg, tmp_path / "whole")
    broken = tmp_path / "broken"
    with pytest.raises(KeyboardInterrupt):
        train(cfg, broken, callbacks=[InterruptAt(8)])
    old = read_config(broken)
    for key in ADDED_LATER:
        _drop(old, key)
    (broken / "config.yaml").write_text(yaml.safe_dump(old, sort_keys=False))
    with pytest.raises(ConfigError, match=r"differs in data\.shuffle \(True → False\)"):
        train(tiny("schedule.total=2", "data.shuffle=false", eval_every=0.5, log_every=4), broken, resume=True)
    resumed = train(cfg, broken, resume=True)
    assert resumed.status == "complete" and rows_of(broken) == rows_of(whole.run_dir)


class FailAtLog:
    """Raise at the log of ``step``: the attempt ends past its last checkpoint, as a SIGKILL would leave it."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_log(self, member: int, step: int, metrics: dict) -> None:
        if step == self.step:
            raise RuntimeError("hard stop")


def test_a_resume_counts_the_clock_a_hard_stop_ran_past_its_checkpoint(tmp_path):
    """The compute a report states left out the work an attempt did past its last checkpoint, trained again on
    resume. The summary is written at every log, so the resume measures it: the last attempt's clock minus the
    checkpoint's (``lost_wall_time_s``, summed over hard stops); a graceful stop, checkpointed where it stops,
    loses none; a start over (no checkpoint) loses the whole attempt."""
    cfg = tiny("schedule.total=3", eval_every=0.5, log_every=1)       # 8 steps an epoch: checkpoints every 4
    graceful = tmp_path / "graceful"
    with pytest.raises(KeyboardInterrupt):
        train(cfg, graceful, callbacks=[InterruptAt(12)])
    assert train(cfg, graceful, resume=True).summary["lost_wall_time_s"] == 0.0

    hard = tmp_path / "hard"
    with pytest.raises(RuntimeError, match="hard stop"):
        train(cfg, hard, callbacks=[FailAtLog(14)])
    stopped, ckpt = read_summary(hard), load_pt(hard / "last.pt")
    assert (stopped["step"], ckpt["step"]) == (14, 12) and stopped["wall_time_s"] > ckpt["wall_time_s"]
    with pytest.raises(RuntimeError, match="hard stop"):                # again, once resumed: the losses add up
        train(cfg, hard, resume=True, callbacks=[FailAtLog(23)])
    again, ckpt2 = read_summary(hard), load_pt(hard / "last.pt")
    first = stopped["wall_time_s"] - ckpt["wall_time_s"]
    assert again["lost_wall_time_s"] == pytest.approx(first, rel=1e-9) and ckpt2["step"] == 20
    resumed = train(cfg, hard, resume=True)
    assert resumed.status == "complete"
    second = again["wall_time_s"] - ckpt2["wall_time_s"]
    assert resumed.summary["lost_wall_time_s"] == pytest.approx(first + second, rel=1e-9), resumed.summary

    over = tmp_path / "over"
    with pytest.raises(RuntimeError, match="hard stop"):
        train(cfg, over, callbacks=[FailAtLog(14)])
    wall = read_summary(over)["wall_time_s"]
    for p in over.glob("*.pt"):
        p.unlink()
    result = train(cfg, over, resume=True)
    assert result.summary["lost_wall_time_s"] == pytest.approx(wall, rel=1e-9) and wall > 0


class SummaryStepAtLog:
    """The step summary.json says at the log of ``step`` (what a SIGKILL right after that log would leave)."""

    def __init__(self, run_dir, step: int) -> None:
        self.run_dir, self.step, self.seen = run_dir, step, None

    def on_log(self, member: int, step: int, metrics: dict) -> None:
        if step == self.step:
            self.seen = read_summary(self.run_dir)["step"]


def test_a_log_rewrites_the_summary_clock_at_most_every_clock_interval(tmp_path, monkeypatch):
    """summary.json's clock, which a resume after a SIGKILL measures the lost work by, is rewritten at a log only
    once CLOCK_EVERY_S has passed since the last (an fsync per member at every log would sit on the hot path)."""
    from resnet_core import members

    cfg = tiny("schedule.total=2", eval_every=0.5, log_every=1)       # evaluations (and summaries) at 4, 8, 12
    for every, expected in ((0.0, 14), (3600.0, 12)):
        monkeypatch.setattr(members, "CLOCK_EVERY_S", every)
        probe = SummaryStepAtLog(tmp_path / f"every{every:g}", 14)
        assert train(cfg, probe.run_dir, callbacks=[probe]).status == "complete"
        assert probe.seen == expected, (every, probe.seen)


def test_resume_without_a_checkpoint_starts_from_scratch(tmp_path):
    cfg = tiny("schedule.total=1", probes=False)
    result = train(cfg, tmp_path / "fresh", resume=True)
    assert result.status == "complete" and result.summary["step"] == 8


# -- 4. bad config values ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("assignment,key", BAD_ASSIGNMENTS, ids=[b[0] for b in BAD_ASSIGNMENTS])
def test_bad_config_is_a_one_line_config_error(assignment, key):
    """One line naming the bad key (an unknown key with its section: "optim key 'lrate'")."""
    with pytest.raises(ConfigError) as e:
        RunConfig.from_dict(tiny(assignment))
    message = str(e.value)
    assert key in message and "\n" not in message, message


# -- 5. divergence ----------------------------------------------------------------------------------------------
def test_nan_run_ends_diverged_with_a_readable_record(tmp_path):
    cfg = tiny("optim.lr=1.0e6", "schedule.total=4")
    result = train(cfg, tmp_path / "nan")
    assert result.status == "diverged"
    s = read_summary(tmp_path / "nan")
    assert s["status"] == "diverged" and s == json.loads(json.dumps(result.summary))  # the file is the result
    at = s["diverged_at"]
    assert isinstance(at, int) and 1 <= at <= s["step"] < s["total_steps"]
    assert f"step {at}" in s["reason"]
    json.loads((tmp_path / "nan" / "summary.json").read_text(), parse_constant=lambda t: 1 / 0)
    rows = strict_json_lines(tmp_path / "nan" / "metrics.jsonl")  # no NaN tokens: every reader can parse it
    assert rows and max(r["step"] for r in rows) <= s["step"]
    assert (tmp_path / "nan" / "config.yaml").is_file()
    yaml.safe_load((tmp_path / "nan" / "config.yaml").read_text())


# -- 6. fused trials --------------------------------------------------------------------------------------------
SEEDS = (0, 1, 2)
POISON_STEP = 10  # 0-based iteration whose loss is made NaN for member 1; the engine reports steps 1-based


def fused_cfgs() -> list[dict[str, Any]]:
    return [tiny("precision=fp64", "optim.momentum=0.9", name=f"m{s}", seed=s) for s in SEEDS]


@pytest.fixture(scope="module")
def fused_and_solo(tmp_path_factory) -> tuple[Path, list[RunResult], list[RunResult]]:
    root = tmp_path_factory.mktemp("fused")
    solo = [train(c, root / f"solo{g}") for g, c in enumerate(fused_cfgs())]
    fused = train_members(fused_cfgs(), [root / f"fused{g}" for g in range(len(SEEDS))])
    return root, fused, solo


def test_fused_members_equal_separate_runs(fused_and_solo):
    root, fused, solo = fused_and_solo
    for g, seed in enumerate(SEEDS):
        f, s = fused[g], solo[g]
        assert f.status == s.status == "complete"
        assert f.run_dir == root / f"fused{g}"
        summary = read_summary(f.run_dir)
        assert (summary["name"], summary["seed"], summary["fused_members"]) == (f"m{seed}", seed, 3)
        assert read_config(f.run_dir)["seed"] == seed
        assert summary["params"] == s.summary["params"]  # one member's parameters, not G times
        assert_metrics_close(f.run_dir, s.run_dir, FUSED_TOL)
        for key in ("final_test_error", "final_train_error"):
            assert summary[key] == pytest.approx(s.summary[key], rel=FUSED_TOL, abs=FUSED_TOL), key  # errors in %
        assert summary["test_error_at_best_val"] is s.summary["test_error_at_best_val"] is None  # no val split
        for name in ("last.pt",):
            a, b = load_pt(f.run_dir / name), load_pt(s.run_dir / name)
            assert a["step"] == b["step"]
            assert_weights_close(a["model"], b["model"], FUSED_TOL)
    # the members really are different runs
    w = [load_pt(r.run_dir / "last.pt")["model"]["fc.weight"] for r in fused]
    assert not torch.equal(w[0], w[1]) and not torch.equal(w[1], w[2])


def test_a_diverging_member_does_not_disturb_the_others(fused_and_solo, monkeypatch):
    root, fused, solo = fused_and_solo
    original = FastPath._logits

    def poisoned(self, x):
        logits = original(self, x)
        if self.G == len(SEEDS) and int(self.step_t) == POISON_STEP:
            nan = torch.zeros(self.G, dtype=logits.dtype)
            nan[1] = float("nan")
            logits = logits + nan.view(1, -1, 1)  # NaN loss and NaN gradients for member 1 only
        return logits

    monkeypatch.setattr(FastPath, "_logits", poisoned)
    results = train_members(fused_cfgs(), [root / f"poisoned{g}" for g in range(len(SEEDS))])
    bad = results[1]
    assert bad.status == "diverged"
    s = read_summary(bad.run_dir)
    assert s["status"] == "diverged" and s["diverged_at"] == POISON_STEP + 1
    assert json.loads(json.dumps(bad.summary)) == s  # its own summary, not the fused run's final step
    assert f"step {POISON_STEP + 1}" in s["reason"]
    assert max(r["step"] for r in read_metrics(bad.run_dir)) < POISON_STEP + 1 + 4
    assert load_pt(bad.run_dir / "last.pt")["step"] == 8  # the last eval before it diverged
    strict_json_lines(bad.run_dir / "metrics.jsonl")
    for g in (0, 2):
        assert results[g].status == "complete"
        assert read_summary(results[g].run_dir)["step"] == 16
        assert_metrics_close(results[g].run_dir, fused[g].run_dir, FUSED_TOL)
        assert_metrics_close(results[g].run_dir, solo[g].run_dir, FUSED_TOL)
        a = load_pt(results[g].run_dir / "last.pt")["model"]
        assert_weights_close(a, load_pt(fused[g].run_dir / "last.pt")["model"], FUSED_TOL)
        assert_weights_close(a, load_pt(solo[g].run_dir / "last.pt")["model"], FUSED_TOL)


def test_fused_members_must_share_everything_but_name_and_seed(tmp_path):
    cfgs = fused_cfgs()
    cfgs[1] = tiny("precision=fp64", "model.depth=14", name="m1", seed=1)
    with pytest.raises(ConfigError) as e:
        train_members(cfgs, [tmp_path / f"m{g}" for g in range(3)])
    assert "model" in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "m0").exists()  # refused before anything was written
    with pytest.raises(ConfigError):
        train_members(cfgs[:2], [tmp_path / "only-one"])


@pytest.mark.slow
def test_plain_and_residual_twins_train_fused_as_their_separate_runs(tmp_path):
    """model.shortcut may differ between members as none / identity (plain and residual twins in one run): each
    member's record, config and checkpoint equal its separate run's, and its checkpoint loads as its own kind of
    network."""
    shortcuts = ["none", "identity", "none"]
    cfgs = [tiny("precision=fp64", "optim.momentum=0.9", f"model.shortcut={sc}", name=f"t{g}", seed=g)
            for g, sc in enumerate(shortcuts)]
    solo = [train(c, tmp_path / f"solo{g}") for g, c in enumerate(cfgs)]
    fused = train_members(cfgs, [tmp_path / f"fused{g}" for g in range(3)])
    for g, sc in enumerate(shortcuts):
        assert fused[g].status == solo[g].status == "complete"
        assert read_config(fused[g].run_dir)["model"]["shortcut"] == sc
        assert_metrics_close(fused[g].run_dir, solo[g].run_dir, FUSED_TOL)
        a, b = load_pt(fused[g].run_dir / "last.pt"), load_pt(solo[g].run_dir / "last.pt")
        assert a["model_config"]["shortcut"] == sc
        assert_weights_close(a["model"], b["model"], FUSED_TOL)
    # plain and residual twins really trained differently
    assert read_summary(fused[0].run_dir)["final_train_loss"] != read_summary(fused[1].run_dir)["final_train_loss"]
    mixed = [tiny("model.shortcut=none", name="a"), tiny("model.shortcut=conv1x1", name="b", seed=1)]
    with pytest.raises(ConfigError, match="model.shortcut \\(none/identity\\)"):
        train_members(mixed, [tmp_path / "x0", tmp_path / "x1"])


# -- 7. the gradient probe at initialisation ----------------------------------------------------------------------
def test_probe_at_init_plain56_gradients_explode():
    """First-layer gradient norm at init, plain / residual. Measured here (16×16 synthetic, batch 32, 2 seeds):
    depth 8: 0.72, depth 20: 2.4, depth 56: 243 (the lead, 32×32 and batch 64: 0.43, 1.96, 277)."""
    from resnet_core.init_probe import probe_depths  # here: it imports pandas, which no other test here needs

    table = probe_depths([8, 56], ["data.synthetic.n_train=64", "data.synthetic.n_test=10"], seeds=2,
                         batch_size=32, device="cpu")
    assert list(table.columns) == ["family", "depth", "shortcut", "activation", "layer_index", "layer",
                                   "grad_norm"]
    assert len(table) == 2 * (8 + 56)  # one row per conv/fc layer, per depth and shortcut
    first = table[table.layer_index == 0].set_index(["depth", "shortcut"])["grad_norm"]
    ratio56 = first[(56, "none")] / first[(56, "identity")]
    ratio8 = first[(8, "none")] / first[(8, "identity")]
    assert ratio56 > 10, f"plain-56 / ResNet-56 first-layer gradient ratio {ratio56:.3g}"
    assert ratio56 > 10 * ratio8
    assert (table.grad_norm > 0).all()
