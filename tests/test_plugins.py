"""A researcher's own part (docs/models.md: "Your own part"): one registration makes it a config value, a grid value, a
report row and a W&B config entry; plugins load in every worker, bad ones are refused before anything is written,
and a study records the plugins it ran with."""
from __future__ import annotations

import hashlib
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from resnet_core import ConfigError, ModelConfig, build_model
from resnet_core import plugins as plugins_mod
from resnet_core.blocks import BLOCKS
from resnet_core.cli import main
from resnet_core.pooling import POOLINGS
from resnet_core.record import read_summary
from resnet_core.registry import Registry
from resnet_core.shortcuts import SHORTCUTS
from resnet_core.stems import STEMS

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "gated_shortcut.yaml"
EXAMPLE_PLUGIN = REPO / "examples" / "gated_shortcut.py"


@pytest.fixture(autouse=True)
def clean_registries():
    """Whatever a test registers or loads is gone afterwards (other tests check the built-in vocabulary)."""
    registries = list(Registry.ALL)
    saved = [(dict(r._parts), dict(r._meta), dict(r._source)) for r in registries]
    loaded, modules = dict(plugins_mod._LOADED), set(sys.modules)
    yield
    for r, (parts, meta, source) in zip(registries, saved):
        r._parts, r._meta, r._source = parts, meta, source
    plugins_mod._LOADED.clear()
    plugins_mod._LOADED.update(loaded)
    for name in set(sys.modules) - modules:
        if name.startswith("resnet_ablate_plugin_"):
            del sys.modules[name]


def test_a_registered_shortcut_is_a_config_value():
    with pytest.raises(ConfigError, match=r"unknown model.shortcut 'halved'.*identity.*none"):
        ModelConfig(shortcut="halved")

    @SHORTCUTS.register("halved")
    def halved(*, in_ch, out_ch, stride, members, project, with_norm, bias):
        return _Scale(SHORTCUTS.get("identity")(in_ch=in_ch, out_ch=out_ch, stride=stride, members=members,
                                                project=project, with_norm=with_norm, bias=bias), 0.5)

    cfg = ModelConfig(family="cifar", depth=8, widths=[4, 8, 8], shortcut="halved")
    model = build_model(cfg).double().eval()
    twin = build_model(ModelConfig(family="cifar", depth=8, widths=[4, 8, 8])).double().eval()
    twin.load_state_dict(model.state_dict())
    x = torch.randn(2, 4, 8, 8, dtype=torch.float64)
    with torch.no_grad():  # the block adds half the identity where the built-in adds all of it
        blk, ref = model.stage1.block0, twin.stage1.block0
        out_half = blk.merge(torch.zeros_like(x), blk.shortcut_of(x))
        out_full = ref.merge(torch.zeros_like(x), ref.shortcut_of(x))
    torch.testing.assert_close(out_half, 0.5 * out_full, rtol=0, atol=0)
    with pytest.raises(ConfigError, match="halved"):  # the error's choices come from the registry
        ModelConfig(shortcut="nope")


class _Scale(torch.nn.Module):
    projects = False

    def __init__(self, inner: torch.nn.Module, k: float) -> None:
        super().__init__()
        self.inner, self.k = inner, k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.k * self.inner(x)


def test_parts_take_keyword_arguments_only():
    from resnet_core.placements import Placement

    with pytest.raises(TypeError):
        Placement("p", lambda blk, x: x, False, True, True, False, False, "last_bn")  # six positional flags: gone
    with pytest.raises(ConfigError, match="zero_init"):
        Placement(name="p", forward=lambda blk, x: x, zero_init="first_bn")
    with pytest.raises(TypeError):
        SHORTCUTS.get("conv1x1")(16, 32, 2, 1, False, True, False)
    with pytest.raises(TypeError):
        BLOCKS.get("basic")(16, 16, 1)
    convs = BLOCKS.get("bottleneck")(in_ch=64, width=16, stride=2)
    assert [(c.in_ch, c.out_ch, c.kernel, c.stride) for c in convs] == [(64, 16, 1, 1), (16, 16, 3, 2),
                                                                        (16, 64, 1, 1)]


def test_each_block_zeroes_its_own_last_layer():
    for activation, zeroed in (("post", "bn"), ("pre", "conv"), ("bn_after_add", None)):
        model = build_model(dict(family="cifar", depth=8, activation=activation))
        block = model.stage1.block0
        block.zero_init_last()
        last = {"bn": block.bn(block.n_convs).weight, "conv": block.conv(block.n_convs).weight}
        for kind, weight in last.items():
            assert (torch.count_nonzero(weight) == 0) == (kind == zeroed), (activation, kind)


