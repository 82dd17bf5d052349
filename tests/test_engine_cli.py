"""The engine's command line: train, eval, lesion, probe and bench, and one-line config errors."""
from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from resnet_core.cli import main
from resnet_core.config import ModelConfig
from resnet_core.model import build_model
from resnet_core.record import read_metrics, read_summary

from run_configs import BAD_ASSIGNMENTS

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
SMOKE = str(REPO / "ablations" / "recipes" / "smoke.yaml")
# the smoke recipe, shrunk: ResNet-8, 384 training images, 2 epochs of 12 steps (its SGD: the recipe writes SGD's
# momentum, which an optim.name=adam here would leave unread, a refused input)
TINY = ["--set", "data.synthetic.n_train=384", "--set", "data.synthetic.n_test=200", "--set", "model.depth=8",
        "--set", "schedule.total=2", "--set", "batch_size=32"]


def percent(text: str, label: str) -> float:
    match = re.search(rf"{label} ([\d.]+)%", text)
    assert match, text
    return float(match.group(1))


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory) -> tuple[Path, str]:
    """`resnet-ablate train --config smoke.yaml --set … --out DIR`, run once for this module."""
    out = tmp_path_factory.mktemp("cli") / "smoke"
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(["train", "--config", SMOKE, *TINY, "--out", str(out)])
    assert code == 0, stderr.getvalue()[-2000:]
    return out, stdout.getvalue()


def test_cli_train_writes_a_run_and_prints_a_summary_line(cli_run):
    out, stdout = cli_run
    summary_lines = [line for line in stdout.splitlines() if line.startswith("smoke: ")]
    assert len(summary_lines) == 1, stdout
    line = summary_lines[0]
    s = read_summary(out)
    assert s["status"] == "complete" and s["step"] == s["total_steps"] == 24
    assert line.startswith("smoke: complete at step 24/24 on eager, ") and " | test error " in line
    assert percent(line, "test error") == pytest.approx(s["final_test_error"], abs=0.005)
    assert percent(line, "train error") == pytest.approx(s["final_train_error"], abs=0.005)
    assert f"{s['params']:,} params" in line and str(out) in line
    for name in ("config.yaml", "metrics.jsonl", "summary.json", "last.pt"):
        assert (out / name).is_file()
    assert not (out / "best.pt").exists()  # no val split: nothing may be chosen on the test set
    assert s["test_error_at_best_val"] is None and "at best val n/a" in line
    # the overrides reached the run
    assert s["params"] == sum(p.numel() for p in build_model(ModelConfig(depth=8)).parameters())
    assert any(r["split"] == "grad_norm" for r in read_metrics(out))


def test_cli_eval_prints_the_test_error(cli_run, capsys):
    out, _ = cli_run
    assert main(["eval", str(out / "last.pt"), "--device", "cpu"]) == 0
    printed, said = capsys.readouterr()
    # it says what it is doing, on stderr: the dataset, then each split with its size
    assert said.splitlines()[0].startswith(f"eval: loading the dataset of {out / 'last.pt'} (synthetic)")
    assert any(line.startswith("eval: test split (") and "images) on cpu" in line for line in said.splitlines())
    assert "(step 24, " in printed
    test_line = next(line for line in printed.splitlines() if line.startswith("test:"))
    assert percent(test_line, "error") == pytest.approx(read_summary(out)["final_test_error"], abs=0.005)


