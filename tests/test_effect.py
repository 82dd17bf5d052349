"""Every input takes effect or is refused (resnet_core/effect.py).

1. A key the user wrote that the run's parts never read is refused by a single run (`train`), and by a grid only
   where no cell it reaches reads it. 2. Two cells that differ in config but build the same network and train it
   the same way are refused, naming both.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Sequence

import pytest
import torch
import yaml

from resnet_core.cli import main
from resnet_core.config import ModelConfig
from resnet_core.errors import ConfigError
from resnet_core.model import build_model
from resnet_core.data import build_loaders, load_dataset
from resnet_core.describe import load_model_config
from resnet_core.data.config import DataConfig, SyntheticConfig
from resnet_core.optimizers import build_optimizer
from resnet_core.run_config import OptimConfig, RunConfig, canonical_dict, load_run_config, resolved_dict
from resnet_core.schedules import ScheduleConfig
from sweeps.spec.grid import load_grid, parse_grid

from run_configs import tiny_run

REPO = Path(__file__).resolve().parents[1]
TINY = tiny_run(log_every=False)   # a log_per_epoch set here is the only logging key the user wrote


def _train_refuses(tmp_path: Path, capsys, sets: list[str], *words: str) -> None:
    """`train --set …` exits 2 with one line naming ``words``, before anything is written."""
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(TINY))
    out = tmp_path / "run"
    code = main(["train", "--config", str(config), "--out", str(out), *[a for s in sets for a in ("--set", s)]])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and err.startswith("error: "), err
    for word in (*words, "no effect"):
        assert word in err, (word, err)
    assert not out.exists()


def _grid(base: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
    b = copy.deepcopy(TINY)
    for key, value in (base or {}).items():
        if isinstance(value, dict):
            b.setdefault(key, {}).update(value)
        else:
            b[key] = value
    return {"study": "effect", "base": b, "seeds": [0], **kw}


def _refused(d: dict[str, Any], *words: str) -> str:
    with pytest.raises(ConfigError) as e:
        parse_grid(d)
    message = str(e.value)
    assert "\n" not in message
    for word in words:
        assert word in message, (word, message)
    return message


# == 1. a key its parts never read ===============================================================================
@pytest.mark.parametrize("sets, words", [
    # the known examples
    (["model.bias_init=default"], ("model.bias_init ('default') needs model.conv_bias true, got false",)),
    (["model.activation=bn_after_add", "model.zero_init_residual=true"],
     ("model.zero_init_residual (True) needs model.activation", "got 'bn_after_add'")),
    (["model.shortcut_norm=false"], ("model.shortcut_norm (False) needs model.shortcut conv1x1 or conv3x3",
                                     "got 'identity'")),
    (["model.shortcut=none", "model.shortcut_norm=false"], ("model.shortcut_norm", "got 'none'")),
    (["model.project_all=false"], ("model.project_all (False) needs model.shortcut conv1x1 or conv3x3",
                                   "got 'identity'")),
    (["model.shortcut=conv1x1", "model.project_all=true", "model.project_stage_entry=true"],
     ("model.project_stage_entry (True) needs model.project_all false, got true",)),
    (["log_per_epoch=2", "log_every=10"], ("log_every (10) needs log_per_epoch null, got 2",)),
    # the other keys of the kind
    (["schedule.name=onecycle", "schedule.cycle_momentum=true", "optim.momentum=0.5"],
     ("optim.momentum (0.5) needs schedule.cycle_momentum false",)),
    (["schedule.name=onecycle", "schedule.max_momentum=0.9"],
     ("schedule.max_momentum (0.9) needs schedule.cycle_momentum true",)),
    (["data.pad=2"], ("data.pad (2) needs data.augment crop_flip", "got 'none'")),
    (["data.augment=crop_flip", "data.scale_size=40"], ("data.scale_size (40) needs data.augment scale_crop",)),
    (["data.num_workers=2"], ("data.num_workers (2) needs data.loader torch",)),
    (["data.split_seed=3"], ("data.split_seed (3) needs data.val_size above 0 or data.test_augment true",)),
    (["data.download=false"], ("data.download (False) needs data.name cifar10",)),
    (["data.root=/data"], ("data.root ('/data') needs data.name cifar10",)),
    (["data.synthetic.noise=0.1", "data.name=cifar10"],
     ("data.synthetic.noise (0.1) needs data.name synthetic, got 'cifar10'",)),
    # a key another part overwrites: the dataset's shape, a cycled momentum's first beta
    (["model.num_classes=100"], ("model.num_classes (100) needs a dataset with that many classes",
                                 "data.synthetic.num_classes 10", "write 10")),
    (["model.in_channels=1"], ("model.in_channels (1) needs a dataset with that many channels",
                               "data.synthetic.channels 3")),
    (["schedule.name=onecycle", "schedule.cycle_momentum=true", "optim.name=adam", "optim.betas=[0.8,0.99]"],
     ("optim.betas ([0.8, 0.99]) needs schedule.cycle_momentum false to set the first beta", "[null, BETA2]")),
    (["schedule.name=onecycle", "schedule.cycle_momentum=true", "optim.name=adamw", "optim.betas=[0.9,0.999]"],
     ("optim.betas ([0.9, 0.999]) needs schedule.cycle_momentum false",)),
    # a key read only with another's choice: a test-time augmentation without an augmentation, a step without steps
    (["data.test_augment=true"], ("data.test_augment (True) needs data.augment other than none, got 'none'",)),
    (["schedule.name=multistep", "schedule.gamma=0.2"],
     ("schedule.gamma (0.2) needs schedule.milestones for multistep, got none",)),
    (["schedule.name=multistep", "schedule.reset_optimizer=true"], ("schedule.reset_optimizer (True) needs",)),
    # logs come at least once an evaluation: a longer log interval is the evaluation's
    (["log_every=10"], ("log_every (10) needs at most the evaluation interval, got eval_every 3 iter",
                        "write log_every 3 or less")),
    (["schedule.unit=epoch", "schedule.total=2", "eval_every=1", "log_every=5"],
     ("log_every (5) needs at most the evaluation interval, got eval_every 1 epoch = 4 steps",)),
    # a written default counts: the user chose it, and it would not take effect
    (["optim.name=adam", "optim.momentum=0.9"], ("optim.momentum (0.9) needs optim.name sgd",)),
])
def test_a_run_refuses_a_key_its_parts_never_read(sets, words, tmp_path, capsys):
    _train_refuses(tmp_path, capsys, sets, *words)


def test_keys_the_user_did_not_write_or_that_take_effect_are_accepted(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(TINY))
    load_run_config(str(config), ["log_per_epoch=2"])   # log_every's default is not the user's
    load_run_config(str(config), ["model.conv_bias=true", "model.bias_init=default"])
    load_run_config(str(config), ["model.shortcut=conv1x1", "model.shortcut_norm=false"])
    load_run_config(str(config), ["model.activation=pre", "model.zero_init_residual=true"])
    load_run_config(str(config), ["data.path=null"])   # null gives no value
    # a key another part overwrites, written as what runs in its place
    load_run_config(str(config), ["model.num_classes=10", "model.in_channels=3"])
    load_run_config(str(config), ["data.synthetic.channels=1", "data.synthetic.num_classes=4",
                                  "model.in_channels=1", "model.num_classes=4"])
    load_run_config(str(config), ["schedule.name=onecycle", "schedule.cycle_momentum=true", "optim.name=adam",
                                  "optim.betas=[null,0.99]"])
    load_run_config(str(config), ["schedule.name=onecycle", "optim.name=adam", "optim.betas=[0.8,0.99]"])
    load_run_config(str(config), ["data.augment=flip", "data.test_augment=true", "data.split_seed=3"])
    load_run_config(str(config), ["schedule.name=multistep", "schedule.milestones=[3]", "schedule.gamma=0.2"])
    load_run_config(str(config), ["log_every=3"])
    load_run_config(str(config), ["schedule.unit=epoch", "schedule.total=2", "eval_every=1", "log_every=4"])
    for recipe in sorted((REPO / "ablations" / "recipes").glob("*.yaml")):
        load_run_config(str(recipe))


def test_a_file_that_writes_every_key_loads_again_and_its_set_keys_still_count(tmp_path):
    """A run's config.yaml (resolved) or a dumped config writes every key, read or not: not the user's choice of
    keys, so it loads again; a --set on it is."""
    cfg = load_run_config(None, ["data.name=synthetic", "log_per_epoch=2", "model.depth=8"])
    for name, d in (("config.yaml", resolved_dict(cfg)), ("dump.yaml", cfg.to_dict())):
        path = tmp_path / name
        path.write_text(yaml.safe_dump(d, sort_keys=False))
        assert load_run_config(str(path)).log_per_epoch == 2
        with pytest.raises(ConfigError, match="model.bias_init"):
            load_run_config(str(path), ["model.bias_init=default"])


def _seeded_params(base: dict[str, Any], key: str, value: Any, *, unread: bool) -> dict[str, torch.Tensor]:
    """The state of a depth-8 net built from seed 0 with ``key: value`` over ``base``, once ModelConfig.unread is
    checked to list ``key`` (``unread``) or not."""
    cfg = ModelConfig(**{"depth": 8, "widths": [4, 8, 8], **base, key: value})
    assert (key in cfg.unread()) == unread, (key, cfg.unread())
    torch.manual_seed(0)
    return build_model(cfg).state_dict()


@pytest.mark.parametrize("base, key, value", [
    ({"conv_bias": False}, "bias_init", ("zero", "default")),
    ({"activation": "bn_after_add"}, "zero_init_residual", (False, True)),
    ({"shortcut": "identity"}, "shortcut_norm", (True, False)),
    ({"shortcut": "none"}, "shortcut_norm", (True, False)),
    ({"shortcut": "conv1x1", "project_all": True}, "project_stage_entry", (False, True)),
])
def test_a_model_key_refused_as_unread_really_has_no_effect(base, key, value):
    """Built with either value, the same parameters (the rule in ModelConfig.unread is what the model does)."""
    a, b = (_seeded_params(base, key, v, unread=True) for v in value)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("base, key, value", [
    ({"conv_bias": True}, "bias_init", ("zero", "default")),
    ({"activation": "post"}, "zero_init_residual", (False, True)),
    ({"shortcut": "conv1x1"}, "shortcut_norm", (True, False)),
    ({"shortcut": "conv1x1"}, "project_stage_entry", (False, True)),
    ({"shortcut": "conv1x1"}, "project_all", (False, True)),
])
def test_a_model_key_read_by_its_parts_changes_the_model(base, key, value):
    a, b = (_seeded_params(base, key, v, unread=False) for v in value)
    assert a.keys() != b.keys() or any(not torch.equal(a[k], b[k]) for k in a)


def test_a_grid_accepts_a_base_key_that_some_cell_reads():
    """The hard part: `bias_init` in the base takes effect in the conv_bias cells only; refusing it per cell would
    refuse a sensible grid. So does a base optimizer key with an optimizer axis (refused per cell before)."""
    parse_grid(_grid({"model": {"bias_init": "default"}}, grid={"model.conv_bias": [True, False]}))
    parse_grid(_grid({"optim": {"momentum": 0.95}}, grid={"optim.name": ["sgd", "adam"]}))
    parse_grid(_grid({"log_every": 2}, grid={"log_per_epoch": [None, 2]}))


@pytest.mark.parametrize("d, words", [
    (_grid({"model": {"bias_init": "default"}}, grid={"model.shortcut": ["identity", "none"]}),
     ("no cell of the grid reads model.bias_init as the base sets it", "model.conv_bias true, got false")),
    (_grid(grid={"model.bias_init": ["zero", "default"]}),
     ("no cell of the grid reads model.bias_init as grid value model.bias_init=zero sets it",)),
    (_grid(extra_cells=[{"model.activation": "bn_after_add", "model.zero_init_residual": True}]),
     ("as extra cell 'model.activation=bn_after_add,model.zero_init_residual=true' sets it",
      "model.zero_init_residual (True) needs model.activation")),
    (_grid({"log_per_epoch": 2, "log_every": 5}, grid={"model.depth": [8, 14]}),
     ("no cell of the grid reads log_every as the base sets it",)),
    # the base's momentum reaches only the adam cell (the sgd cell sets its own): it takes effect nowhere
    (_grid({"optim": {"momentum": 0.95}}, grid={"optim": [{"name": "sgd", "momentum": 0.8}, {"name": "adam"}]}),
     ("no cell of the grid reads optim.momentum as the base sets it", "needs optim.name sgd, got 'adam'")),
    (_grid({"data": {"augment": "none"}}, search={"data.pad": {"int": [0, 4]}}, n_trials=2),
     ("no cell of the grid reads data.pad as search data.pad sets it",)),
])
def test_a_grid_refuses_a_key_no_cell_reads(d, words):
    _refused(d, *words)


def test_a_grid_names_the_set_that_wrote_an_unread_key(tmp_path):
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump(_grid(grid={"model.shortcut": ["identity", "none"]})))
    with pytest.raises(ConfigError) as e:
        load_grid(path, ["model.bias_init=default"])
    assert "as --set model.bias_init=default sets it" in str(e.value)
    load_grid(path, ["model.zero_init_residual=true"])   # read by both cells


# == 2. cells that build the same network ========================================================================
@pytest.mark.parametrize("base, kw, cells", [
    ({}, {"grid": {"model.stages": [None, [1, 1, 1]]}}, ("model.stages=null", "model.stages=[1,1,1]")),
    ({"model": {"depth": 20}}, {"grid": {"model.block": ["auto", "basic"]}}, ("model.block=auto", "model.block=basic")),
    ({}, {"grid": {"model.stem": ["auto", "cifar"]}}, ("model.stem=auto", "model.stem=cifar")),
    ({"model": {"widths": None}}, {"grid": {"model.widths": [None, [16, 32, 64]]}},
     ("model.widths=null", "model.widths=[16,32,64]")),
    ({"model": {"widths": None}}, {"extra_cells": [{"model.width": 2.0}, {"model.widths": [32, 64, 128]}]},
     ("model.width=2.0", "model.widths=[32,64,128]")),
    ({}, {"grid": {"model.conv_bias": [False, True], "model.bias_init": ["zero", "default"]}},
     ("model.conv_bias=false,model.bias_init=zero", "model.conv_bias=false,model.bias_init=default")),
    ({}, {"extra_cells": [{"schedule.total": 6.0}]}, ("", "schedule.total=6.0")),
])
def test_two_cells_that_build_the_same_network_are_refused(base, kw, cells):
    message = _refused(_grid(base, **kw), "build the same network and run the same training")
    assert f"cells {cells[0] or 'base'!r} and {cells[1]!r}" in message, message


def test_cells_that_build_different_networks_keep_their_ids():
    spec = parse_grid(_grid({"model": {"depth": 56, "widths": None}},
                            grid={"model.block": ["auto", "bottleneck"]}, extra_cells=[{"model.depth": 8}]))
    assert [c.id for c in spec.cells] == ["model.block=auto", "model.block=bottleneck", "model.depth=8"]
    assert [c.slug for c in spec.cells] == ["block-auto", "block-bottleneck", "depth-8"]


# == 3. a key another part overwrites ============================================================================
CIFAR = {**TINY, "data": {"name": "cifar10", "augment": "none"}}


def _load(tmp_path: Path, d: dict[str, Any], sets: Sequence[str] = ()) -> RunConfig:
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(d))
    return load_run_config(str(config), sets)


@pytest.mark.parametrize("name, key, bad, good, words", [
    ("cifar10", "num_classes", 100, 10, ("model.num_classes (100)", "got data.name 'cifar10' with 10", "write 10")),
    ("cifar100", "num_classes", 10, 100, ("model.num_classes (10)", "got data.name 'cifar100' with 100")),
    ("fashion_mnist", "in_channels", 3, 1, ("model.in_channels (3) needs a dataset with that many channels",
                                            "got data.name 'fashion_mnist' with 1")),
])
def test_the_dataset_sets_the_models_channels_and_classes(name, key, bad, good, words, tmp_path):
    """Known without loading the images (data.shapes), so refused before anything is loaded or written; the
    dataset's own value states what runs and is accepted, from the file or the command line."""
    d = {**CIFAR, "data": {"name": name, "augment": "none"}}
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, d, [f"model.{key}={bad}"])
    assert "\n" not in str(e.value)
    for word in words:
        assert word in str(e.value), (word, str(e.value))
    with pytest.raises(ConfigError, match=f"model.{key}"):
        _load(tmp_path, {**d, "model": {**d["model"], key: bad}})
    assert getattr(_load(tmp_path, d, [f"model.{key}={good}"]).model, key) == good
    _load(tmp_path, {**d, "model": {**d["model"], key: good}})