def test_reports_name_a_user_part_by_its_registered_label():
    from reports.study_reader import part_label, shortcut_option

    assert part_label("model.activation", "pre") == "pre-act" and part_label("model.pooling", "max") == "GMP"
    assert part_label("model.pooling", "unheard-of") == "unheard-of"  # a user's part that this process lacks
    assert shortcut_option("conv3x3", True) == "C3" and shortcut_option("identity", False) == "A"
    assert shortcut_option("none", False) == "plain" and shortcut_option("gated", False) == "gated"
    POOLINGS.register("softpool", label="SoftPool")(lambda *, channels, members: torch.nn.Identity())
    assert part_label("model.pooling", "softpool") == "SoftPool"


def _wandb_configs(monkeypatch) -> list[dict]:
    """Every config a trial hands to wandb.init (which then fails: the trial completes without W&B)."""
    import wandb

    seen: list[dict] = []

    def fake_init(*args, **kwargs):
        seen.append(dict(kwargs.get("config") or {}))
        raise RuntimeError("no W&B in this test")

    monkeypatch.setattr(wandb, "init", fake_init)
    return seen


@pytest.mark.filterwarnings("ignore")
def test_the_example_part_runs_in_a_two_cell_sweep_and_shows_in_report_and_wandb(tmp_path, monkeypatch, capsys):
    pytest.importorskip("optuna")
    configs = _wandb_configs(monkeypatch)
    import sweeps.launch.sweep

    monkeypatch.setattr(sweeps.launch.sweep, "log_summary_run", lambda *a, **k: None)  # the summary run draws figures
    root = tmp_path / "runs"
    assert main(["sweep", str(EXAMPLE), "--root", str(root), "--workers", "1", "--wandb", "offline"]) == 0
    capsys.readouterr()
    study = root / "gated-shortcut"
    shortcuts = sorted(yaml.safe_load(p.read_text())["model"]["shortcut"]
                       for p in study.glob("trials/*/config.yaml"))
    assert shortcuts == ["gated", "identity"]
    trial_configs = [c for c in configs if c.get("model")]
    assert sorted(c["model"]["shortcut"] for c in trial_configs) == ["gated", "identity"]

    assert main(["report", "gated-shortcut", "--root", str(root), "--format", "csv,md", "--no-figures"]) == 0
    table = (study / "report" / "table.csv").read_text()
    assert "gated" in table and "identity" in table
    gated_row = next(line for line in table.splitlines() if "gated" in line)
    assert "ResNet-8 gated" in gated_row  # labelled by its registered name, like option A's "ResNet-8 A"

    import optuna

    from sweeps.queue.storage import open_storage, resolve_storage

    def stored():
        st = open_storage(resolve_storage(None, root, "gated-shortcut"), read_only=True)
        s = optuna.load_study(study_name="gated-shortcut", storage=st)
        return s.user_attrs["plugins"], len(s.get_trials(deepcopy=False))

    recorded, n_trials = stored()
    assert [Path(r["plugin"]).name for r in recorded] == ["gated_shortcut.py"] and len(recorded[0]["sha256"]) == 64
    assert n_trials == 2

    # resuming with another plugin set is refused before anything is added to the study
    other = tmp_path / "other_part.py"
    other.write_text("from resnet_core.pooling import POOLINGS, global_avg_pool\n"
                     "POOLINGS.register('avg2')(global_avg_pool)\n")
    assert main(["sweep", str(EXAMPLE), "--root", str(root), "--plugin", str(other)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "plugins [gated_shortcut.py]" in err and "other_part.py" in err, err
    assert stored() == (recorded, n_trials)

    # relaunched without the plugin, the grid's part is unknown: the error names the plugin the study recorded
    # (it said "unknown model.shortcut 'gated'" alone)
    grid = yaml.safe_load(EXAMPLE.read_text())
    grid.pop("plugins", None)
    bare = tmp_path / "bare.yaml"
    bare.write_text(yaml.safe_dump(grid))
    SHORTCUTS._parts.pop("gated")
    plugin = recorded[0]["plugin"]
    plugins_mod._LOADED.pop(plugin)
    assert main(["sweep", str(bare), "--root", str(root)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "unknown model.shortcut 'gated'" in err, err
    assert f"study 'gated-shortcut' was trained with plugin {plugin}: pass --plugin {plugin}" in err, err
    assert stored() == (recorded, n_trials)


@pytest.mark.parametrize("grid_plugins, flag, needle", [
    (["no_such_part.py"], None, "no_such_part.py"),
    ([], "missing/dir/part.py", "missing/dir/part.py"),
    (["no_such_module_xyz"], None, "no_such_module_xyz"),
    (["broken.py"], None, "broken.py failed to load: ZeroDivisionError"),
    (["syntax.py"], None, "syntax.py failed to load: SyntaxError"),
    (["taken.py"], None, "taken.py failed to load: KeyError: model.shortcut 'identity' is already registered"),
    (["empty.py"], None, "plugin empty.py registers no part"),
])
def test_a_bad_plugin_exits_2_naming_it_before_anything_is_written(tmp_path, capsys, grid_plugins, flag, needle):
    (tmp_path / "broken.py").write_text("1 / 0\n")
    (tmp_path / "syntax.py").write_text("def f(:\n    pass\n")
    (tmp_path / "taken.py").write_text("from resnet_core.shortcuts import SHORTCUTS\n"
                                       "SHORTCUTS.register('identity')(lambda **kw: None)\n")
    (tmp_path / "empty.py").write_text("x = 1\n")
    grid = yaml.safe_load(EXAMPLE.read_text())
    grid["plugins"] = grid_plugins
    grid["grid"] = {"model.shortcut": ["identity"]}
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    root = tmp_path / "runs"
    assert main(["sweep", str(path), "--root", str(root)] + (["--plugin", flag] if flag else [])) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and needle in err, err
    assert not root.exists()


@pytest.mark.parametrize("name", ["odd,name", "odd name", "odd/name", "a.b", "[x]", "x:y", "null", "true", "12",
                                  "-x", "\u00f6dd", ""])
def test_a_part_name_that_is_no_plain_token_is_refused_naming_it(tmp_path, capsys, name):
    """A name a grid axis would split (``a,b``), a folder would nest (``a/b``) or YAML would read as another value
    (``[x]``, ``null``, ``12``) could never be chosen as registered: the plugin is refused in one line, exit 2."""
    plugin = tmp_path / "odd.py"
    plugin.write_text(f"from resnet_core.pooling import POOLINGS, global_avg_pool\n"
                      f"POOLINGS.register({name!r})(global_avg_pool)\n")
    code, out = _train_the_example_base(tmp_path, plugin)
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: plugin ") and "\n" not in err and "a part's name must be" in err, err
    assert repr(name) in err and not out.exists()
    assert name not in POOLINGS


def _train_the_example_base(tmp_path: Path, plugin: Path, **model: Any) -> tuple[int, Path]:
    """`train --plugin PLUGIN` of the example grid's base, its model keys updated by ``model``: the exit code and the
    run directory."""
    out = tmp_path / "run"
    base = yaml.safe_load(EXAMPLE.read_text())["base"]
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump({**base, "model": {**base["model"], **model}}))
    return main(["train", "--plugin", str(plugin), "--config", str(cfg), "--out", str(out)]), out


def test_train_loads_a_plugin_given_on_the_command_line(tmp_path, capsys):
    code, out = _train_the_example_base(tmp_path, EXAMPLE_PLUGIN, shortcut="gated")
    assert code == 0
    assert yaml.safe_load((out / "config.yaml").read_text())["model"]["shortcut"] == "gated"
    # the run's own record names the user code its part came from, with the hash of that source
    source = EXAMPLE_PLUGIN
    assert {"plugin": str(source), "sha256": hashlib.sha256(source.read_bytes()).hexdigest()} in \
        read_summary(out)["provenance"]["plugins"]
    gates = [n for n, _ in build_model(ModelConfig(shortcut="gated", depth=8)).named_parameters() if "gate" in n]
    assert len(gates) == 3  # one learnable gate per block of a ResNet-8 (3 stages of 1 block)


BROKEN_PARTS = """
import torch
from torch import nn
from resnet_core.pooling import POOLINGS
from resnet_core.shortcuts import SHORTCUTS

class FirstChannel(nn.Module):
    def forward(self, x):
        return x[:, :1]

class RowMean(nn.Module):
    def forward(self, x):
        return x.mean(dim=2)

@SHORTCUTS.register("first_channel")
def first_channel(*, in_ch, out_ch, stride, members, project, with_norm, bias):
    return FirstChannel()

@SHORTCUTS.register("two_args")
def two_args(in_ch, out_ch):
    return FirstChannel()

@POOLINGS.register("row_mean")
def row_mean(*, channels, members):
    return RowMean()
"""


@pytest.mark.parametrize("key, value, needle", [
    ("shortcut", "first_channel", "model.shortcut 'first_channel' returns [2, 1, 8, 8] where its block's output is "
                                  "[2, 4, 8, 8]"),
    ("pooling", "row_mean", "model.pooling 'row_mean' returns [2, 8, 2] for features [2, 8, 2, 2]"),
    ("shortcut", "two_args", "TypeError: two_args() got an unexpected keyword argument"),
])
def test_a_user_part_that_breaks_is_one_line_naming_it_before_anything_is_written(tmp_path, capsys, key, value,
                                                                                   needle):
    """A shortcut whose output the addition would broadcast, a pooling of the wrong shape, a factory that does not
    take the documented keywords: exit 2 naming the part and its file, in train and models, no run folder."""
    plugin = tmp_path / "parts.py"
    plugin.write_text(BROKEN_PARTS)
    code, out = _train_the_example_base(tmp_path, plugin, **{key: value})
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and needle in err and str(plugin) in err, err
    assert not out.exists()
    assert main(["models", "--plugin", str(plugin), "--set", f"model.{key}={value}", "--set", "model.depth=8"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and f"{value}" in err and str(plugin) in err, err


def test_models_describes_a_user_stem(tmp_path, capsys):
    """A stem registered without an input size is described at its family's stem's size (it was a KeyError
    traceback); one registered with ``input_size`` at that size."""
    plugin = tmp_path / "stems.py"
    plugin.write_text("from resnet_core.stems import STEMS, cifar_stem\n"
                      "STEMS.register('plain_stem')(cifar_stem)\n"
                      "STEMS.register('small_stem', input_size=16)(cifar_stem)\n")
    for stem, size in (("plain_stem", 32), ("small_stem", 16)):
        assert main(["models", "--plugin", str(plugin), "--set", f"model.stem={stem}", "--set", "model.depth=8"]) == 0
        out = capsys.readouterr().out
        assert f"forward FLOPs at {size}x{size}:" in out and f"stem: {stem}" in out, out


def test_a_checkpoint_of_a_user_part_is_evaluated_with_its_plugin_and_names_it_without(tmp_path, capsys):
    """eval, lesion and probe take --plugin as train does (a plugin model's checkpoint could not be evaluated at
    all); without it, eval, lesion and train --resume name the plugin the run was trained with (from the checkpoint,
    so a copied one too, or the run's summary.json)."""
    source = EXAMPLE_PLUGIN
    code, out = _train_the_example_base(tmp_path, source, shortcut="gated")
    assert code == 0
    copied = tmp_path / "elsewhere" / "last.pt"
    copied.parent.mkdir()
    copied.write_bytes((out / "last.pt").read_bytes())
    capsys.readouterr()
    SHORTCUTS._parts.pop("gated")  # a new process, without the plugin
    plugins_mod._LOADED.pop(str(source))
    for argv in (["eval", str(out / "last.pt")], ["eval", str(copied)], ["lesion", str(out / "last.pt")],
                 ["train", "--config", str(out / "config.yaml"), "--out", str(out), "--resume"]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "unknown model.shortcut 'gated'" in err and f"--plugin {source}" in err, err
    assert main(["eval", "--device", "cpu", "--plugin", str(source), str(copied)]) == 0
    assert "test: error" in capsys.readouterr().out
    assert main(["probe", "--plugin", str(source), "--depths", "8", "--seeds", "1", "--batch-size", "4",
                 "--set", "data.name=synthetic", "--device", "cpu", "--out", str(tmp_path / "probe.csv")]) == 0
    assert "gated" in SHORTCUTS


def test_a_report_names_a_user_block_and_stem_by_their_labels():
    """A cell's label used the registered label of a user activation or pooling only: a block or stem was named by
    its key (docs/models.md: reports name a part by its label, else its name)."""
    from reports.study_reader import Cell, _derive_attrs

    BLOCKS.register("triple", label="3×3×3")(lambda *, in_ch, width, stride: BLOCKS.get("basic")(
        in_ch=in_ch, width=width, stride=stride) + BLOCKS.get("basic")(in_ch=width, width=width, stride=1)[1:])
    STEMS.register("wide", label="wide stem")(STEMS.get("cifar"))
    cells = {}
    for i, (block, stem) in enumerate((("basic", "cifar"), ("triple", "wide"))):
        model = {"family": "cifar", "depth": 8, "block": block, "stem": stem, "shortcut": "identity"}
        cells[str(i)] = Cell(id=str(i), params={"model.block": block, "model.stem": stem}, order=i,
                             config={"model": model}, model=model, dataset="synthetic")
    _derive_attrs(cells, ["model.block", "model.stem"])
    assert [c.label for c in cells.values()] == ["ResNet-8 (basic, stem=cifar)", "ResNet-8 (3×3×3, stem=wide stem)"]


FAMILY_PLUGIN = """
from resnet_core.families import FAMILIES, Family
from resnet_core.stems import STEMS, cifar_stem

STEMS.register("tiny", input_size=64)(cifar_stem)  # 3×3/1, described at Tiny-ImageNet's 64×64
STEMS.register("bare")(cifar_stem)  # no input size: described at its family's stem's
FAMILIES.register("wrn2", label="WRN-k2")(Family(widths=(32, 64, 128), stem="cifar"))  # CIFAR layout, widths 16k…64k
FAMILIES.register("tiny4")(Family(widths=(8, 16, 32, 64), stem="tiny"))  # four stages: 8n+2 with basic blocks
"""


def test_a_registered_family_is_a_config_value_and_a_models_row(tmp_path, capsys):
    """A family is one registration, like the other parts: its stage layout, widths and stem follow from it, and its
    impossible depths are the one-line error the built-in ones give."""
    with pytest.raises(ConfigError, match=r"unknown model.family 'tiny4'; choose one of: cifar, imagenet"):
        ModelConfig(family="tiny4", depth=10)
    plugin = tmp_path / "families.py"
    plugin.write_text(FAMILY_PLUGIN)
    assert main(["models", "--plugin", str(plugin), "--set", "model.family=tiny4", "--set", "model.depth=10"]) == 0
    out = capsys.readouterr().out
    assert "ResNet-10 (tiny4, basic" in out and "stages=[1, 1, 1, 1], widths=[8, 16, 32, 64]" in out, out
    assert "stem: tiny" in out and "forward FLOPs at 64x64:" in out, out
    assert main(["models", "--set", "model.family=tiny4", "--set", "model.depth=10", "--set", "model.stem=bare"]) == 0
    assert "forward FLOPs at 64x64:" in capsys.readouterr().out  # a stem without a size: its family's stem's
    r = ModelConfig(family="wrn2", depth=14).resolved()
    assert (r.stages, r.widths, r.block, r.stem) == ([2, 2, 2], [32, 64, 128], "basic", "cifar")
    r = ModelConfig(family="tiny4", depth=14).resolved()  # only bottlenecks give it: 12n+2, not 8n+2
    assert (r.block, r.stages) == ("bottleneck", [1, 1, 1, 1])
    with pytest.raises(ConfigError, match=r"^model.depth 12 is impossible for family tiny4 with basic blocks: depth "
                                          r"must be 8n\+2 \(e.g. 10, 18, 26, 50\)$"):
        ModelConfig(family="tiny4", depth=12)
    with pytest.raises(ConfigError, match="tiny4"):  # the error's choices come from the registry
        ModelConfig(family="nope")


def test_train_runs_a_plugin_family(tmp_path):
    plugin = tmp_path / "families.py"
    plugin.write_text(FAMILY_PLUGIN)
    base = yaml.safe_load(EXAMPLE.read_text())["base"]
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump({**base, "model": {"family": "tiny4", "depth": 10}}))
    out = tmp_path / "run"
    assert main(["train", "--plugin", str(plugin), "--config", str(cfg), "--out", str(out)]) == 0
    model = yaml.safe_load((out / "config.yaml").read_text())["model"]
    assert (model["family"], model["depth"]) == ("tiny4", 10)
    assert read_summary(out)["provenance"]["plugins"][0]["plugin"] == str(plugin)


INIT_PLUGIN = """
from torch import nn
from resnet_core.inits import BIAS_INITS, INITS

@INITS.register("orthogonal", label="orthogonal (Saxe et al. 2014)")
def orthogonal_init(module):
    if isinstance(module, nn.Conv2d):
        nn.init.orthogonal_(module.weight)

@BIAS_INITS.register("small")
def small_bias(conv):
    nn.init.constant_(conv.bias, 0.01)
"""


def test_a_registered_init_is_a_config_value_and_a_models_row(tmp_path, capsys):
    """A weight init and a conv-bias init are one registration each, like the other parts (they were fixed tuples
    and branches in `_init_single`)."""
    with pytest.raises(ConfigError, match=r"^unknown model.init 'orthogonal'; choose one of: kaiming, xavier, "
                                          r"pytorch$"):
        ModelConfig(init="orthogonal")
    plugin = tmp_path / "inits.py"
    plugin.write_text(INIT_PLUGIN)
    assert main(["models", "--plugin", str(plugin), "--set", "model.init=orthogonal", "--set", "model.depth=8",
                 "--set", "model.bias_init=small", "--set", "model.conv_bias=true"]) == 0
    out = capsys.readouterr().out
    assert "init: orthogonal" in out and "bias_init: small" in out, out
    model = build_model(ModelConfig(depth=8, init="orthogonal", conv_bias=True, bias_init="small"))
    w = model.stage2.block0.conv1.weight.flatten(1)  # 32 rows of 16·9: orthonormal rows
    torch.testing.assert_close(w @ w.T, torch.eye(32), rtol=0, atol=1e-5)
    assert torch.all(model.stage2.block0.conv1.bias == 0.01)
    with pytest.raises(ConfigError, match="orthogonal"):  # the error's choices come from the registry
        ModelConfig(init="nope")


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("plugin, key, values, labels", [
    (FAMILY_PLUGIN, "model.family", ["cifar", "wrn2"], ["ResNet-8 (WRN-k2)", "ResNet-8 (cifar)"]),
    (INIT_PLUGIN, "model.init", ["kaiming", "orthogonal"], ["init=orthogonal (Saxe et al. 2014)", "init=kaiming"]),
], ids=["family", "init"])
def test_a_plugin_part_is_a_grid_axis_and_a_report_label(plugin, key, values, labels, tmp_path, monkeypatch, capsys):
    """A grid axis over a built-in and a plugin's part: one trial each, and each report row labelled by its
    registered label."""
    pytest.importorskip("optuna")
    import sweeps.launch.sweep

    monkeypatch.setattr(sweeps.launch.sweep, "log_summary_run", lambda *a, **k: None)
    (tmp_path / "part.py").write_text(plugin)
    grid = yaml.safe_load(EXAMPLE.read_text())
    grid.update(study="plugin-axis", plugins=["part.py"], grid={key: values})
    grid["base"]["model"] = {"family": "cifar", "depth": 8}
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    root = tmp_path / "runs"
    assert main(["sweep", str(path), "--root", str(root), "--workers", "1"]) == 0
    study = root / "plugin-axis"
    section, name = key.split(".")
    ran = sorted(yaml.safe_load(p.read_text())[section][name] for p in study.glob("trials/*/config.yaml"))
    assert ran == sorted(values)
    assert main(["report", "plugin-axis", "--root", str(root), "--format", "csv", "--no-figures"]) == 0
    capsys.readouterr()
    table = (study / "report" / "table.csv").read_text()
    for label in labels:
        assert label in table, (label, table)


BROKEN_FAMILIES = """
from resnet_core.families import FAMILIES, Family

FAMILIES.register("two_of_three")(Family(widths=(4, 8, 8), stem="cifar", stages=lambda **kw: (1, 1)))
FAMILIES.register("zero_stage")(Family(widths=(4, 8, 8), stem="cifar", stages=lambda **kw: (1, 0, 1)))
FAMILIES.register("positional")(Family(widths=(4, 8, 8), stem="cifar", stages=lambda depth, block: (1, 1, 1)))
FAMILIES.register("no_stem")(Family(widths=(4, 8, 8), stem="missing"))
FAMILIES.register("odd_block")(Family(widths=(4, 8, 8), stem="cifar", block=lambda **kw: "triple"))
"""


@pytest.mark.parametrize("name, needle", [
    ("two_of_three", "returns stages (1, 1) for depth 8 with basic blocks; it must return 3 positive integers, one "
                     "per width [4, 8, 8]"),
    ("zero_stage", "returns stages (1, 0, 1) for depth 8"),
    ("positional", "failed: TypeError: <lambda>() got an unexpected keyword argument"),
    ("no_stem", "names stem 'missing'; choose one of: cifar, imagenet"),
    ("odd_block", "picks block 'triple' for depth 8; choose one of: basic, bottleneck"),
])
def test_a_user_family_that_breaks_is_one_line_naming_it_before_anything_is_written(tmp_path, capsys, name, needle):
    plugin = tmp_path / "families.py"
    plugin.write_text(BROKEN_FAMILIES)
    base = yaml.safe_load(EXAMPLE.read_text())["base"]
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump({**base, "model": {"family": name, "depth": 8}}))
    out = tmp_path / "run"
    assert main(["train", "--plugin", str(plugin), "--config", str(cfg), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and f"model.family {name!r} (from {plugin})" in err, err
    assert needle in err, err
    assert not out.exists()
    assert main(["models", "--plugin", str(plugin), "--set", f"model.family={name}", "--set", "model.depth=8"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and f"model.family {name!r} (from {plugin})" in err, err


def _raised(make) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        make()
    return info.value


NEVER_LOADED = [{"plugin": "/elsewhere/never_loaded.py", "sha256": "0" * 64}]


def test_the_missing_plugin_hint_comes_only_with_an_unknown_part():
    """The hint was added to every error of a grid or checkpoint whose study or run had plugins (an unknown key, a
    bad seed): it now comes only with an error about a part no registry holds."""
    from resnet_core.data.config import DataConfig
    from resnet_core.errors import choices_error
    from resnet_core.plugins import missing_plugins_hint

    hint = missing_plugins_hint(NEVER_LOADED, "its run", _raised(lambda: ModelConfig(shortcut="gated")))
    assert hint == "; its run was trained with plugin /elsewhere/never_loaded.py: pass --plugin /elsewhere/never_loaded.py"
    for unknown_part in (lambda: DataConfig(name="mine"), lambda: ModelConfig(init="orthogonal"),
                         lambda: SHORTCUTS.get("gated")):
        assert missing_plugins_hint(NEVER_LOADED, "its run", _raised(unknown_part)) == hint
    for other in (ConfigError("seeds must be a non-empty list of integers"),
                  ConfigError("optim.momentum (0.5) needs optim.name sgd"),
                  choices_error("--wandb mode", "loud", ("off", "offline", "online")),
                  _raised(lambda: ModelConfig.from_dict({"shortcutt": "gated"}))):
        assert missing_plugins_hint(NEVER_LOADED, "its run", other) == ""


def test_an_error_that_only_reads_like_an_unknown_part_gets_no_hint():
    """The hint was decided by matching the message against "unknown model.X '" or "unknown data.X '", so a bad value
    of a key that no registry backs (data.loader: device or torch) was taken for a missing plugin's part, and so was
    any error that quotes such text; the error's type (`UnknownPartError`) decides now."""
    from resnet_core.data.config import DataConfig
    from resnet_core.plugins import missing_plugins_hint

    loader = _raised(lambda: DataConfig(loader="fast"))
    assert str(loader) == "unknown data.loader 'fast'; choose one of: device, torch"
    quoted = ConfigError("cell 0: unknown model.shortcut 'gated'; choose one of: identity")
    for error in (loader, quoted):
        assert missing_plugins_hint(NEVER_LOADED, "its run", error) == "", error


@pytest.mark.parametrize("grid, overrides", [
    ({"grid": {"model.shortcut": ["identity", "gated"]}}, []),
    ({"grid": {"model.depth": [8]}}, ["model.shortcut=gated"]),
    ({"search": {"model.shortcut": {"choice": ["identity", "gated"]}}, "n_trials": 2}, []),
])
def test_an_unknown_part_stays_one_through_the_grid_checks(tmp_path, grid, overrides):
    """A grid's checks add where the error is (the file, the cell, the search value) to its message: an unknown part
    stays an `UnknownPartError`, which is what lets `sweep` name the plugins its study recorded."""
    from resnet_core.errors import UnknownPartError
    from sweeps.spec.grid import load_grid

    d = {**yaml.safe_load(EXAMPLE.read_text()), "plugins": []}
    d.pop("grid")
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump({**d, **grid}))
    with pytest.raises(UnknownPartError, match=r"unknown model.shortcut 'gated'") as info:
        load_grid(path, overrides)
    assert str(info.value).startswith(f"{path}: ")
    path.write_text(yaml.safe_dump({**d, "grid": {"data.loader": ["device", "fast"]}}))
    error = _raised(lambda: load_grid(path))
    assert "unknown data.loader 'fast'" in str(error) and not isinstance(error, UnknownPartError)


NOT_MEMBER_AWARE = """
import torch
from torch import nn
from resnet_core.pooling import POOLINGS

class ScalarGeM(nn.Module):
    def __init__(self):
        super().__init__()
        self.p = nn.Parameter(torch.tensor(3.0))

    def forward(self, x):
        return x.clamp(min=1e-6).pow(self.p).mean((2, 3)).pow(1.0 / self.p)

class MixPool(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.mix = nn.Linear(width, width)

    def forward(self, x):
        return self.mix(x.mean((2, 3)))

@POOLINGS.register("scalar_gem")
def scalar_gem(*, channels, members):
    return ScalarGeM()

@POOLINGS.register("mix_all")
def mix_all(*, channels, members):
    return MixPool(channels * members)
"""


def _assert_a_fused_sweep_is_refused(tmp_path: Path, capsys: Any, plugin: Path, pooling: str,
                                     needle: str) -> tuple[Path, Path]:
    """A sweep of the plugin's pooling at 2 seeds with --fuse 2 exits 2 in one line naming ``needle``, the plugin
    and --fuse off, with nothing written; the grid file and the root it would have written."""
    grid = yaml.safe_load(EXAMPLE.read_text())
    grid.update(plugins=[str(plugin)], grid={"model.pooling": [pooling]}, seeds=[0, 1])
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    root = tmp_path / "runs"
    assert main(["sweep", str(path), "--root", str(root), "--fuse", "2", "--workers", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and needle in err and str(plugin) in err, err
    assert "--fuse off" in err and not root.exists()
    return path, root


@pytest.mark.parametrize("pooling, needle", [
    ("scalar_gem", "parameter pool.p is one number (0-d) that all 2 members would share"),
    ("mix_all", "pool.mix.weight is [16, 16] where 2 members of [8, 8] stack to [16, 8]"),
])
def test_a_part_that_is_not_member_aware_is_refused_as_fused_members(tmp_path, capsys, pooling, needle):
    """A part right alone but not member-major when fused — a 0-d parameter every member would share and train
    together (a silent wrong answer), a layer over all members' channels (a state-dict traceback) — is one line
    from build_model, and a sweep that would fuse it exits 2 naming it before anything is written."""
    plugin = tmp_path / "parts.py"
    plugin.write_text(NOT_MEMBER_AWARE)
    plugins_mod.load_plugin(str(plugin))
    cfg = ModelConfig(family="cifar", depth=8, widths=[4, 8, 8], pooling=pooling)
    build_model(cfg)   # alone it is a model
    with pytest.raises(ConfigError, match=r"cannot train as 2 fused members: " + re.escape(needle)):
        build_model(cfg, members=2, seeds=[0, 1])
    _assert_a_fused_sweep_is_refused(tmp_path, capsys, plugin, pooling, needle)


NOT_MEMBER_AWARE_IN_FORWARD = """
import torch
from torch import nn
from resnet_core.pooling import POOLINGS

class DropGAP(nn.Module):   # a random part: fused members share its draws
    def forward(self, x):
        out = x.mean((2, 3))
        return out * (torch.rand(out.shape[0], 1) > 0.1) if self.training else out

class CenteredGAP(nn.Module):   # no parameter, but each member's features are centred on every member's mean
    def forward(self, x):
        return x.mean((2, 3)) - x.mean((1, 2, 3))[:, None]

@POOLINGS.register("drop_gap")
def drop_gap(*, channels, members):
    return DropGAP()

@POOLINGS.register("centered_gap")
def centered_gap(*, channels, members):
    return CenteredGAP()
"""


@pytest.mark.parametrize("pooling,needle", [
    ("drop_gap", "a part draws random numbers in its forward (torch's generator): fused members would share"),
    ("centered_gap", "member 0's logits differ from its own model's on its own images by "),
])
def test_a_part_whose_forward_is_not_member_aware_is_refused_before_a_sweep_fuses_it(tmp_path, capsys, pooling,
                                                                                      needle):
    """A part whose fused tensors are member-major but whose forward is not — one that draws random numbers (each
    separate run draws from its own seed; fused members share one draw), one that mixes the members' channels
    without a parameter — passed the build check: each trial then failed at run time on the fast-path guard. A
    sweep that would fuse it exits 2 naming it before anything is written; unfused it trains."""
    from resnet_core.feasibility import check_fusable

    plugin = tmp_path / "parts.py"
    plugin.write_text(NOT_MEMBER_AWARE_IN_FORWARD)
    plugins_mod.load_plugin(str(plugin))
    cfg = ModelConfig(family="cifar", depth=8, widths=[4, 8, 8], pooling=pooling)
    build_model(cfg, members=2, seeds=[0, 1])    # its tensors are member-major
    with pytest.raises(ConfigError, match=re.escape(needle)):
        check_fusable(cfg, 2, size=8)
    check_fusable(ModelConfig(family="cifar", depth=8, widths=[4, 8, 8], pooling="gem"), 2)   # built in: passes
    path, root = _assert_a_fused_sweep_is_refused(tmp_path, capsys, plugin, pooling, needle)
    assert main(["sweep", str(path), "--root", str(root), "--fuse", "off", "--workers", "1"]) == 0


def test_a_member_aware_plugin_part_passes_the_fused_forward_check(tmp_path, capsys):
    """The gated shortcut (a [G] gate per member) computes, fused, what each member's own model computes: the
    check that refuses random and member-mixing parts lets it fuse, on 1-channel images of 10 classes too (the
    check builds the model with the dataset's channels and classes, not the config's default 3 and 10)."""
    from resnet_core.feasibility import check_fusable

    plugins_mod.load_plugin(str(EXAMPLE_PLUGIN))
    check_fusable(ModelConfig(family="cifar", depth=8, widths=[4, 8, 8], shortcut="gated"), 4, size=8)
    grid = yaml.safe_load(EXAMPLE.read_text())
    grid["base"]["data"]["synthetic"].update(channels=1, num_classes=5)
    grid.update(plugins=[str(EXAMPLE_PLUGIN)], grid={"model.shortcut": ["gated"]}, seeds=[0, 1])
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    assert main(["sweep", str(path), "--root", str(tmp_path / "runs"), "--fuse", "2", "--dry-run"]) == 0, \
        capsys.readouterr().err
    assert "1 fused" in capsys.readouterr().out


FLOAT32_PART = """
import torch
from torch import nn
from resnet_core.pooling import POOLINGS

class Float32GAP(nn.Module):   # member-aware, but returns float32 whatever it is given
    def forward(self, x):
        return x.mean((2, 3)).to(torch.float32)

class RaisingGAP(nn.Module):   # fails on real tensors (a meta forward passes)
    def forward(self, x):
        if x.device.type != "meta":
            raise RuntimeError("no real tensors here")
        return x.mean((2, 3))

@POOLINGS.register("float32_gap")
def float32_gap(*, channels, members):
    return Float32GAP()

@POOLINGS.register("raising_gap")
def raising_gap(*, channels, members):
    return RaisingGAP()
"""


def test_the_fused_forward_check_of_a_part_that_fails_in_float64_runs_in_float32(tmp_path):
    """A member-aware part that only works in float32 is compared in float32 (not refused for failing in float64);
    one whose forward fails on real tensors is a one-line refusal naming what it raised, not a traceback."""
    from resnet_core.feasibility import check_fusable

    plugin = tmp_path / "f32.py"
    plugin.write_text(FLOAT32_PART)
    plugins_mod.load_plugin(str(plugin))
    check_fusable(ModelConfig(family="cifar", depth=8, widths=[4, 8, 8], pooling="float32_gap"), 2, size=8)
    with pytest.raises(ConfigError, match=r"fused forward raised RuntimeError: no real tensors here; .*--fuse off"):
        check_fusable(ModelConfig(family="cifar", depth=8, widths=[4, 8, 8], pooling="raising_gap"), 2, size=8)
    # images of a shape not known before they load (an ImageFolder tree, perhaps grayscale): a forward that fails
    # on the stand-in shape is no verdict
    check_fusable(ModelConfig(family="cifar", depth=8, widths=[4, 8, 8], pooling="raising_gap"), 2)
