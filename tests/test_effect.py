"""Every input takes effect or is refused (resnet_core/effect.py).

1. A key the user wrote that the run's parts never read is refused by a single run (`train`), and by a grid only
   where no cell it reaches reads it. 2. Two cells that differ in config but build the same network and train it
   the same way are refused, naming both.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from resnet_core.cli import main
from resnet_core.config import ModelConfig
from resnet_core.errors import ConfigError
from resnet_core.model import build_model
from resnet_core.run_config import load_run_config, resolved_dict
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
    (["data.name=cifar10"], ("data.synthetic.image_size (8) needs data.name synthetic, got 'cifar10'",)),
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
])
def test_a_model_key_refused_as_unread_really_has_no_effect(base, key, value):
    """Built with either value, the same parameters (the rule in ModelConfig.unread is what the model does)."""
    a, b = (_seeded_params(base, key, v, unread=True) for v in value)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("base, key, value", [
    ({"conv_bias": True}, "bias_init", ("zero", "default")),
    ({"activation": "post"}, "zero_init_residual", (False, True)),
    ({"shortcut": "conv1x1"}, "shortcut_norm", (True, False)),
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
