"""A small fake study for the report tests: a real Optuna journal and real run directories (RunRecord).

`make_fake_study(root)` builds the degradation grid depth {20, 56} × shortcut {none, identity} × seeds {0, 1, 2}
with curves, per-layer gradient norms and summaries; by default one run failed (plain-56, seed 2) and one seed has
no trial at all (ResNet-56, seed 2). The final errors are chosen so that the papers' claims hold (deeper plain nets
train worse, residual nets improve with depth, residual beats plain); `finals=` changes them.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml

from resnet_core.record import RunRecord

# (depth, shortcut) -> (final train error %, final test error %), before the per-seed offsets
DEFAULT_FINALS = {
    (20, "none"): (6.0, 9.6),
    (56, "none"): (10.0, 13.0),
    (20, "identity"): (4.0, 8.6),
    (56, "identity"): (1.5, 7.0),
}
SEED_OFFSETS = (-0.15, 0.05, 0.2, -0.05)  # added to seed s's errors: a small, known spread
TOTAL_STEPS = 2000
PARAMS = {20: 272_474, 56: 855_770}


def cell_id(depth: int, shortcut: str) -> str:
    return f"model.depth={depth},model.shortcut={shortcut}"


def slug(cell: str) -> str:
    return cell.replace("model.", "").replace("=", "-").replace(",", "-")


def layer_names(depth: int, shortcut: str = "identity") -> list[str]:
    """Conv/linear layers of a CIFAR ResNet in forward order (as resnet_core's probe_layers names them)."""
    n = (depth - 2) // 6
    names = ["stem.conv"]
    for s in (1, 2, 3):
        for b in range(n):
            names += [f"stage{s}.block{b}.conv1", f"stage{s}.block{b}.conv2"]
            if shortcut in ("conv1x1", "conv3x3") and s > 1 and b == 0:
                names.append(f"stage{s}.block{b}.shortcut.conv")
    return names + ["fc"]


def block_names(depth: int) -> list[str]:
    n = (depth - 2) // 6
    return [f"stage{s}.block{b}" for s in (1, 2, 3) for b in range(n)]


@dataclass
class FakeStudy:
    root: Path
    name: str
    study_dir: Path
    lesion_csv: Path | None
    summaries: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)  # every run dir written
    failed: list[tuple[str, int]] = field(default_factory=list)
    missing: list[tuple[str, int]] = field(default_factory=list)


def _curve(step: int, final: float, start: float = 88.0) -> float:
    frac = step / TOTAL_STEPS
    return final + (start - final) * math.exp(-step / 220) + 5.0 * (frac < 0.5) + 1.5 * (frac < 0.75)


