"""Engine commands for the CLI: train, eval, lesion, probe, bench."""
from __future__ import annotations

import argparse
import re
import time
from pathlib import Path
from typing import Any, NamedTuple

from .values import nonblank


def register(sub: argparse._SubParsersAction) -> None:
    from .plugins import add_plugin_argument

    p = sub.add_parser("train", help="train one run from a run config",
                       description="Train one run: a run config (YAML) plus --set overrides. Writes the run record "
                                   "(config.yaml, metrics.jsonl, summary.json, last.pt) into --out.")
    p.add_argument("--config", help="run config YAML (e.g. ablations/recipes/smoke.yaml); default: the defaults")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a run config key, e.g. --set model.depth=56 --set optim.lr=0.05 (repeatable; a "
                        "key given again: the last value wins)")
    add_plugin_argument(p)
    p.add_argument("--device", default=None, metavar="DEVICE", type=nonblank,
                   help="cpu, cuda, cuda:<i>, mps, npu or auto (default: the config's device, auto)")
    p.add_argument("--out", type=nonblank, help="run directory (default runs/<name>-<timestamp>/)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt")
    p.add_argument("--wandb", choices=("off", "auto", "offline", "online"), default="off",
                   help="log the run to Weights & Biases, like a sweep trial (default off; auto: online when "
                        "logged in, else offline)")
    p.add_argument("--wandb-project", default="resnet-ablate", metavar="NAME",
                   help="W&B project for --wandb (default resnet-ablate)")
    p.add_argument("--print-config", action="store_true",
                   help="print the run config as it will run here (YAML: the dataset's classes and channels, "
                        "the device resolved; a comment line with the precision, memory format, fast path and "
                        "threads) and exit without training")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("eval", help="evaluate a checkpoint on its run's test (and val) split",
                       description="Test (and val) error and loss of a checkpoint, on the dataset of the run it "
                                   "came from (the run config travels in the checkpoint).")
    p.add_argument("checkpoint", help="a last.pt or best.pt from a run directory")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:<i>, mps, npu or auto (default auto)")
    _add_precision_argument(p)
    _add_data_location_arguments(p)
    add_plugin_argument(p)
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("lesion", help="replace each block in turn by its shortcut at test time (Veit et al. 2016)",
                       description="Test error with each block replaced by its shortcut (the identity in a plain "
                                   "block of unchanged shape, so plain and residual nets compare on equal footing; "
                                   "a plain stage-entry block is not lesionable). Several checkpoints, one per "
                                   "run, give one table; each row names its model, its study (where the run's study "
                                   "folder has an owner record) and its run folder (relative to the table's "
                                   "folder), as `resnet-ablate report --lesion` reads it.")
    p.add_argument("checkpoint", nargs="+", help="last.pt / best.pt of one or more runs (one checkpoint per run)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:<i>, mps, npu or auto (default auto)")
    p.add_argument("--out", help="CSV path (default: lesion.csv beside the first checkpoint)")
    _add_precision_argument(p)
    _add_data_location_arguments(p)
    add_plugin_argument(p)
    p.set_defaults(func=_cmd_lesion)

    p = sub.add_parser("probe", help="per-layer gradient norm at initialisation: plain vs residual, by depth",
                       description="One backward pass per freshly initialised net (plain and residual, at each "
                                   "depth, averaged over seeds): the gradient norm of every layer, written as a CSV "
                                   "that `resnet-ablate report --probe` draws.")
    p.add_argument("--depths", default="8,20,32,44,56,110", help="comma-separated depths")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="model/data overrides, e.g. --set model.activation=pre --set data.name=cifar10 (repeatable; "
                        "a key given again: the last value wins); a key probe sets or does not read is refused")
    p.add_argument("--seeds", type=int, default=3, help="initialisations averaged per depth")
    p.add_argument("--batch-size", type=int, default=128, help="images in the probe batch (default 128)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:<i>, mps, npu or auto (default auto)")
    p.add_argument("--out", default="probe.csv", help="CSV path (default probe.csv)")
    add_plugin_argument(p)
    p.set_defaults(func=_cmd_probe)

    from .bench import register as register_bench

    register_bench(sub)