def test_cli_eval_and_lesion_of_a_copied_checkpoint_read_its_data_where_it_lies_here(tmp_path, capsys):
    """A checkpoint trained on a cifar10_jpeg archive (or an imagefolder tree) at a data.path that the machine it
    was copied to does not have: eval and lesion said "set data.path to it", which neither command could. With
    --data-path (and --data-root) they read the run's data where it lies here; the rest of the run config is its
    own, and a data.path the run's dataset does not read is refused."""
    from resnet_core.data import LabeledImages, write_jpeg_archive

    g = torch.Generator().manual_seed(0)
    images = lambda n: torch.randint(0, 256, (n, 3, 16, 16), dtype=torch.uint8, generator=g)  # noqa: E731
    there = tmp_path / "cluster" / "c10.npz"
    there.parent.mkdir()
    write_jpeg_archive(there, LabeledImages(images(64), torch.arange(64) % 4),
                       LabeledImages(images(32), torch.arange(32) % 4), ["a", "b", "c", "d"])
    run = tmp_path / "run"
    assert main(["train", "--config", SMOKE, *TINY, "--set", "data.name=cifar10_jpeg", "--set", f"data.path={there}",
                 "--set", "data.synthetic=null",   # the synthetic set's options would have no effect: refused
                 "--set", "schedule.total=1", "--out", str(run)]) == 0
    here = tmp_path / "laptop" / "my copy.npz"
    here.parent.mkdir()
    there.rename(here)
    capsys.readouterr()
    assert main(["eval", str(run / "last.pt"), "--device", "cpu"]) == 2
    assert "--data-path" in capsys.readouterr().err
    assert main(["eval", str(run / "last.pt"), "--device", "cpu", "--data-path", str(here)]) == 0
    test_line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("test:"))
    assert percent(test_line, "error") == pytest.approx(read_summary(run)["final_test_error"], abs=0.005)
    assert main(["lesion", str(run / "last.pt"), "--device", "cpu", "--data-path", str(here), "--out",
                 str(tmp_path / "lesion.csv")]) == 0
    assert (tmp_path / "lesion.csv").is_file()
    capsys.readouterr()
    assert main(["eval", str(run / "last.pt"), "--device", "cpu", "--data-root", str(tmp_path / "laptop")]) == 2
    err = capsys.readouterr().err   # data.path wins over data.root, as in training: the root would have no effect
    assert "data.root" in err and "cifar10_jpeg without data.path" in err and "no effect" in err, err


@pytest.mark.parametrize("mode, classes, prefix, says", [
    ("L", 2, "c", "1 channels"), ("RGB", 3, "c", "3 classes"),
    ("RGB", 2, "k", "label 0 is class 'k0' here but 'c0' in the run's dataset")])
def test_cli_eval_and_lesion_refuse_a_data_path_to_a_dataset_the_model_was_not_built_for(tmp_path, capsys, mode,
                                                                                         classes, prefix, says):
    """--data-path pointing at another dataset than the run's: a grayscale tree for an RGB run's model crashed the
    first convolution with a traceback, and one more class crashed the loss ("Target 2 is out of bounds"); a tree
    of as many classes under other names was scored silently, label by label, against the wrong classes. Each is
    refused in one line naming what differs (the class names by label are in the checkpoint), before any
    evaluation or lesion table."""
    from PIL import Image

    rng = np.random.default_rng(0)

    def tree(root: Path, mode: str, k: int, prefix: str = "c") -> Path:
        for split in ("train", "test"):
            for c in range(k):
                (root / split / f"{prefix}{c}").mkdir(parents=True)
                for i in range(8):
                    pixels = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
                    Image.fromarray(pixels).convert(mode).save(root / split / f"{prefix}{c}" / f"{i}.png")
        return root

    run = tmp_path / "run"
    assert main(["train", "--config", SMOKE, *TINY, "--set", "data.name=imagefolder", "--set",
                 f"data.path={tree(tmp_path / 'own', 'RGB', 2)}", "--set", "data.synthetic=null",
                 "--set", "batch_size=8", "--set", "schedule.total=1", "--out", str(run)]) == 0
    assert torch.load(run / "last.pt", map_location="cpu", weights_only=True)["classes"] == ["c0", "c1"]
    other = tree(tmp_path / "other", mode, classes, prefix)
    for argv in (["eval", str(run / "last.pt")], ["lesion", str(run / "last.pt"), "--out", str(tmp_path / "l.csv")]):
        capsys.readouterr()
        assert main([*argv, "--device", "cpu", "--data-path", str(other)]) == 2
        err = capsys.readouterr().err
        assert says in err and "Traceback" not in err and err.count("error:") == 1, err
    assert not (tmp_path / "l.csv").exists()


def test_cli_eval_refuses_a_data_path_its_dataset_does_not_read(cli_run, capsys):
    out, _ = cli_run
    assert main(["eval", str(out / "last.pt"), "--device", "cpu", "--data-path", "/x.npz"]) == 2
    err = capsys.readouterr().err
    assert "data.path" in err and "no effect" in err and len(err.strip().splitlines()) == 1


