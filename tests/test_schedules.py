"""Learning-rate schedules (resnet_core.schedules) and the shipped recipes."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from resnet_core.errors import ConfigError
from resnet_core.run_config import RunConfig, load_run_config
from resnet_core.schedules import ScheduleConfig, lr_at, total_steps

torch.set_num_threads(1)

RECIPES = Path(__file__).resolve().parents[1] / "ablations" / "recipes"


def lrs(cfg: ScheduleConfig, base: float, spe: int, steps) -> list[float]:
    return [lr_at(cfg, base, s, spe) for s in steps]


# -- multistep ---------------------------------------------------------------------------------------------------
def test_he2016_recipe_multistep_by_iteration():
    """He et al. 2016 §4.2: lr 0.1, divided by 10 at 32k and 48k iterations, 64k in all."""
    cfg = load_run_config(RECIPES / "he2016_cifar10.yaml")
    s, base = cfg.schedule, cfg.optim.lr
    assert s.unit == "iter"
    spe = 352  # 45k / 128: irrelevant for an iteration schedule
    assert total_steps(s, spe) == 64000
    assert lr_at(s, base, 0, spe) == pytest.approx(0.1, rel=1e-12)
    assert lr_at(s, base, 31999, spe) == pytest.approx(0.1, rel=1e-12)
    assert lr_at(s, base, 32000, spe) == pytest.approx(0.01, rel=1e-12)
    assert lr_at(s, base, 47999, spe) == pytest.approx(0.01, rel=1e-12)
    assert lr_at(s, base, 48000, spe) == pytest.approx(0.001, rel=1e-12)
    assert lr_at(s, base, 63999, spe) == pytest.approx(0.001, rel=1e-12)
    # the same schedule must not depend on the epoch length
    assert lrs(s, base, 1, range(0, 64000, 997)) == lrs(s, base, 391, range(0, 64000, 997))


def test_multistep_by_epoch():
    s = ScheduleConfig(name="multistep", unit="epoch", total=6, milestones=[2, 4], gamma=0.5)
    spe = 50
    assert total_steps(s, spe) == 300
    assert lr_at(s, 0.2, 0, spe) == pytest.approx(0.2)
    assert lr_at(s, 0.2, 99, spe) == pytest.approx(0.2)      # last iteration of epoch 1
    assert lr_at(s, 0.2, 100, spe) == pytest.approx(0.1)     # first of epoch 2
    assert lr_at(s, 0.2, 199, spe) == pytest.approx(0.1)
    assert lr_at(s, 0.2, 200, spe) == pytest.approx(0.05)
    assert lr_at(s, 0.2, 299, spe) == pytest.approx(0.05)
    # with another epoch length the milestones move with it
    assert lr_at(s, 0.2, 39, 20) == pytest.approx(0.2)
    assert lr_at(s, 0.2, 40, 20) == pytest.approx(0.1)


def test_step_schedule():
    """Seed 001: StepLR(10, 0.1) by epoch."""
    s = ScheduleConfig(name="step", unit="epoch", total=30, step_size=10, gamma=0.1)
    spe = 7
    assert lr_at(s, 1e-3, 0, spe) == pytest.approx(1e-3)
    assert lr_at(s, 1e-3, 10 * spe - 1, spe) == pytest.approx(1e-3)
    assert lr_at(s, 1e-3, 10 * spe, spe) == pytest.approx(1e-4)
    assert lr_at(s, 1e-3, 20 * spe, spe) == pytest.approx(1e-5)
    # matches torch's StepLR stepped once an epoch
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=10, gamma=0.1)
    for epoch in range(30):
        for it in range(spe):
            assert lr_at(s, 1e-3, epoch * spe + it, spe) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-9)
        opt.step()
        sched.step()


def test_constant_schedule():
    s = ScheduleConfig(name="constant", unit="iter", total=100)
    assert set(lrs(s, 0.05, 10, range(100))) == {0.05}


# -- cosine ------------------------------------------------------------------------------------------------------
def test_cosine_endpoints_and_midpoint():
    s = ScheduleConfig(name="cosine", unit="iter", total=1000, min_lr=0.001)
    assert lr_at(s, 0.1, 0, 1) == pytest.approx(0.1)
    assert lr_at(s, 0.1, 500, 1) == pytest.approx((0.1 + 0.001) / 2)
    assert lr_at(s, 0.1, 1000, 1) == pytest.approx(0.001)
    assert lr_at(s, 0.1, 999, 1) > 0.001
    seq = lrs(s, 0.1, 1, range(1001))
    assert all(a >= b for a, b in zip(seq, seq[1:])), "cosine must not increase"
    # matches CosineAnnealingLR(T_max=total, eta_min=min_lr)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=1000, eta_min=0.001)
    for step in range(1000):
        assert lr_at(s, 0.1, step, 1) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-9, abs=1e-12)
        opt.step()
        sched.step()


def test_cosine_by_epoch_with_linear_warmup():
    s = ScheduleConfig(name="cosine", unit="epoch", total=10, warmup=2)
    spe = 5
    # linear ramp over the first 2 epochs (10 iterations), reaching the base lr on the last one
    ramp = lrs(s, 0.4, spe, range(10))
    assert ramp == pytest.approx([0.4 * (i + 1) / 10 for i in range(10)])
    # then cosine from the base lr at the end of warm-up down to 0 at the end of training
    assert lr_at(s, 0.4, 10, spe) == pytest.approx(0.4)
    assert lr_at(s, 0.4, 30, spe) == pytest.approx(0.2)   # halfway through epochs 2..10
    assert lr_at(s, 0.4, 50, spe) == pytest.approx(0.0, abs=1e-12)


# -- warm-up -----------------------------------------------------------------------------------------------------
def test_constant_warmup_he2016_resnet110():
    """He et al. 2016, ResNet-110: lr 0.01 for the first 400 iterations, then 0.1, then the usual milestones."""
    cfg = load_run_config(RECIPES / "he2016_cifar10_resnet110.yaml")
    s, base = cfg.schedule, cfg.optim.lr
    assert (s.warmup, s.warmup_lr) == (400, 0.01)
    assert set(lrs(s, base, 352, range(400))) == {0.01}
    assert lr_at(s, base, 400, 352) == pytest.approx(0.1)
    assert lr_at(s, base, 31999, 352) == pytest.approx(0.1)
    assert lr_at(s, base, 32000, 352) == pytest.approx(0.01)
    assert lr_at(s, base, 48000, 352) == pytest.approx(0.001)


def test_linear_warmup_multistep_by_iteration():
    s = ScheduleConfig(name="multistep", unit="iter", total=100, milestones=[50], warmup=10)
    seq = lrs(s, 1.0, 1, range(100))
    assert seq[:10] == pytest.approx([(i + 1) / 10 for i in range(10)])
    assert seq[10:50] == pytest.approx([1.0] * 40)
    assert seq[50:] == pytest.approx([0.1] * 50)


# -- one-cycle ---------------------------------------------------------------------------------------------------
def _torch_onecycle(max_lr: float, total: int, **kw) -> list[float]:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=max_lr, momentum=0.9)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=max_lr, total_steps=total, anneal_strategy="cos",
                                                three_phase=False, **kw)
    out = []
    for _ in range(total):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


@pytest.mark.parametrize("unit,total,spe", [("iter", 1000, 1), ("epoch", 60, 7), ("epoch", 3, 13)])
def test_onecycle_matches_torch(unit, total, spe):
    s = ScheduleConfig(name="onecycle", unit=unit, total=total, pct_start=0.3, div_factor=25, final_div_factor=1e4)
    n = total_steps(s, spe)
    ours = lrs(s, 0.1, spe, range(n))
    ref = _torch_onecycle(0.1, n, pct_start=0.3, div_factor=25, final_div_factor=1e4)
    assert len(ours) == len(ref) == n
    worst = max(abs(a - b) for a, b in zip(ours, ref))
    assert worst <= 1e-9, f"max |ours - OneCycleLR| = {worst:g}"
    assert ours[0] == pytest.approx(0.1 / 25)
    assert max(ours) == pytest.approx(0.1, rel=1e-3)
    assert ours[-1] == pytest.approx(0.1 / 25 / 1e4, rel=1e-6)


# -- validation and recipes --------------------------------------------------------------------------------------
@pytest.mark.parametrize("schedule,key", [
    ({"name": "exponential"}, "schedule.name"),
    ({"unit": "fortnight"}, "schedule.unit"),
    ({"total": 0}, "schedule.total"),
    ({"name": "step"}, "schedule.step_size"),
    ({"milestone": [3]}, "milestone"),
])
def test_bad_schedule_is_a_config_error(schedule, key):
    with pytest.raises(ConfigError) as e:
        RunConfig.from_dict({"schedule": schedule})
    assert key in str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("path", sorted(RECIPES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_recipe_loads(path):
    cfg = load_run_config(path)
    assert isinstance(cfg, RunConfig)
    assert cfg.name and cfg.name != "run", "a recipe names its runs"
    # the schedule is well defined over the whole run, with positive learning rates
    n = total_steps(cfg.schedule, 100)
    for step in (0, n // 3, n // 2, n - 1):
        lr = lr_at(cfg.schedule, cfg.optim.lr, step, 100)
        assert math.isfinite(lr) and lr > 0
    cfg.model.resolved()  # the model config resolves (depth is possible)


def test_shipped_recipes_exist():
    names = {p.name for p in RECIPES.glob("*.yaml")}
    assert {"smoke.yaml", "he2016_cifar10.yaml", "he2016_cifar10_resnet110.yaml"} <= names
    seeds = sorted(n for n in names if n.startswith("seed00"))
    assert len({n[:7] for n in seeds}) == 4                      # the four seed programs
    assert "seed001_resnet34_cifar224_as_ran.yaml" in seeds       # seed 001 as it ran, beside the corrected one