def _add_precision_argument(p: argparse.ArgumentParser) -> None:
    from .run_config import PRECISIONS

    p.add_argument("--precision", default=None, metavar="{" + ",".join(PRECISIONS) + "}",
                   help="evaluate in this precision (auto: as `precision: auto` picks on this device); default: the "
                        "precision and memory format the run evaluated in (its summary.json, else its run config)")


def _recorded_plugins(run_dir: str | Path) -> Any:
    """The plugin records (``plugins.plugin_records``) a run's ``summary.json`` lists in its provenance, or None."""
    from .record import read_summary

    return (read_summary(run_dir).get("provenance") or {}).get("plugins")


def _cmd_train(args: argparse.Namespace) -> int:
    from .engine import train
    from .errors import ConfigError, reworded
    from .plugins import missing_plugins_hint
    from .progress_bar import ProgressBar
    from .record import record_files
    from .run_config import load_run_config
    from .values import check_name

    if args.device is not None and not re.match(r"^(auto|cpu|cuda(:\d+)?|mps|npu(:\d+)?)$", args.device):
        from .errors import choices_error

        raise choices_error("--device", args.device, ("auto", "cpu", "cuda", "cuda:<i>", "mps", "npu", "npu:<i>"))
    given = _set_device(args.overrides)
    if given is not None and args.device is not None and given != args.device:
        raise ConfigError(f"device given twice (--set device={given} and --device {args.device}): give one")
    overrides = list(args.overrides) + ([f"device={args.device}"] if args.device else [])
    try:
        cfg = load_run_config(args.config, overrides)
    except ConfigError as e:  # a part of a plugin not given again: name it
        if not (args.resume and args.out):
            raise
        raise reworded(e, f"{e}{missing_plugins_hint(_recorded_plugins(args.out), f'the run in {args.out}', e)}") \
            from None
    check_name("name", cfg.name)   # it names the run folder: runs/<name>-<time>/
    if args.print_config:
        from .plan import describe, plan
        from .values import dump_yaml

        config, ran = plan(cfg)
        print(describe(ran))
        print(dump_yaml(config).rstrip())
        return 0
    if args.resume and not args.out:
        raise ConfigError("--resume needs --out RUN_DIR (the run to continue)")
    out = Path(args.out or f"runs/{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}")
    _check_not_a_study_folder(out)
    held = [] if args.resume else record_files(out)
    if held:   # a second run would replace its config and summary and append to its metrics
        raise ConfigError(f"{out} holds a run ({', '.join(held)}): pass --resume to continue it, or choose another "
                          f"--out")
    if args.resume and not (out / "last.pt").exists():
        print(f"note: nothing to resume in {out} ({'no last.pt there' if out.is_dir() else 'no such folder'}): "
              f"training from scratch")
    callbacks: list = [ProgressBar()]
    tracker = None
    if args.wandb != "off":
        from .tracking import WandbTracker

        tracker = WandbTracker(project=args.wandb_project, mode=args.wandb, job_type="train", names=[cfg.name])
        callbacks.append(tracker)
    result = train(cfg, out, callbacks=callbacks, resume=args.resume)
    s = result.summary
    fmt = lambda v: "n/a" if v is None else f"{v:.2f}%"  # noqa: E731
    path = f"{s['fast_path']}{' (compiled)' if s.get('compiled') else ''}, {s['precision']}" + (
        ", channels_last" if s.get("channels_last") else "")
    if result.status == "diverged":
        print(f"{s['name']}: diverged at step {s['diverged_at']}/{s['total_steps']} ({s['reason']}; found at the "
              f"log of step {s['step']}) on {path} | try a lower optim.lr or a warm-up; precision: fp32 and "
              f"fast: eager rule out the fast path | {out}")
        return 1
    if s.get("fast_fallback"):
        print(f"{s['name']}: left the fast path: {s['fast_fallback']}")
    if s.get("precision_changed"):
        print(f"{s['name']}: precision changed: {s['precision_changed']['reason']}")
    best = (f"best {fmt(s['best_test_error'])} selected on the test set: optimistic"
            if s.get("best_selected_on") == "test" else f"at best val {fmt(s['test_error_at_best_val'])}")
    print(f"{s['name']}: {result.status} at step {s['step']}/{s['total_steps']} on {path} | test error "
          f"{fmt(s['final_test_error'])} ({best}) | train error "
          f"{fmt(s['final_train_error'])} | {s['params']:,} params | {s['img_per_s']:.0f} img/s | "
          f"{s['wall_time_s']:.1f} s | {out}")
    if tracker is not None and tracker.sync_command():
        print(f"W&B: offline run; upload it with: {tracker.sync_command()}")
    return 0 if result.status == "complete" else 1