def test_cli_lesion_writes_one_row_per_block(cli_run, capsys):
    import pandas as pd  # here, not at the top: only the two CSV tests need it (~0.5 s to import)

    out, _ = cli_run
    assert main(["lesion", str(out / "last.pt"), "--device", "cpu"]) == 0
    printed, said = capsys.readouterr()
    assert f"wrote {out / 'lesion.csv'}" in printed
    table = pd.read_csv(out / "lesion.csv")
    state = torch.load(out / "last.pt", map_location="cpu", weights_only=True)
    blocks = [n for n, _ in build_model(ModelConfig.from_dict(state["model_config"])).blocks()]
    assert list(table.columns) == ["model", "study", "run", "block", "block_index", "lesionable", "test_error",
                                   "baseline_error", "nonfinite_images"]
    assert (table.model == "ResNet-8, seed 0").all()
    assert table.study.isna().all() and (table.run == ".").all()  # not in a study folder; the table lies in its run
    assert table.lesionable.all()  # a residual net: every block falls back on its shortcut
    assert table.block.tolist() == blocks and table.block_index.tolist() == list(range(len(blocks)))
    baseline = read_summary(out)["final_test_error"]  # last.pt is the final step's checkpoint
    assert (table.baseline_error == baseline).all()
    assert (table.test_error != table.baseline_error).any(), "deleting a residual block changed nothing"
    # it says what it is doing: one line per evaluation, the intact net first, then each block it deletes
    steps = [line for line in said.splitlines() if line.startswith("lesion [1/1]: test error")]
    n = len(blocks) + 1
    assert steps[0].startswith(f"lesion [1/1]: test error intact (1/{n}, ")
    assert [s.split("without ")[1].split(" (")[0] for s in steps[1:]] == blocks and f"({n}/{n}, " in steps[-1]


def test_cli_lesion_rows_name_their_study_and_run(cli_run, tmp_path, capsys):
    """Each row names the study (from its study folder's owner record) and the run folder (relative to the table):
    two studies' runs of one architecture and seed no longer read as one model (a tester's 'ResNet-8, seed 0' rows
    from runs/tiny and runs/part, with two intact baselines)."""
    import json
    import shutil

    import pandas as pd

    out, _ = cli_run
    for study in ("tiny", "part"):
        run = tmp_path / "runs" / study / "trials" / "depth-8-s0"
        shutil.copytree(out, run, ignore=shutil.ignore_patterns("*.csv"))
        (run.parents[1] / "owner.json").write_text(json.dumps({"study": study, "study_id": f"id-{study}"}))
    table_path = tmp_path / "runs" / "tiny" / "lesion.csv"
    assert main(["lesion", str(tmp_path / "runs/tiny/trials/depth-8-s0/last.pt"),
                 str(tmp_path / "runs/part/trials/depth-8-s0/last.pt"), "--device", "cpu",
                 "--out", str(table_path)]) == 0
    capsys.readouterr()
    table = pd.read_csv(table_path)
    assert table.groupby(["study", "run"], sort=False).size().to_dict() == {
        ("tiny", "trials/depth-8-s0"): 3, ("part", "../part/trials/depth-8-s0"): 3}


@pytest.mark.parametrize("where, resume", [("runs/tiny", False), ("runs/tiny", True),
                                           ("runs/tiny/trials/mine", False)])
def test_cli_train_refuses_a_study_folder_as_out(where, resume, tmp_path, capsys):
    """`train --out runs/<study>` trained a run into the study folder itself, beside its journal and owner record
    (and `--out runs/<study>/trials/<new>` among its trials, where `lesion` then named the run after the study):
    a run that is no trial of the study, mixed into its records. Both are refused before anything is written."""
    import json

    study = tmp_path / "runs" / "tiny"
    (study / "trials").mkdir(parents=True)
    (study / "owner.json").write_text(json.dumps({"study": "tiny", "study_id": "id-tiny"}))
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert main(["train", "--config", SMOKE, *TINY, "--out", str(tmp_path / where),
                 *(["--resume"] if resume else [])]) == 2
    err = capsys.readouterr().err
    assert "study 'tiny'" in err and "choose another --out" in err and err.count("\n") == 1, err
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_cli_lesion_refuses_one_run_twice(cli_run, tmp_path, capsys):
    """The same checkpoint twice, or two checkpoints of one run (last.pt and best.pt): one line, exit 2, before any
    evaluation, nothing written (its rows were in the table twice)."""
    import shutil

    out, _ = cli_run
    shutil.copy(out / "last.pt", tmp_path / "last.pt")
    shutil.copy(out / "last.pt", tmp_path / "best.pt")
    table = tmp_path / "l.csv"
    for pair, words in (((tmp_path / "last.pt", tmp_path / "last.pt"), ("last.pt", "given twice")),
                        ((tmp_path / "last.pt", tmp_path / "best.pt"), ("best.pt", "checkpoints of one run"))):
        code = main(["lesion", *map(str, pair), "--device", "cpu", "--out", str(table)])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and err.startswith("error: lesion: "), err
        assert all(w in err for w in words), err
        assert not table.exists()