def _write_run(run_dir: Path, study: str, depth: int, shortcut: str, seed: int, train_final: float,
               test_final: float, status: str, reason: str | None, stop_at: int | None = None,
               model: dict[str, Any] | None = None, cell: str | None = None) -> dict[str, Any]:
    rng = random.Random(depth * 1000 + seed * 10 + (shortcut == "none"))
    rec = RunRecord(run_dir)
    cell = cell or cell_id(depth, shortcut)
    config = {"name": f"{study}-{slug(cell)}-s{seed}", "seed": seed,
              "model": {"family": "cifar", "depth": depth, "block": "basic", "shortcut": shortcut,
                        "activation": "post", "pooling": "avg", **(model or {})},
              "data": {"name": "cifar10"},
              "optim": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 1.0e-4},
              "schedule": {"name": "multistep", "unit": "iter", "milestones": [1000, 1500], "total": TOTAL_STEPS},
              "batch_size": 128}
    rec.write_config(config)
    layers = layer_names(depth, shortcut)
    blocks = block_names(depth)
    last = stop_at or TOTAL_STEPS
    plain = shortcut == "none"
    for step in range(50, last + 1, 50):
        epoch = step / 390
        rec.log(step, epoch, "train", {"loss": _curve(step, train_final) / 40, "error":
                max(0.0, _curve(step, train_final) + rng.gauss(0, 0.6)), "lr": 0.1 if step < 1000 else 0.01,
                "throughput": 5000.0})
        if step % 250 == 0:
            rec.log(step, epoch, "val", {"loss": 0.3, "error": _curve(step, test_final) - 0.3 + rng.gauss(0, 0.3)})
            rec.log(step, epoch, "test", {"loss": 0.3, "error": _curve(step, test_final) + rng.gauss(0, 0.3)})
        if step == 50 or step % 500 == 0:
            scale = 2.0 * math.exp(-step / 1500) + 0.2
            decay = 0.93 if plain else 0.995
            norms = {}
            for i, name in enumerate(layers):
                k = len(layers) - 1 - i
                norms[name] = scale * decay ** k * math.exp(rng.gauss(0, 0.08))
            rec.log(step, epoch, "grad_norm", norms)
            rec.log(step, epoch, "grad_norm_max", {k: 1.5 * v for k, v in norms.items()})
            rec.log(step, epoch, "grad_norm_block", {b: scale * (0.9 if plain else 1.0) for b in blocks})
    off = SEED_OFFSETS[seed % len(SEED_OFFSETS)]
    summary = {"name": config["name"], "seed": seed, "status": status, "reason": reason, "step": last,
               "total_steps": TOTAL_STEPS, "epoch": last / 390, "params": PARAMS.get(depth, 1000 * depth),
               "final_test_error": round(test_final + off, 4) if status == "complete" else None,
               "test_error_at_best_val": round(test_final + off - 0.2, 4) if status == "complete" else None,
               "best_val_error": round(test_final + 0.7 * off - 0.4, 4),
               "final_val_error": round(test_final + 0.7 * off - 0.3, 4),
               "final_train_error": round(train_final + 0.5 * off, 4), "final_train_loss": 0.1,
               "wall_time_s": 30.0 + 10 * seed + depth, "img_per_s": 5000.0, "diverged_at": None, "device": "cpu"}
    rec.write_summary(summary)
    return summary


def make_fake_study(root: Path | str, name: str = "fixture-degradation", *, depths: Iterable[int] = (20, 56),
                    shortcuts: Iterable[str] = ("none", "identity"), seeds: Iterable[int] = (0, 1, 2),
                    finals: dict[tuple[int, str], tuple[float, float]] | None = None,
                    failed: Iterable[tuple[int, str, int]] = ((56, "none", 2),),
                    missing: Iterable[tuple[int, str, int]] = ((56, "identity", 2),),
                    probe: bool = True, lesion: bool = True) -> FakeStudy:
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    from optuna.trial import TrialState, create_trial

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    root = Path(root)
    study_dir = root / name
    study_dir.mkdir(parents=True, exist_ok=True)
    finals = {**DEFAULT_FINALS, **(finals or {})}
    depths, shortcuts, seeds = list(depths), list(shortcuts), list(seeds)
    failed_set = {(cell_id(d, s), seed) for d, s, seed in failed}
    missing_set = {(cell_id(d, s), seed) for d, s, seed in missing}

    grid_file = study_dir / "grid.yaml"
    base = {"data": {"name": "cifar10"},
            "model": {"family": "cifar", "block": "basic", "activation": "post", "pooling": "avg"}}
    grid_file.write_text(yaml.safe_dump({"study": name, "base": base,
                                         "grid": {"model.depth": depths, "model.shortcut": shortcuts},
                                         "seeds": seeds}, sort_keys=False))
    storage = JournalStorage(JournalFileBackend(str(study_dir / "optuna.journal")))
    study = optuna.create_study(study_name=name, storage=storage, direction="minimize")
    study.set_user_attr("grid_axes", ["model.depth", "model.shortcut"])
    study.set_user_attr("seeds", seeds)
    study.set_user_attr("objective", {"metric": "test_error", "direction": "minimize"})
    study.set_user_attr("base", base)
    study.set_user_attr("grid_file", str(grid_file))

    fake = FakeStudy(root=root, name=name, study_dir=study_dir, lesion_csv=None)
    for depth in depths:
        for shortcut in shortcuts:
            cell = cell_id(depth, shortcut)
            train_final, test_final = finals[(depth, shortcut)]
            for seed in seeds:
                if (cell, seed) in missing_set:
                    fake.missing.append((cell, seed))
                    continue
                run_rel = f"trials/{slug(cell)}-s{seed}"
                is_failed = (cell, seed) in failed_set
                status = "failed" if is_failed else "complete"
                reason = "RuntimeError: CUDA out of memory (fixture)" if is_failed else None
                summary = _write_run(study_dir / run_rel, name, depth, shortcut, seed, train_final, test_final,
                                     status, reason, stop_at=600 if is_failed else None)
                fake.summaries[(cell, seed)] = summary
                attrs = {"cell": cell, "cell_params": {"model.depth": depth, "model.shortcut": shortcut},
                         "seed": seed, "run_dir": run_rel, "status": status, "reason": reason,
                         "n_parameters": summary["params"],
                         **{k: summary[k] for k in ("final_test_error", "best_val_error", "final_train_error",
                                                    "wall_time_s")}}
                if is_failed:
                    fake.failed.append((cell, seed))
                    study.add_trial(create_trial(state=TrialState.FAIL, user_attrs=attrs))
                else:
                    study.add_trial(create_trial(state=TrialState.COMPLETE, value=summary["final_test_error"],
                                                 user_attrs=attrs))

    if probe:
        rows = ["family,depth,shortcut,activation,layer_index,layer,grad_norm"]
        for depth in (20, 56, 110):
            for shortcut in ("none", "identity"):
                names = layer_names(depth, shortcut)
                decay = 0.96 if shortcut == "none" else 0.998
                for i, layer in enumerate(names):
                    rows.append(f"cifar,{depth},{shortcut},post,{i},{layer},{1.5 * decay ** (len(names) - 1 - i):.6g}")
        (study_dir / "probe.csv").write_text("\n".join(rows) + "\n")
    if lesion:
        rows = ["block,block_index,test_error,baseline_error"]
        for i, block in enumerate(block_names(56)):
            down = block.endswith("block0") and not block.startswith("stage1")
            rows.append(f"{block},{i},{7.0 + (18.0 if down else 0.4 + 0.05 * i):.3f},7.0")
        fake.lesion_csv = root / "lesion-resnet56.csv"
        fake.lesion_csv.write_text("\n".join(rows) + "\n")
    return fake