class Loaded(NamedTuple):
    """A checkpoint ready to evaluate: its state, its model (on ``device``, in the precision and memory format the run
    evaluated in, or ``--precision``), its run config, and the autocast dtype and precision name to evaluate in."""
    state: dict
    model: Any
    run_cfg: Any
    device: Any
    amp: Any
    precision: str
    channels_last: bool
    test_picked: bool  # a best.pt its run picked on the test set (best_on: test): its test error is optimistic


def _missing_checkpoint(path: Path) -> str:
    """The error line for a checkpoint that is not there: a best.pt missing beside its run's last.pt says why."""
    last = path.with_name("last.pt")
    if path.name == "best.pt" and last.is_file():
        return (f"no best.pt in {path.parent}: a run writes best.pt only where it picks one, on a validation split "
                f"(data.val_size > 0) or with best_on: test; give {last}")
    return f"checkpoint not found: {path}"


def _check_not_a_study_folder(out: Path) -> None:
    """A ConfigError when ``out`` is a sweep's study folder or a new folder among its trials: a run trained there
    would lie among the study's records (its lesion rows named after the study) without being one of its trials."""
    from .errors import ConfigError
    from .record import OWNER_FILE, folder_owner, run_owner

    owner = folder_owner(out) if (out / OWNER_FILE).is_file() else None
    if owner is not None or (out / "optuna.journal").exists():
        study = f" of study '{owner['study']}'" if owner else ""
        raise ConfigError(f"--out {out} is the study folder{study}: a run trained there would mix with the study's "
                          f"records; choose another --out")
    owner = run_owner(out) if out.parent.name == "trials" else None
    if owner is not None and not out.exists():
        raise ConfigError(f"--out {out} is a new folder among the trials of study '{owner['study']}', which a "
                          f"sweep writes; choose another --out")


def _add_data_location_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-path", default=None, metavar="PATH", type=nonblank,
                   help="where the run's data.path (a cifar10_jpeg archive, an imagefolder tree) lies here, for a "
                        "checkpoint copied from another machine (default: the run's own data.path)")
    p.add_argument("--data-root", default=None, metavar="DIR", type=nonblank,
                   help="where the run's data.root (torchvision sets, the cifar10_jpeg fallback) lies here "
                        "(default: the run's own data.root)")