def _nan_checkpoint(run: Path, into: Path) -> Path:
    """A copy of ``run`` (its record too) whose classifier weights are NaN."""
    import shutil

    shutil.copytree(run, into, ignore=shutil.ignore_patterns("*.csv"))
    state = torch.load(into / "last.pt", map_location="cpu", weights_only=True)
    state["model"]["fc.weight"].fill_(float("nan"))
    torch.save(state, into / "last.pt")
    return into / "last.pt"


def test_cli_eval_and_lesion_refuse_a_model_whose_outputs_are_nan(cli_run, tmp_path, capsys):
    """NaN weights: `eval` printed 'test: error 75.00%  loss nan' (argmax over NaN) and exited 0. Now one line saying
    the outputs are not finite, on which split and how many images, exit 1; `lesion` writes no table."""
    out, _ = cli_run
    ckpt = _nan_checkpoint(out, tmp_path / "nan")
    code = main(["eval", str(ckpt), "--device", "cpu"])
    printed, err = capsys.readouterr()
    assert code == 1 and "error" not in printed, printed
    line = err.splitlines()[-1]
    assert line.startswith(f"error: {ckpt}: the model's outputs are not finite (NaN or inf) on the test split "
                           f"(200 of 200 images)") and "no error rate is reported" in line, err
    code = main(["lesion", str(ckpt), "--device", "cpu", "--out", str(tmp_path / "l.csv")])
    line = capsys.readouterr().err.splitlines()[-1]
    assert code == 1 and "not finite" in line and "with no block deleted" in line and "200 of 200" in line, line
    assert not (tmp_path / "l.csv").exists()


def test_cli_lesion_keeps_a_block_whose_deletion_gives_nan_outputs_as_a_row_and_says_so(cli_run, tmp_path, capsys,
                                                                                          monkeypatch):
    """Deleting one block makes the outputs NaN (here a hook on that block while it is deleted, through the real
    evaluation): the table was refused whole, losing every other block. Now that row counts its NaN images as errors
    (100 %), says how many, and a note names it; the other rows are the lesion of the intact weights."""
    import resnet_core.lesion as lesion

    out, _ = cli_run
    real = lesion.evaluate_outputs

    def nan_when_stage2_is_deleted(model, *args, **kw):
        block = dict(model.blocks())["stage2.block0"]
        hook = block.register_forward_hook(lambda m, i, o: o * float("nan") if m.lesioned else o)
        try:
            return real(model, *args, **kw)
        finally:
            hook.remove()

    monkeypatch.setattr(lesion, "evaluate_outputs", nan_when_stage2_is_deleted)
    csv = tmp_path / "l.csv"
    assert main(["lesion", str(out / "last.pt"), "--device", "cpu", "--out", str(csv)]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"note: .*last\.pt: with stage2\.block0 deleted, 200 of 200 images gave NaN or inf outputs: "
                     r"counted as errors \(100\.00 %\)", printed), printed
    table = pd.read_csv(csv).set_index("block")
    assert table.loc["stage2.block0", "test_error"] == 100.0 and table.loc["stage2.block0", "nonfinite_images"] == 200
    assert (table.drop(index="stage2.block0")["nonfinite_images"] == 0).all()
    assert table["test_error"].drop(index="stage2.block0").between(0, 100).all()


@pytest.fixture(scope="module")
def bf16_test_picked_run(tmp_path_factory) -> Path:
    """A finished tiny run in bf16 autocast (channels_last where it pays) whose best.pt was picked on the test set."""
    from resnet_core.engine import train
    from resnet_core.overrides import apply_overrides

    cfg = apply_overrides({"name": "bf16", "device": "cpu", "seed": 0, "batch_size": 32, "eval_batch_size": 250,
                           "eval_every": 1, "log_every": 4},
                          ["data.name=synthetic", "data.synthetic.image_size=16", "data.synthetic.n_train=256",
                           "data.synthetic.n_test=500", "model.depth=8", "schedule.total=3", "optim.name=adam",
                           "optim.lr=0.005", "precision=bf16", "best_on=test"])
    out = tmp_path_factory.mktemp("bf16") / "run"
    assert train(cfg, out).status == "complete"
    return out