def make_grid_study(root: Path | str, name: str, axes: dict[str, list[Any]],
                    finals: dict[tuple[Any, ...], tuple[float, float]], seeds: Iterable[int] = (0, 1, 2),
                    base_model: dict[str, Any] | None = None) -> FakeStudy:
    """Any full-factorial grid over model keys (``axes``: {"model.activation": ["post", "pre"], …}); ``finals``
    maps each combination of axis values (in axis order) to (train, test) final errors."""
    import itertools

    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    from optuna.trial import TrialState, create_trial

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    root = Path(root)
    study_dir = root / name
    study_dir.mkdir(parents=True, exist_ok=True)
    base = {"data": {"name": "cifar10"}, "model": {"family": "cifar", "depth": 20, "block": "basic",
                                                    "shortcut": "identity", "activation": "post", "pooling": "avg",
                                                    **(base_model or {})}}
    storage = JournalStorage(JournalFileBackend(str(study_dir / "optuna.journal")))
    study = optuna.create_study(study_name=name, storage=storage)
    study.set_user_attr("grid_axes", list(axes))
    study.set_user_attr("seeds", list(seeds))
    study.set_user_attr("objective", {"metric": "test_error", "direction": "minimize"})
    study.set_user_attr("base", base)
    fake = FakeStudy(root=root, name=name, study_dir=study_dir, lesion_csv=None)
    for combo in itertools.product(*axes.values()):
        params = dict(zip(axes, combo))
        model = dict(base["model"])
        model.update({k.split(".", 1)[1]: v for k, v in params.items()})
        cell = ",".join(f"{k}={v}" for k, v in params.items())
        if finals.get(combo) is None:  # an impossible cell (e.g. identity + project_all): the sweep skips it
            continue
        train_final, test_final = finals[combo]
        for seed in seeds:
            run_rel = f"trials/{slug(cell)}-s{seed}"
            summary = _write_run(study_dir / run_rel, name, model["depth"], model["shortcut"], seed, train_final,
                                 test_final, "complete", None, model=model, cell=cell)
            fake.summaries[(cell, seed)] = summary
            attrs = {"cell": cell, "cell_params": params, "seed": seed, "run_dir": run_rel, "status": "complete"}
            study.add_trial(create_trial(state=TrialState.COMPLETE, value=summary["final_test_error"],
                                         user_attrs=attrs))
    return fake