def _load_for_eval(path: str, device_name: str, precision: str | None = None, data_path: str | None = None,
                   data_root: str | None = None) -> Loaded:
    """A checkpoint, its model, its run config and the device, and how the run evaluated (``_as_ran``).
    ``data_path`` / ``data_root``: where the run's data lies on this machine (``data.path`` / ``data.root``)."""
    import torch

    from . import checkpoint
    from .config import ModelConfig
    from .devices import resolve_device
    from .effect import check_effect
    from .errors import ConfigError, reworded
    from .model import build_model
    from .plugins import missing_plugins_hint
    from .record import read_config
    from .run_config import RunConfig, check_precision

    if precision is not None:
        check_precision(precision, "--precision")
    ckpt_path = Path(path)
    if ckpt_path.is_dir():
        held = [str(ckpt_path / f) for f in ("best.pt", "last.pt") if (ckpt_path / f).is_file()]
        raise ConfigError(f"{ckpt_path} is a folder, not a checkpoint" + (f": give {' or '.join(held)}" if held
                                                                          else " (it holds no best.pt or last.pt)"))
    if not ckpt_path.is_file():
        raise ConfigError(_missing_checkpoint(ckpt_path))
    state = checkpoint.load(ckpt_path)  # ConfigError for a random file or a foreign state dict
    # the run config travels in the checkpoint; older checkpoints have it only in config.yaml beside them
    saved = state.get("run_config") or read_config(ckpt_path.parent)
    if not saved:
        raise ConfigError(f"{ckpt_path}: the checkpoint carries no run config and there is no config.yaml beside "
                          f"it; evaluate it in its run folder (its dataset is unknown)")
    located = {k: v for k, v in (("path", data_path), ("root", data_root)) if v is not None}
    if located:   # only where the data lies changes
        saved = {**saved, "data": {**(saved.get("data") or {}), **located}}
    try:
        run_cfg = RunConfig.from_dict(saved)
        model_cfg = ModelConfig.from_dict(state["model_config"])
    except ConfigError as e:  # a part of a plugin not given: name it
        recorded = state.get("plugins") or _recorded_plugins(ckpt_path.parent)
        raise reworded(e, f"{ckpt_path}: {e}{missing_plugins_hint(recorded, 'its run', e)}") from None
    check_effect(run_cfg, {"data": located})   # a --data-path / --data-root its dataset does not read: refused
    device = resolve_device(device_name)
    try:
        model = build_model(model_cfg)
        model.load_state_dict(state["model"])
    except (RuntimeError, TypeError, KeyError, AttributeError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ConfigError(f"{ckpt_path}: its weights do not fit its model config ({first[:160]})") from None
    amp, dtype, name, channels_last = _as_ran(state, ckpt_path, run_cfg, device, precision)
    model.to(device=device, dtype=dtype,
             memory_format=torch.channels_last if channels_last else torch.contiguous_format).eval()
    test_picked = ckpt_path.name == "best.pt" and run_cfg.best_on == "test"
    return Loaded(state, model, run_cfg, device, amp, name, channels_last, test_picked)


def _as_ran(state: dict, ckpt_path: Path, run_cfg: Any, device: Any, precision: str | None) -> tuple:
    """(autocast dtype, parameter dtype, precision name, channels_last) to evaluate ``state`` in: ``precision`` if
    given, else what the run evaluated in at the checkpoint's step: full precision after a replay the checkpoint
    records, else the precision and memory format of the run's summary.json beside it (what ran, on the run's
    device), else its run config as it resolves on ``device``."""
    import torch

    from .devices import autocast_dtype, param_dtype, precision_name, uses_channels_last
    from .record import read_summary

    summary = read_summary(ckpt_path.parent)
    if (summary.get("name"), summary.get("seed")) != (run_cfg.name, run_cfg.seed):
        summary = {}  # a checkpoint copied beside another run's record
    ran = precision
    if ran is None and state.get("precision_changed"):  # replayed in full precision before this checkpoint
        ran = state["precision_changed"]["to"]
    elif ran is None and summary.get("precision_changed"):  # …after it: the checkpoint is from before the change
        ran = summary["precision_changed"]["from"]
    elif ran is None:
        ran = summary.get("precision")
    amp, dtype = autocast_dtype(ran or run_cfg.precision, device), param_dtype(ran or run_cfg.precision)
    channels_last = uses_channels_last(run_cfg.channels_last, device, dtype)
    if precision is None and "channels_last" in summary and device.type == summary.get("device", "").split(":")[0]:
        channels_last = bool(summary["channels_last"])
    return amp, dtype, precision_name(amp, dtype), channels_last and dtype != torch.float64


def _eval_loaders(loaded: Loaded):
    """The checkpoint's evaluation loaders; a ConfigError when the dataset (read where ``--data-path`` /
    ``--data-root`` point) is not one the model was built for: other channels, another number of classes, or other
    class names by label (the checkpoint's ``classes``)."""
    from .data import build_loaders, load_dataset
    from .errors import ConfigError

    run_cfg = loaded.run_cfg
    data = load_dataset(run_cfg.data)
    built = loaded.model.cfg
    for what, model_has, data_has in (("channels", built.in_channels, data.in_channels),
                                      ("classes", built.num_classes, data.num_classes)):
        if model_has != data_has:
            where = run_cfg.data.path or run_cfg.data.root or run_cfg.data.name
            raise ConfigError(f"{where}: the dataset has {data_has} {what} but the checkpoint's model was built "
                              f"for {model_has}; give the run's own dataset (--data-path / --data-root)")
    trained_on = loaded.state.get("classes")   # by label; a checkpoint from before it was recorded has none
    if trained_on and list(trained_on) != list(data.classes):
        label = next(i for i, (a, b) in enumerate(zip(trained_on, data.classes)) if a != b)
        where = run_cfg.data.path or run_cfg.data.root or run_cfg.data.name
        raise ConfigError(f"{where}: label {label} is class {data.classes[label]!r} here but "
                          f"{trained_on[label]!r} in the run's dataset; its numbers would score the wrong classes: "
                          f"give the run's own dataset (--data-path / --data-root)")
    return build_loaders(data, run_cfg.data, seeds=[run_cfg.seed], batch_size=run_cfg.batch_size,
                         eval_batch_size=run_cfg.eval_batch_size, device=loaded.device,
                         channels_last=loaded.channels_last).evals()


TEST_PICKED = ("{what} {path} was selected on the test set (its run has best_on: test), so its test error is "
               "optimistic, not a held-out estimate")


def _say(message: str) -> None:
    """A phase that takes more than a moment says what it is doing, on stderr (stdout keeps the results)."""
    import sys

    print(message, file=sys.stderr, flush=True)


def _cmd_eval(args: argparse.Namespace) -> int:
    from .errors import NonFiniteOutputs
    from .fast_path import evaluate_outputs

    loaded = _load_for_eval(args.checkpoint, args.device, args.precision, args.data_path, args.data_root)
    _say(f"eval: loading the dataset of {args.checkpoint} ({loaded.run_cfg.data.name}) …")
    nonfinite = []
    for split, loader in _eval_loaders(loaded).items():
        _say(f"eval: {split} split ({_images(loader)} images) on {loaded.device} …")
        ev = evaluate_outputs(loaded.model, loader, 1, loaded.device, loaded.amp)
        bad = ev.nonfinite_part(split)
        if bad:  # argmax over NaN is no error rate
            nonfinite.append(bad)
            continue
        print(f"{split}: error {ev.error[0]:.2f}%  loss {ev.loss[0]:.4f}  (step {loaded.state['step']}, "
              f"{loaded.precision})")
    if nonfinite:
        raise NonFiniteOutputs(f"{args.checkpoint}: the model's outputs are not finite (NaN or inf) on "
                               f"{' and '.join(nonfinite)} (step {loaded.state['step']}, {loaded.precision}): no "
                               f"error rate is reported")
    if loaded.test_picked:
        print("note: " + TEST_PICKED.format(what="this checkpoint", path=args.checkpoint))
    return 0


def _images(loader) -> str:
    """The number of images a loader serves, for a progress line ('?' when it cannot tell)."""
    n = getattr(loader, "num_samples", None)
    if not isinstance(n, int):
        n = len(getattr(loader, "dataset", ()) or ()) or None
    return f"{n:,}" if n else "?"


def _cmd_lesion(args: argparse.Namespace) -> int:
    import os

    import pandas as pd

    from .errors import NonFiniteOutputs
    from .lesion import lesion_table
    from .record import atomic_write_text, check_out_file, run_owner

    out = check_out_file(args.out or Path(args.checkpoint[0]).parent / "lesion.csv")
    runs = _one_checkpoint_per_run(args.checkpoint)
    tables, notes = [], []
    for k, path in enumerate(args.checkpoint, 1):
        loaded = _load_for_eval(path, args.device, args.precision, args.data_path, args.data_root)
        run_cfg, model = loaded.run_cfg, loaded.model
        owner = run_owner(runs[k - 1])  # the study whose folder holds the run, where it has an owner record
        _say(f"lesion [{k}/{len(args.checkpoint)}]: loading the dataset of {path} ({run_cfg.data.name}) in "
             f"{loaded.precision} …")
        loader = _eval_loaders(loaded)["test"]
        kind = "plain" if run_cfg.model.shortcut == "none" else "ResNet"
        n = 1 + sum(1 for _, b in model.blocks() if b.lesionable)
        done = iter(range(1, n + 1))
        try:
            table = lesion_table(model, loader, loaded.device, loaded.amp,
                                 progress=lambda what: _say(f"lesion [{k}/{len(args.checkpoint)}]: test error "
                                                            f"{'intact' if what == 'intact' else 'without ' + what} "
                                                            f"({next(done)}/{n}, {_images(loader)} images) …"))
        except NonFiniteOutputs as e:
            raise NonFiniteOutputs(f"{path}: {e}") from None
        if loaded.test_picked:
            notes.append("note: " + TEST_PICKED.format(what="the baseline's checkpoint", path=path))
        for row in table[table["nonfinite_images"] > 0].itertuples():
            notes.append(f"note: {path}: with {row.block} deleted, {row.nonfinite_images:,} of {_images(loader)} "
                         f"images gave NaN or inf outputs: counted as errors ({row.test_error:.2f} %)")
        table.insert(0, "model", f"{kind}-{model.cfg.resolved().depth}, seed {run_cfg.seed}")
        table.insert(1, "study", (owner or {}).get("study", ""))
        # the run folder relative to the table's own folder: a study's lesion.csv names trials/<run>, as its trials do
        table.insert(2, "run", Path(os.path.relpath(runs[k - 1], out.parent.resolve())).as_posix())
        tables.append(table)
    table = pd.concat(tables, ignore_index=True)
    atomic_write_text(out, table.to_csv(index=False))
    print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    for note in notes:
        print(note)
    print(f"wrote {out}")
    return 0


def _one_checkpoint_per_run(paths: list[str]) -> list[Path]:
    """Each checkpoint's run folder (resolved); a ConfigError when a file is given twice or two checkpoints are of one
    run (last.pt and best.pt of one folder): their rows would be one run counted twice."""
    from .errors import ConfigError

    seen: dict[Path, str] = {}
    runs = []
    for path in paths:
        run = Path(path).resolve().parent
        if run in seen:
            same = Path(seen[run]).resolve() == Path(path).resolve()
            raise ConfigError(f"lesion: {path} is given twice" if same else
                              f"lesion: {seen[run]} and {path} are checkpoints of one run ({run}); give one "
                              f"checkpoint per run")
        seen[run] = path
        runs.append(run)
    return runs


def _set_device(overrides: list[str]) -> str | None:
    """The device a ``--set device=…`` gives (the last one), or None."""
    values = [o.split("=", 1)[1].strip() for o in overrides if "=" in o and o.split("=", 1)[0].strip() == "device"]
    return values[-1] if values else None


PROBE_SETS = {"model.depth": "--depths sets it", "model.stages": "--depths sets it",
              "model.shortcut": "probe compares none and identity",
              **{f"data.{k}": "probe takes one batch of the train split as stored, unaugmented"
                 for k in ("shuffle", "augment", "pad", "scale_size", "test_augment", "loader", "num_workers")}}


def _check_probe_keys(overrides: list[str]) -> None:
    """Refuse a ``--set`` that probe would not use: a key outside model and data (an optimizer, a schedule, a
    batch size: probe does not train), or a key it sets itself or does not read (``PROBE_SETS``)."""
    import dataclasses

    from .effect import refuse_taken
    from .run_config import RunConfig

    untrained = {f.name: "probe does not train" for f in dataclasses.fields(RunConfig)
                 if f.name not in ("model", "data")}
    refuse_taken("probe", overrides, {**untrained, **PROBE_SETS},
                 "it takes the other model and data keys, e.g. --set model.activation=pre")


def _cmd_probe(args: argparse.Namespace) -> int:
    from .init_probe import probe_depths
    from .values import int_at_least, int_list

    device = _set_device(args.overrides)
    if device is not None:
        from .errors import ConfigError

        raise ConfigError(f"probe: --set device={device} has no effect here; use --device {device}")
    _check_probe_keys(args.overrides)
    from .record import atomic_write_text, check_out_file

    depths = int_list("--depths", args.depths)
    seeds, batch_size = int_at_least("--seeds", args.seeds), int_at_least("--batch-size", args.batch_size)
    out = check_out_file(args.out)
    table = probe_depths(depths, args.overrides, seeds=seeds, batch_size=batch_size, device=args.device)
    atomic_write_text(out, table.to_csv(index=False))
    first = table[table.layer_index == 0].pivot_table(index="depth", columns="shortcut", values="grad_norm")
    print("gradient norm of the first layer at initialisation (mean over seeds):")
    if {"none", "identity"} <= set(first.columns):
        first["plain/residual"] = first["none"] / first["identity"]
    print(first.to_string(float_format=lambda v: f"{v:.4g}"))
    print(f"wrote {args.out}")
    return 0