def _test_row(out: Path) -> tuple[float, float]:
    """The recorded (error, loss) of the run's final test evaluation."""
    rows = [r for r in read_metrics(out) if r["split"] == "test"]
    last = max(r["step"] for r in rows)
    return tuple(next(r["value"] for r in rows if r["step"] == last and r["name"] == n) for n in ("error", "loss"))


def test_cli_eval_reproduces_the_recorded_test_error_in_the_runs_precision(bf16_test_picked_run, capsys):
    """`eval` of last.pt gives the final test error the run recorded, within round-off: in the precision (and memory
    format) the run evaluated in, named in its line. Before: fp32 without autocast (a tester's 65.60 vs 66.00 %)."""
    out = bf16_test_picked_run
    n_test, (error, loss) = 500, _test_row(out)
    assert main(["eval", str(out / "last.pt"), "--device", "cpu"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("test:"))
    assert "bf16" in line
    assert abs(percent(line, "error") - error) < 100 / n_test / 2  # less than half an image: the same images wrong
    assert float(line.split("loss ")[1].split()[0]) == pytest.approx(loss, abs=6e-5)  # as printed, 4 decimals
    assert main(["eval", str(out / "last.pt"), "--device", "cpu", "--precision", "fp32"]) == 0
    assert "fp32" in next(x for x in capsys.readouterr().out.splitlines() if x.startswith("test:"))


def test_cli_eval_and_lesion_say_a_best_pt_was_picked_on_the_test_set(bf16_test_picked_run, capsys):
    out = bf16_test_picked_run
    assert main(["eval", str(out / "best.pt"), "--device", "cpu"]) == 0
    notes = [x for x in capsys.readouterr().out.splitlines() if "selected on the test set" in x]
    assert len(notes) == 1 and "optimistic" in notes[0] and "best_on: test" in notes[0]
    assert main(["eval", str(out / "last.pt"), "--device", "cpu"]) == 0
    assert "selected on the test set" not in capsys.readouterr().out  # the last step's checkpoint: picked on nothing
    assert main(["lesion", str(out / "best.pt"), "--device", "cpu", "--out", str(out / "l.csv")]) == 0
    notes = [x for x in capsys.readouterr().out.splitlines() if "selected on the test set" in x]
    assert len(notes) == 1 and "baseline" in notes[0]


def test_cli_lesion_missing_checkpoint_is_a_one_line_error(tmp_path, capsys):
    assert main(["lesion", str(tmp_path / "nope.pt")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: checkpoint not found") and err.count("\n") == 1
    # a run folder instead of its checkpoint: named as a folder, with the checkpoints it holds
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "last.pt").write_bytes(b"")
    for command in ("lesion", "eval"):
        assert main([command, str(tmp_path / "run")]) == 2
        err = capsys.readouterr().err
        assert err == f"error: {tmp_path / 'run'} is a folder, not a checkpoint: give {tmp_path / 'run' / 'last.pt'}\n"


def test_cli_probe_writes_the_documented_csv(tmp_path, capsys):
    import pandas as pd  # here, not at the top: only the two CSV tests need it (~0.5 s to import)

    out = tmp_path / "probe.csv"
    code = main(["probe", "--depths", "8,14", "--out", str(out), "--seeds", "1", "--batch-size", "16",
                 "--device", "cpu", "--set", "data.synthetic.n_train=64", "--set", "data.synthetic.n_test=10"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "plain/residual" in printed and f"wrote {out}" in printed
    table = pd.read_csv(out)
    assert list(table.columns) == ["family", "depth", "shortcut", "activation", "layer_index", "layer", "grad_norm"]
    for depth in (8, 14):
        for shortcut in ("none", "identity"):
            rows = table[(table.depth == depth) & (table.shortcut == shortcut)]
            layers = [n for n, _ in build_model(ModelConfig(depth=depth, shortcut=shortcut)).probe_layers()]
            assert rows.layer.tolist() == layers and rows.layer_index.tolist() == list(range(len(layers)))
    assert set(table.family) == {"cifar"} and set(table.activation) == {"post"}
    assert (table.grad_norm > 0).all()


def test_cli_probe_bad_depths(tmp_path, capsys):
    assert main(["probe", "--depths", "8,x", "--out", str(tmp_path / "p.csv")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --depths") and err.count("\n") == 1
    assert main(["probe", "--depths", "9", "--out", str(tmp_path / "p.csv"), "--seeds", "1", "--device", "cpu",
                 "--set", "data.synthetic.n_train=32"]) == 2
    assert "model.depth 9" in capsys.readouterr().err


@pytest.mark.parametrize("argv, says", [
    (["probe", "--depths", "8", "--seeds", "0"], "--seeds must be an integer ≥ 1, got 0"),
    (["probe", "--depths", "8", "--seeds", "-1"], "--seeds must be an integer ≥ 1, got -1"),
    (["probe", "--depths", "8", "--batch-size", "0"], "--batch-size must be an integer ≥ 1, got 0"),
    (["probe", "--depths", ""], "--depths must be comma-separated integers ≥ 1"),
    (["probe", "--depths", "8,-20"], "--depths must be comma-separated integers ≥ 1"),
    (["bench", "--depths", "8,x"], "--depths must be comma-separated integers ≥ 1"),
    (["bench", "--members", "0"], "--members must be comma-separated integers ≥ 1"),
    (["bench", "--threads", "two"], "--threads must be comma-separated integers ≥ 1"),
    (["bench", "--steps", "0"], "--steps must be an integer ≥ 1, got 0"),
    (["bench", "--warmup", "-1"], "--warmup must be an integer ≥ 0, got -1"),
    (["bench", "--rounds", "0"], "--rounds must be an integer ≥ 1, got 0"),
    # a device given by --set beside --device: one of them was ignored without a word
    (["probe", "--depths", "8", "--set", "device=auto"], "probe: --set device=auto has no effect here; use --device"),
    # a key probe does not use, or sets itself: taken without a word before
    (["probe", "--depths", "8", "--set", "optim.lr=5"], "probe: --set optim.lr has no effect here (probe does not "
                                                        "train)"),
    (["probe", "--depths", "8", "--set", "model.depth=20"], "probe: --set model.depth has no effect here (--depths "
                                                            "sets it)"),
    (["probe", "--depths", "8", "--set", "model={shortcut: conv1x1}"], "probe: --set model.shortcut has no effect"),
    (["probe", "--depths", "8", "--set", "data.augment=flip"], "probe: --set data.augment has no effect"),
    (["train", "--set", "device=auto"], "device given twice (--set device=auto and --device cpu): give one"),
])
def test_probe_and_bench_counts_are_checked_before_anything_runs(argv, says, tmp_path, capsys):
    """A count of 0 or below gave probe an empty table (a pandas KeyError traceback) and bench a ValueError."""
    assert main([*argv, "--device", "cpu", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {says}\n" or (err.startswith(f"error: {says}") and err.count("\n") == 1), err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv, says", [
    (["--fast", "nope"], "unknown fast 'nope'"),
    (["--data", "nope"], "unknown data.name 'nope'"),
    (["--set", "model.foo=1"], "unknown model key 'foo'"),
    (["--set", "label_smoothing=1.5"], "label_smoothing"),
    (["--depths", "8,9"], "model.depth 9 is impossible"),
    # a key bench sets itself: every row was measured with the --set value under the flag's label, or without a word
    (["--depths", "20", "--set", "model.depth=8"], "bench: --set model.depth has no effect here (--depths sets it)"),
    (["--set", "model={depth: 14}"], "bench: --set model.depth has no effect here"),
    (["--set", "batch_size=32"], "bench: --set batch_size has no effect here (--batch-size sets it)"),
    (["--set", "probes=false"], "bench: --set probes has no effect here (bench measures with and without"),
    (["--set", "seed=3"], "bench: --set seed has no effect here"),
])
@pytest.mark.parametrize("members", ["1", "2"])
def test_bench_run_configs_are_checked_before_anything_is_measured(argv, says, members, tmp_path, capsys,
                                                                   monkeypatch):
    """A bad --fast, --data or --set, or a depth the family cannot build, was refused only when its run config was
    first built: on a CPU after the matmul peak and every earlier depth had been measured (minutes on a busy
    machine), so an input error cost a whole measurement before its one line."""
    import resnet_core.bench as bench
    import resnet_core.bench_cpu as bench_cpu

    def measured(*_a, **_k):
        raise AssertionError("measured before the input was checked")

    for module, name in ((bench_cpu, "peak_gflops"), (bench, "engine_timer"), (bench, "seed_style_timer")):
        monkeypatch.setattr(module, name, measured)
    assert main(["bench", "--depths", "8", "--members", members, "--steps", "1", "--device", "cpu", *argv,
                 "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and says in err and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()


def test_cli_bench_prints_a_row(capsys):
    # --fast eager: the bench configures a full-length run, for which auto compiles on a CPU (inductor's C++ build
    # would cost this test a minute; the compile path has its own tests in test_cpu_speed.py)
    code = main(["bench", "--depths", "8", "--steps", "3", "--warmup", "1", "--members", "1,2", "--no-seed-style",
                 "--batch-size", "16", "--set", "data.synthetic.n_train=128", "--set", "data.synthetic.image_size=16",
                 "--fast", "eager"])
    assert code == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("resnet8")]
    assert len(rows) == 1
    for key in ("batch=16", "engine_G1=", "engine_G2=", "probe_overhead_%="):
        assert key in rows[0], rows[0]
    assert "seed_style" not in rows[0]


# -- one-line config errors -------------------------------------------------------------------------------------
BAD = [*BAD_ASSIGNMENTS, ("device=tpu", "device")]   # the device: refused where the run resolves it


@pytest.mark.parametrize("assignment,key", BAD, ids=[b[0] for b in BAD])
def test_cli_bad_config_is_one_line_and_exit_2(assignment, key, tmp_path, capsys):
    code = main(["train", "--config", SMOKE, *TINY, "--set", assignment, "--out", str(tmp_path / "run")])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.err.startswith("error: ") and captured.err.count("\n") == 1, captured.err
    assert key in captured.err
    assert "Traceback" not in captured.err and captured.out == ""
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_cli_config_file_errors(tmp_path, capsys):
    assert main(["train", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert capsys.readouterr().err.startswith("error: config file not found")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {depth: [1, 2\n")
    assert main(["train", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "not valid YAML" in err and err.count("\n") == 1
    assert main(["train", "--config", SMOKE, "--resume"]) == 2
    assert "--resume needs --out" in capsys.readouterr().err
    assert main(["train", "--config", SMOKE, "--set", "model.depth"]) == 2
    assert "key=value" in capsys.readouterr().err


def test_cli_diverged_run_exits_nonzero(tmp_path, capsys):
    code = main(["train", "--config", SMOKE, *TINY, "--set", "optim.name=sgd", "--set", "optim.lr=1e6",
                 "--out", str(tmp_path / "nan")])
    assert code == 1
    assert "smoke: diverged at step" in capsys.readouterr().out
    assert read_summary(tmp_path / "nan")["status"] == "diverged"


def test_cli_resume_continues_a_finished_run_unchanged(cli_run, tmp_path, capsys):
    """--resume on a complete run reloads last.pt and has nothing left to do."""
    out, _ = cli_run
    before, summary = list(read_metrics(out)), read_summary(out)
    assert main(["train", "--config", SMOKE, *TINY, "--out", str(out), "--resume"]) == 0
    line = capsys.readouterr().out.splitlines()[-1]
    assert line.startswith("smoke: complete at step 24/24")
    assert list(read_metrics(out)) == before
    after = read_summary(out)
    for key in ("status", "step", "final_test_error", "test_error_at_best_val", "final_train_error", "final_train_loss"):
        assert after[key] == summary[key], key
    assert percent(line, "test error") == pytest.approx(summary["final_test_error"], abs=0.005)


def test_entry_point_error_has_no_traceback(tmp_path):
    """The real process: exit code 2 and one line on stderr."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "resnet_core", "train", "--config", SMOKE, "--set",
                           "precision=fp8", "--out", str(tmp_path / "run")],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: unknown precision 'fp8'") and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stdout == ""


@pytest.mark.parametrize("command", ["eval", "lesion"])
def test_a_best_pt_a_run_never_picked_names_why_and_its_last_pt(tmp_path, capsys, command):
    """docs/training.md had `eval runs/my-run/best.pt` after a smoke run, which holds out no validation split and so
    writes no best.pt: the error was "checkpoint not found". It now says when a run writes best.pt and names the
    last.pt beside it (exit 2)."""
    (tmp_path / "last.pt").write_bytes(b"")
    assert main([command, str(tmp_path / "best.pt")]) == 2
    said = capsys.readouterr().err.strip()
    assert len(said.splitlines()) == 1
    assert f"no best.pt in {tmp_path}" in said and "data.val_size" in said and str(tmp_path / "last.pt") in said
