"""The options the seed recipes needed, in general form: one-cycle momentum cycling, a schedule length apart from the
training length, an optimizer reset at milestones, periodic checkpoints, shuffle on/off, default conv-bias init and
evenly spaced logs per epoch: their validation, their torch references, and resume across them."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from resnet_core.effect import check_effect
from resnet_core.engine import train
from resnet_core.fast_path import FastPath
from resnet_core.errors import ConfigError
from resnet_core.overrides import apply_overrides
from resnet_core.record import read_metrics
from resnet_core.run_config import RunConfig
from resnet_core.schedules import ScheduleConfig, lr_at, milestone_steps, momentum_at, total_steps
from train_callbacks import InterruptAt

torch.set_num_threads(1)


def tiny(*overrides: str, **top: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "name": "tiny", "device": "cpu", "precision": "fp32", "seed": 0,
        "data": {"name": "synthetic", "synthetic": {"image_size": 16, "n_train": 128, "n_test": 32}},
        "model": {"family": "cifar", "depth": 8},
        "optim": {"name": "sgd", "lr": 0.05},
        "schedule": {"name": "constant", "unit": "epoch", "total": 2},
        "batch_size": 32, "eval_batch_size": 32, "log_every": 2, "eval_every": 1, "probes": False,
    }
    d.update(top)
    return apply_overrides(d, overrides)


def load_pt(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=True)


# -- validation: one line naming the key ---------------------------------------------------------------------------
@pytest.mark.parametrize("d,key", [
    ({"schedule": {"name": "cosine", "cycle_momentum": True}}, "schedule.cycle_momentum"),
    ({"schedule": {"name": "onecycle", "cycle_momentum": "yes"}}, "schedule.cycle_momentum"),
    ({"schedule": {"name": "onecycle", "base_momentum": 1.5}}, "schedule.base_momentum"),
    ({"schedule": {"name": "onecycle", "max_momentum": -0.1}}, "schedule.max_momentum"),
    ({"schedule": {"name": "onecycle", "total": 60, "length": 30}}, "schedule.length"),
    ({"schedule": {"name": "cosine", "length": 0}}, "schedule.length"),
    ({"schedule": {"name": "cosine", "reset_optimizer": True}}, "schedule.reset_optimizer"),
    ({"schedule": {"name": "multistep", "total": 8, "milestones": [50, 100]}}, "schedule.milestones [50, 100] are "
                                                                               "at or past the end"),
    ({"schedule": {"name": "multistep", "total": 8, "milestones": [3, 2]}}, "schedule.milestones must be in "
                                                                           "increasing order"),
    ({"schedule": {"name": "onecycle", "milestones": [2, 4]}}, "schedule.milestones ([2, 4]) needs schedule.name "
                                                               "multistep, got 'onecycle'"),
    ({"schedule": {"name": "cosine", "gamma": 0.5}}, "schedule.gamma (0.5) needs schedule.name multistep or step"),
    ({"schedule": {"name": "onecycle", "min_lr": 1e-4}}, "schedule.min_lr"),
    ({"schedule": {"name": "multistep", "step_size": 3}}, "schedule.step_size"),
    ({"schedule": {"name": "cosine", "div_factor": 10}}, "schedule.div_factor"),
    ({"schedule": {"name": "multistep", "length": 20}}, "schedule.length"),
    ({"schedule": {"name": "constant", "warmup_lr": 0.01}}, "schedule.warmup_lr"),
    ({"checkpoint_every": -1}, "checkpoint_every"),
    ({"checkpoint_every": "often"}, "checkpoint_every"),
    ({"log_per_epoch": 0}, "log_per_epoch"),
    ({"log_per_epoch": 2.5}, "log_per_epoch"),
    ({"data": {"shuffle": "no"}}, "data.shuffle"),
    ({"model": {"bias_init": "random"}}, "model.bias_init"),
])
def test_bad_option_is_a_one_line_config_error(d, key):
    with pytest.raises(ConfigError) as e:
        check_effect(RunConfig.from_dict(d), d)   # a key the user wrote and the run never reads, too
    assert key in str(e.value) and "\n" not in str(e.value)


# -- schedules against torch -------------------------------------------------------------------------------------
def _torch_onecycle_momenta(opt: torch.optim.Optimizer, total: int, steps: int, **kw) -> list[tuple[float, float]]:
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=total, **kw)
    out = []
    for _ in range(steps):
        g = opt.param_groups[0]
        out.append((g["lr"], g["betas"][0] if "betas" in g else g["momentum"]))
        opt.step()
        sched.step()
    return out


@pytest.mark.parametrize("opt_name", ["sgd", "adam"])
def test_onecycle_momentum_matches_torch_for_sgd_and_adam(opt_name):
    p = [torch.nn.Parameter(torch.zeros(1))]
    opt = torch.optim.SGD(p, lr=1.0, momentum=0.9) if opt_name == "sgd" else torch.optim.Adam(p, lr=1.0)
    ref = _torch_onecycle_momenta(opt, 200, 150, pct_start=0.25, base_momentum=0.8, max_momentum=0.97)
    s = ScheduleConfig(name="onecycle", unit="epoch", total=15, length=20, pct_start=0.25, cycle_momentum=True,
                       base_momentum=0.8, max_momentum=0.97)
    ours = [(lr_at(s, 0.1, k, 10), momentum_at(s, k, 10)) for k in range(total_steps(s, 10))]
    assert len(ours) == len(ref) == 150
    assert max(abs(a - b) for x, y in zip(ours, ref) for a, b in zip(x, y)) <= 1e-12


def test_without_cycle_momentum_the_optimizer_keeps_its_own():
    s = ScheduleConfig(name="onecycle", total=10)
    assert momentum_at(s, 0, 5) is None and momentum_at(ScheduleConfig(name="cosine"), 3, 5) is None


def test_cosine_length_is_cosineannealing_t_max():
    p = [torch.nn.Parameter(torch.zeros(1))]
    opt = torch.optim.SGD(p, lr=0.2)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=100)
    ref = []
    for _ in range(40):
        ref.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    s = ScheduleConfig(name="cosine", unit="iter", total=40, length=100)
    ours = [lr_at(s, 0.2, k, 1) for k in range(total_steps(s, 1))]
    assert len(ours) == 40 and max(abs(a - b) for a, b in zip(ours, ref)) <= 1e-12


@pytest.mark.parametrize("s,spe", [
    (ScheduleConfig(name="multistep", unit="epoch", total=30, milestones=[15, 22.5]), 352),
    (ScheduleConfig(name="multistep", unit="iter", total=100, milestones=[0, 50, 100, 150]), 7),
    (ScheduleConfig(name="step", unit="epoch", total=7, step_size=0.7), 13),
    (ScheduleConfig(name="step", unit="epoch", total=80, step_size=20, gamma=1 / 3), 500),
])
def test_milestone_steps_are_where_the_lr_changes(s, spe):
    n = total_steps(s, spe)
    changes = [k for k in range(1, n) if lr_at(s, 1.0, k, spe) != lr_at(s, 1.0, k - 1, spe)]
    assert milestone_steps(s, spe) == changes and changes


# -- engine: cycled momentum with Adam, resume across a reset and a cycle, periodic checkpoint names --------------
def test_engine_cycles_adam_beta1(tmp_path, monkeypatch):
    d = tiny("optim.name=adam", "optim.lr=0.01", "schedule.name=onecycle", "schedule.unit=iter", "schedule.total=12",
             "schedule.length=20", "schedule.cycle_momentum=true", eval_every=12)
    seen = []
    run_step = FastPath.train_step
    monkeypatch.setattr(FastPath, "train_step",
                        lambda self, x, y: (seen.append(self.opt.param_groups[0]["betas"][0]), run_step(self, x, y)))
    train(d, tmp_path / "run")
    s = RunConfig.from_dict(d).schedule
    assert seen == [momentum_at(s, k, 4) for k in range(12)]
    assert seen[0] == s.max_momentum and min(seen) < seen[0]


@pytest.mark.parametrize("overrides,stop", [
    # interrupted exactly at the milestone: the resumed run must still reset before its first step
    (("optim.name=adam", "optim.lr=0.003", "schedule.name=step", "schedule.step_size=1",
      "schedule.reset_optimizer=true", "schedule.total=3"), 4),
    (("schedule.name=onecycle", "schedule.total=3", "schedule.length=5", "schedule.cycle_momentum=true",
      "optim.momentum=0"), 6),
])
def test_resume_across_reset_and_momentum_cycle_equals_uninterrupted(tmp_path, overrides, stop):
    d = tiny(*overrides, eval_every=0.5)
    whole = train(d, tmp_path / "whole")
    broken = tmp_path / "broken"
    with pytest.raises(KeyboardInterrupt):
        train(d, broken, callbacks=[InterruptAt(stop)])
    assert load_pt(broken / "last.pt")["step"] == stop
    resumed = train(d, broken, resume=True)
    assert resumed.status == whole.status == "complete"
    a, b = load_pt(broken / "last.pt"), load_pt(whole.run_dir / "last.pt")
    for key in b["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for name in b["optim"]:
        for k in b["optim"][name]:
            assert torch.equal(a["optim"][name][k], b["optim"][name][k]), (name, k)


def test_periodic_checkpoints_by_epoch_and_by_iteration(tmp_path):
    train(tiny("schedule.total=3", checkpoint_every=1), tmp_path / "epochs")
    assert sorted(p.name for p in (tmp_path / "epochs").glob("epoch_*.pt")) == [
        "epoch_001.pt", "epoch_002.pt", "epoch_003.pt"]
    assert load_pt(tmp_path / "epochs" / "epoch_002.pt")["step"] == 8
    train(tiny("schedule.unit=iter", "schedule.total=10", checkpoint_every=3, checkpoint=False, eval_every=5),
          tmp_path / "iters")
    assert sorted(p.name for p in (tmp_path / "iters").glob("*.pt")) == [
        "step_0000003.pt", "step_0000006.pt", "step_0000009.pt"]


def test_log_per_epoch_replaces_log_every(tmp_path):
    spe, n = 10, 3
    d = tiny("schedule.total=2", log_every=1, log_per_epoch=n)
    d["data"]["synthetic"]["n_train"] = spe * 32
    train(d, tmp_path / "run")
    steps = [r["step"] for r in read_metrics(tmp_path / "run") if (r["split"], r["name"]) == ("train", "loss")]
    # n logs an epoch, evenly spaced (after batch ceil(k·spe/n)), the last at the epoch's end; log_every ignored
    assert steps == [e * spe + -(-k * spe // n) for e in range(2) for k in range(1, n + 1)]


def test_adam_beta1_in_a_tensor_follows_the_schedule_as_the_float_does():
    """The CUDA path keeps Adam's beta1 in a device tensor (a graph reads it); on the CPU the same optimizer with a
    tensor beta1 must train as the float one that set_momentum rewrites each step."""
    from resnet_core.optimizers import build_optimizer, set_momentum
    from resnet_core.run_config import OptimConfig

    o = OptimConfig(name="adam", lr=0.01, weight_decay=0.0)
    s = ScheduleConfig(name="onecycle", total=10, cycle_momentum=True)
    w0 = torch.randn(5, generator=torch.Generator().manual_seed(0))
    final = []
    for beta1 in (None, torch.zeros(())):
        p = torch.nn.Parameter(w0.clone())
        opt = build_optimizer(o, s, [p], lr=0.01, beta1=beta1)
        for k in range(30):
            set_momentum(opt, momentum_at(s, k, 3), beta1)
            if beta1 is not None:
                assert float(beta1) == pytest.approx(momentum_at(s, k, 3), rel=1e-7)
            p.grad = torch.sin(p.detach() * (k + 1))
            opt.step()
        final.append(p.detach().clone())
    assert ((final[0] - final[1]).abs() <= 1e-5 * final[0].abs().max()).all()  # float32 beta1 vs a double
    assert not torch.equal(final[0], w0)