def test_a_dataset_known_only_as_it_loads_sets_the_models_channels_and_classes(tmp_path):
    """An ImageFolder tree's classes and channels are known only once it loads: a written value is refused before
    (the engine would replace it with the dataset's)."""
    d = {**CIFAR, "data": {"name": "imagefolder", "path": str(tmp_path), "augment": "none"}}
    for key in ("num_classes", "in_channels"):
        with pytest.raises(ConfigError) as e:
            _load(tmp_path, d, [f"model.{key}=3"])
        assert str(e.value) == (f"model.{key} (3) needs a dataset whose {key.split('_')[1]} are known before it loads, "
                                f"got data.name 'imagefolder': it would have no effect; the dataset sets it as it "
                                f"loads: drop model.{key}")
    _load(tmp_path, d)


def test_a_grid_takes_a_models_classes_where_some_cells_dataset_has_them(tmp_path, capsys):
    base = {**CIFAR, "model": {**CIFAR["model"], "num_classes": 100}}
    parse_grid({"study": "effect", "base": base, "seeds": [0], "grid": {"data.name": ["cifar10", "cifar100"]}})
    _refused({"study": "effect", "base": base, "seeds": [0], "grid": {"model.shortcut": ["identity", "none"]}},
             "no cell of the grid reads model.num_classes as the base sets it",
             "model.num_classes (100) needs a dataset with that many classes, got data.name 'cifar10' with 10")
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump(_grid(grid={"model.shortcut": ["identity", "none"]})))
    code = main(["sweep", str(path), "--dry-run", "--root", str(tmp_path / "runs"), "--set", "model.num_classes=100"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err, err
    assert "as --set model.num_classes=100 sets it" in err and "data.synthetic.num_classes 10" in err, err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_a_cycled_momentum_overwrites_the_first_beta_and_keeps_the_second(name):
    """What the optimizer gets under onecycle with cycle_momentum: max_momentum, whatever betas[0] says (so it is
    refused), and betas[1] (so [null, b2] is how to set it)."""
    schedule = ScheduleConfig(name="onecycle", cycle_momentum=True, max_momentum=0.95)
    params = [torch.nn.Parameter(torch.zeros(2))]
    for first in (0.5, 0.9, None):
        opt = build_optimizer(OptimConfig(name=name, betas=[first, 0.99]), schedule, params, lr=0.1)
        assert opt.param_groups[0]["betas"] == (0.95, 0.99)
    cfg = RunConfig(optim=OptimConfig(name=name, betas=[None, 0.99]), schedule=schedule)
    assert "optim.betas" in cfg.unread() and canonical_dict(cfg)["optim"]["betas"] == [None, 0.99]
    with pytest.raises(ConfigError, match=r"optim.betas \[None, 0.99\]: a null first beta needs schedule.cycle_"):
        RunConfig(optim=OptimConfig(name=name, betas=[None, 0.99]))


@pytest.mark.parametrize("augment, same", [("none", True), ("flip", False)])
def test_a_test_time_augmentation_without_an_augmentation_serves_the_test_split_as_it_is(augment, same):
    def test_images(test_augment: bool) -> torch.Tensor:
        cfg = DataConfig(name="synthetic", augment=augment, test_augment=test_augment,
                         synthetic=SyntheticConfig(image_size=8, n_train=16, n_test=32))
        assert ("test_augment" in cfg.unread()) is same
        loader = build_loaders(load_dataset(cfg), cfg, seeds=[0], batch_size=8, eval_batch_size=32).test
        return torch.cat([x for x, _ in loader])

    assert torch.equal(test_images(False), test_images(True)) is same


# == 4. who wrote a key: the command line's is refused, a file's that a --set left unread is dropped =============
SMOKE = str(REPO / "ablations" / "recipes" / "smoke.yaml")


def test_switching_a_recipes_optimizer_on_the_command_line_drops_its_momentum_with_a_note(capsys):
    assert main(["train", "--config", SMOKE, "--set", "optim.name=adam", "--print-config"]) == 0
    captured = capsys.readouterr()
    assert captured.err.strip() == (f"note: optim.momentum (0.9) from {SMOKE} needs optim.name sgd, got 'adam' after "
                                    f"--set: it has no effect, dropped"), captured.err
    assert "name: adam" in captured.out
    # written on the command line, it is the user's: refused
    assert main(["train", "--config", SMOKE, "--set", "optim.name=adam", "--set", "optim.momentum=0.9"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: optim.momentum (0.9) needs optim.name sgd, got 'adam': it would have no effect", err


def test_a_files_key_its_own_choices_leave_unread_is_refused_with_or_without_a_set(tmp_path):
    d = {**TINY, "optim": {"name": "adam", "lr": 0.01, "momentum": 0.9}}
    for sets in ([], ["model.depth=14"]):
        with pytest.raises(ConfigError, match=r"optim.momentum \(0.9\) needs optim.name sgd, got 'adam'"):
            _load(tmp_path, d, sets)


def test_a_files_synthetic_options_are_dropped_when_the_command_line_names_real_data(tmp_path, capsys):
    cfg = _load(tmp_path, TINY, ["data.name=cifar10"])
    assert cfg.data.name == "cifar10"
    notes = capsys.readouterr().err.strip().splitlines()
    assert len(notes) == 3 and all(n.startswith("note: data.synthetic.") and n.endswith("dropped") for n in notes)


BIAS_INIT = {"model": {"bias_init": "default"}}


@pytest.mark.parametrize("grid, sets, axes, in_file, key", [
    (_grid(grid={"model.shortcut": ["identity", "none"]}), ["optim.name=adam"], [],
     _grid({"optim": {"name": "adam"}}, grid={"model.shortcut": ["identity", "none"]}), "optim.momentum (0.9)"),
    (_grid(BIAS_INIT, grid={"model.conv_bias": [True, False]}), ["model.conv_bias=false"], [],
     _grid(BIAS_INIT, grid={"model.conv_bias": [False]}), "model.bias_init ('default')"),
    (_grid(BIAS_INIT, grid={"model.conv_bias": [True, False]}), [], ["model.conv_bias=false"],
     _grid(BIAS_INIT, grid={"model.conv_bias": [False]}), "model.bias_init ('default')"),
])
def test_a_grid_drops_a_base_key_the_command_line_left_unread_with_a_note(grid, sets, axes, in_file, key, tmp_path,
                                                                        capsys):
    """``--set`` (and ``-m``) change a grid as they change a recipe; the same change written in the file is the
    file's own choice, so there the key is refused."""
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump(grid))
    load_grid(path, sets, axes=axes)
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"note: {key} from {path}'s base needs") and err.endswith("dropped") and "\n" not in err
    _refused(in_file, "no cell of the grid reads", key)


def test_a_grid_refuses_a_base_key_unread_before_the_command_line_changed_it(tmp_path):
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump(_grid({"model": {"bias_init": "default"}},
                                         grid={"model.shortcut": ["identity", "none"]})))
    with pytest.raises(ConfigError, match="no cell of the grid reads model.bias_init as the base sets it"):
        load_grid(path, ["model.depth=14"])


def test_describing_a_model_file_drops_a_key_the_command_line_left_unread_with_a_note(tmp_path, capsys):
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({"model": {"depth": 8, "shortcut": "conv1x1", "shortcut_norm": False}}))
    assert load_model_config(str(path), ["model.shortcut=identity"]).shortcut == "identity"
    assert capsys.readouterr().err.strip() == (f"note: model.shortcut_norm (False) from {path} needs model.shortcut "
                                               f"conv1x1 or conv3x3, got 'identity' after --set: it has no effect, "
                                               f"dropped")
    with pytest.raises(ConfigError, match=r"model.shortcut_norm \(False\) needs model.shortcut"):
        load_model_config(str(path), ["model.shortcut=identity", "model.shortcut_norm=false"])
