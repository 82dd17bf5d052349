"""Each seed recipe (ablations/recipes/seed00N_*.yaml) against what its program (docs/seeds.md) ran.

The reference side of every test is the program's own definitions, re-created here from its code: its optimizer and
scheduler objects, its loop (when it steps, when it rebuilds the optimizer, when it saves, when it prints), its
transforms. Nothing is a copied number. Training runs are tiny (ResNet-8 on synthetic glyphs, CPU, fp32, tens of
steps); the engine and the re-created loop start from the same initial weights and read the same batches, so the
weights they reach and the optimizer state they hold must agree.
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pytest
import torch
import torch.nn as nn
import yaml
from PIL import Image

from resnet_core.cli import main
from resnet_core.data import build_loaders, load_dataset
from resnet_core.engine import _log_points, train
from resnet_core.fast_path import FastPath
from resnet_core.model import ResNet, build_model
from resnet_core.overrides import apply_overrides
from resnet_core.record import read_metrics, read_summary
from resnet_core.run_config import RunConfig
from resnet_core.schedules import lr_at, milestone_steps, momentum_at, total_steps

torch.set_num_threads(1)

RECIPES = Path(__file__).resolve().parents[1] / "ablations" / "recipes"
SEED001 = RECIPES / "seed001_resnet34_cifar224.yaml"
SEED001_AS_RAN = RECIPES / "seed001_resnet34_cifar224_as_ran.yaml"
SEED002 = RECIPES / "seed002_d2l_fashion_mnist.yaml"
SEED003 = RECIPES / "seed003_resnet50_onecycle_npu.yaml"
SEED004 = RECIPES / "seed004_resnet20_adam.yaml"

TINY_MODEL = {"family": "cifar", "depth": 8}


def recipe(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def tiny_run(path: Path, *overrides: str, channels: int = 3, image_size: int = 16, n_train: int = 128,
             n_test: int = 32, **top: Any) -> dict[str, Any]:
    """The recipe with only the dataset (synthetic glyphs), the network (ResNet-8) and the device (CPU, fp32)
    swapped for tiny ones: every other key (optimizer, schedule, data handling, logging, checkpoints) is the
    recipe's, unless `overrides` (`--set key=value`) or `top` (top-level keys) say otherwise."""
    d = recipe(path)
    d["data"] = {**d["data"], "name": "synthetic",
                 "synthetic": {"image_size": image_size, "channels": channels, "n_train": n_train, "n_test": n_test}}
    d["data"].pop("resize", None)
    d["model"] = dict(TINY_MODEL)
    d.update(device="cpu", precision="fp32", channels_last=False, eval_batch_size=n_test, seed=3)  # NCHW as the programs
    d.update(top)
    return apply_overrides(d, overrides)


def initial_model(cfg: RunConfig) -> ResNet:
    """The network the engine starts from: the member config (in/out sizes from the data) under the run's seed."""
    data = load_dataset(cfg.data)
    member = dataclasses.replace(cfg.model, in_channels=data.in_channels, num_classes=data.num_classes)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        return build_model(member)


def engine_batches(cfg: RunConfig, epochs: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The batches the engine trains on, in order: (x [B, C, H, W], y [B])."""
    loader = build_loaders(load_dataset(cfg.data), cfg.data, seeds=[cfg.seed], batch_size=cfg.batch_size).train
    for epoch in range(epochs):
        for x, y in loader.epoch(epoch):
            yield x, y[:, 0]


def close(ours: torch.Tensor, ref: torch.Tensor, rel: float) -> bool:
    """|ours − ref| ≤ rel · max|ref| + 1e-12, elementwise (a floor tied to the tensor's scale)."""
    ref, ours = ref.double(), ours.double()
    return bool(((ours - ref).abs() <= rel * ref.abs().max() + 1e-12).all())


def assert_state_close(ours: dict[str, torch.Tensor], ref: dict[str, torch.Tensor], rel: float) -> None:
    assert ours.keys() == ref.keys()
    bad = [k for k in ref if not close(ours[k], ref[k], rel)]
    assert not bad, f"differ beyond {rel:g} of their scale: {bad[:5]}"


def pil(images_u8: torch.Tensor) -> list[Image.Image]:
    """uint8 [N, C, H, W] as the PIL images a torchvision dataset hands its transform (mode L or RGB)."""
    hwc = images_u8.permute(0, 2, 3, 1).numpy()
    return [Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a) for a in hwc]


def program_tensors(images_u8: torch.Tensor, transform: Callable) -> torch.Tensor:
    return torch.stack([transform(img) for img in pil(images_u8)])


def loader_len(n: int, batch_size: int, shuffle: bool) -> int:
    """len() of the program's DataLoader (default drop_last=False) over n images."""
    return len(torch.utils.data.DataLoader(range(n), batch_size=batch_size, shuffle=shuffle))


# == seed 001 (ResNet-34 on CIFAR-10 at 224): as it ran, and corrected ============================================
def program001_epoch_lrs(epochs: int, steps_scheduler: bool) -> list[float]:
    """The lr of each epoch of the program's loop: SGD(lr=1e-3, momentum=0.9) and StepLR(step_size=10, gamma=0.1),
    built as it builds them; its loop never calls lr_scheduler.step() (``steps_scheduler=False``); the corrected
    loop calls it once at the end of every epoch."""
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1e-3, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=10, gamma=0.1)
    lrs = []
    for _ in range(epochs):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        if steps_scheduler:
            scheduler.step()
    return lrs


@pytest.mark.parametrize("path, steps_scheduler", [(SEED001_AS_RAN, False), (SEED001, True)], ids=["as-ran", "fixed"])
def test_seed001_lr_of_every_epoch_is_the_programs_or_the_corrected_one(path, steps_scheduler):
    cfg = RunConfig.from_dict(recipe(path))
    spe = 50000 // 64 if not cfg.data.val_size else (50000 - 5000) // 64   # full batches an epoch
    assert total_steps(cfg.schedule, spe) == 100 * spe
    ours = [lr_at(cfg.schedule, cfg.optim.lr, e * spe + k, spe) for e in range(100) for k in (0, spe - 1)]
    ref = [lr for lr in program001_epoch_lrs(100, steps_scheduler) for _ in (0, 1)]
    assert np.abs(np.subtract(ours, ref)).max() <= 1e-12 * max(ref)
    assert (len(set(ref)) == 1) is (not steps_scheduler)   # as it ran: 1e-3 throughout


def test_seed001_as_ran_differs_from_the_corrected_recipe_only_where_its_comments_say():
    from resnet_core.overrides import diff_keys

    fixed, as_ran = RunConfig.from_dict(recipe(SEED001)), RunConfig.from_dict(recipe(SEED001_AS_RAN))
    differ = diff_keys(fixed.to_dict(), as_ran.to_dict())
    said_keys = ("data.val_size", "name", "bn_mode", "best_on", "data.test_augment")
    assert {"schedule.name", *said_keys} <= set(differ)
    assert all(k in said_keys or k.startswith("schedule.") for k in differ), differ
    assert fixed.data.val_size == 5000 and as_ran.data.val_size == 0 and as_ran.schedule.name == "constant"
    for path in (SEED001, SEED001_AS_RAN):
        comments = path.read_text()
        for said in ("StepLR", "never", "model.eval()", "model.train()", "best", "test set", "RandomResizedCrop",
                     "bn_mode", "best_on", "test_augment"):
            assert said in comments, (path.name, said)


def test_seed001_as_ran_evaluates_the_test_set_every_epoch_and_picks_best_on_it(tmp_path):
    """No validation split, as the program has none: the test split every epoch, and best.pt picked on it
    (`best_on: test`, said in the summary); the corrected recipe keeps a best.pt picked on its validation split."""
    for path, best in ((SEED001_AS_RAN, False), (SEED001, True)):
        d = tiny_run(path, "schedule.total=2", f"data.val_size={32 if best else 0}", n_train=128, n_test=32,
                     batch_size=32, probes=False)
        run = tmp_path / path.stem
        train(d, run)
        splits = {(r["split"], r["step"]) for r in read_metrics(run) if r["name"] == "error" and r["split"] != "train"}
        spe = (128 - (32 if best else 0)) // 32
        assert {step for split, step in splits if split == "test"} == {spe, 2 * spe}
        assert any(split == "val" for split, _ in splits) is best
        assert (run / "best.pt").exists() and (run / "last.pt").exists()
        assert read_summary(run)["best_selected_on"] == ("val" if best else "test")


# == seed 002 (d2l, Fashion-MNIST) ==================================================================================
def program002_print_steps(num_batches: int) -> list[int]:
    """The in-epoch batch counts (1-based) after which the program prints: its own condition."""
    return [i + 1 for i in range(num_batches) if (i + 1) % (num_batches // 5) == 0 or i == num_batches - 1]


def test_seed002_logs_five_times_an_epoch_where_the_program_prints():
    cfg = RunConfig.from_dict(recipe(SEED002))
    assert cfg.log_per_epoch == 5
    num_batches = loader_len(60000, 256, shuffle=True)  # the program's len(train_iter)
    # on the program's own epoch length, our log points are its print points exactly
    assert sorted(_log_points(cfg.log_per_epoch, num_batches)) == program002_print_steps(num_batches)
    # our epoch drops the partial batch (60000 // 256 batches): still five logs, at the same batches but the last
    ours = sorted(_log_points(cfg.log_per_epoch, 60000 // 256))
    assert len(ours) == len(program002_print_steps(num_batches))
    assert ours[:-1] == program002_print_steps(num_batches)[:-1] and ours[-1] == 60000 // 256


def test_seed002_engine_logs_five_times_in_every_epoch(tmp_path):
    # 13 batches an epoch, so log_every-style cadence (13 // 5 = 2) would log 6 or 7 times in an epoch
    d = tiny_run(SEED002, "schedule.total=3", channels=1, image_size=16, n_train=13 * 16, n_test=16,
                 batch_size=16, probes=False)
    train(d, tmp_path / "run")
    steps = [r["step"] for r in read_metrics(tmp_path / "run") if (r["split"], r["name"]) == ("train", "loss")]
    spe = 13
    per_epoch = [[s - e * spe for s in steps if e * spe < s <= (e + 1) * spe] for e in range(3)]
    assert all(positions == sorted(_log_points(5, spe)) for positions in per_epoch), per_epoch
    assert all(len(p) == 5 for p in per_epoch)


def test_seed002_feeds_totensor_pixels_without_normalisation():
    from torchvision import transforms  # here: torchvision takes seconds to import, only these tests need it
    d = tiny_run(SEED002, channels=1, image_size=28, n_train=64, n_test=48)
    cfg = RunConfig.from_dict(d)
    data = load_dataset(cfg.data)
    loaders = build_loaders(data, cfg.data, seeds=[cfg.seed], batch_size=16, eval_batch_size=20)
    program = transforms.Compose([transforms.ToTensor()])  # load_data_fashion_mnist(resize=None)
    x_test = torch.cat([x for x, _ in loaders.test])
    ref = program_tensors(data.test.images, program)
    assert x_test.shape == ref.shape == (48, 1, 28, 28)
    assert close(x_test, ref, 1e-6)
    order, _ = loaders.train.plan(0)
    for b, (x, y) in enumerate(loaders.train.epoch(0)):
        index = order[0, b * 16:(b + 1) * 16]
        assert close(x, program_tensors(data.train.images[index], program), 1e-6)
        assert torch.equal(y[:, 0], data.train.labels[index])
    assert not torch.equal(order[0], torch.arange(64))  # its DataLoader shuffles (shuffle=True), and so do we


class _Residual(nn.Module):  # the program's Residual, as written
    def __init__(self, input_channels, num_channels, use_1x1conv=False, strides=1):
        super().__init__()
        self.conv1 = nn.Conv2d(input_channels, num_channels, kernel_size=3, padding=1, stride=strides)
        self.conv2 = nn.Conv2d(num_channels, num_channels, kernel_size=3, padding=1)
        self.conv3 = nn.Conv2d(input_channels, num_channels, kernel_size=1, stride=strides) if use_1x1conv else None
        self.bn1 = nn.BatchNorm2d(num_channels)
        self.bn2 = nn.BatchNorm2d(num_channels)


def _program002_net() -> nn.Sequential:
    def resnet_block(input_channels, num_channels, num_residuals, first_block=False):
        return [_Residual(input_channels, num_channels, use_1x1conv=True, strides=2) if i == 0 and not first_block
                else _Residual(num_channels, num_channels) for i in range(num_residuals)]

    b1 = nn.Sequential(nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3), nn.BatchNorm2d(64), nn.ReLU(),
                       nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
    net = nn.Sequential(b1, nn.Sequential(*resnet_block(64, 64, 2, first_block=True)),
                        nn.Sequential(*resnet_block(64, 128, 2)), nn.Sequential(*resnet_block(128, 256, 2)),
                        nn.Sequential(*resnet_block(256, 512, 2)), nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(),
                        nn.Linear(512, 10))

    def init_weights(m):  # the program's train(): Xavier on weights only; biases keep their default init
        if type(m) == nn.Linear or type(m) == nn.Conv2d:
            nn.init.xavier_uniform_(m.weight)

    net.apply(init_weights)
    return net


def _conv_biases(model: nn.Module) -> list[tuple[tuple[int, ...], torch.Tensor, float]]:
    """(weight shape, bias, nn.Conv2d's default bound 1/sqrt(fan_in)) of every biased conv, sorted by shape."""
    out = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d) and m.bias is not None:
            fan_in = m.weight[0].numel()
            out.append((tuple(m.weight.shape), m.bias.detach(), 1 / math.sqrt(fan_in)))
    return sorted(out, key=lambda t: t[0])


def test_seed002_conv_biases_keep_pytorch_default_init():
    cfg = RunConfig.from_dict(recipe(SEED002))
    assert cfg.model.bias_init == "default"
    torch.manual_seed(0)
    constructed = ResNet(cfg.model)            # what nn.Conv2d drew at construction, before any init
    torch.manual_seed(0)
    ours = build_model(cfg.model)
    program = _program002_net()
    ours_b, constructed_b, program_b = _conv_biases(ours), _conv_biases(constructed), _conv_biases(program)
    # the same biased convs as the program, with the same default bounds
    assert [(s, bound) for s, _, bound in ours_b] == [(s, bound) for s, _, bound in program_b]
    for (_, b, bound), (_, b0, _) in zip(ours_b, constructed_b):
        assert torch.equal(b, b0), "the init must leave conv biases as nn.Conv2d drew them"
        assert b.abs().max() <= bound and b.abs().max() > 0.5 * bound  # spread over U(−bound, bound), not zero
    # and the program's own biases look the same: inside the bound, not zeroed
    assert all(0.5 * bound < b.abs().max() <= bound for _, b, bound in program_b)
    # the switch: bias_init zero (the framework's default) zeroes them
    zeroed = build_model(dataclasses.replace(cfg.model, bias_init="zero"))
    assert all(not b.any() for _, b, _ in _conv_biases(zeroed))


# == seed 003 (ResNet-50, OneCycleLR) ===============================================================================
def program003_optimizer(params, steps_per_epoch: int, epochs: int = 150):
    """The program's optimizer and scheduler, as it builds them (SGD without momentum; OneCycleLR's defaults)."""
    optimizer = torch.optim.SGD(params, lr=1.0, weight_decay=5e-4)
    lr_scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, 0.1, steps_per_epoch=steps_per_epoch,
                                                       epochs=epochs, div_factor=25, final_div_factor=10000,
                                                       pct_start=0.3)
    return optimizer, lr_scheduler


def test_seed003_lr_and_momentum_at_every_step_are_the_programs():
    cfg = RunConfig.from_dict(recipe(SEED003))
    s = cfg.schedule
    spe = loader_len(50000, 128, shuffle=True)  # the program's len(trainloader)
    n = 60 * spe                                # for epoch in range(60): train(epoch)
    assert total_steps(s, spe) == n
    optimizer, scheduler = program003_optimizer([nn.Parameter(torch.zeros(1))], spe)
    ref_lr, ref_m = [], []
    for _ in range(n):
        group = optimizer.param_groups[0]
        ref_lr.append(group["lr"])
        ref_m.append(group["momentum"])
        optimizer.step()          # no gradient: a no-op, but the order torch expects
        scheduler.step()
    ours_lr = [lr_at(s, cfg.optim.lr, k, spe) for k in range(n)]
    ours_m = [momentum_at(s, k, spe) for k in range(n)]
    assert np.abs(np.subtract(ours_lr, ref_lr)).max() <= 1e-12 * max(ref_lr)
    assert np.abs(np.subtract(ours_m, ref_m)).max() <= 1e-12
    assert ref_m[0] == s.max_momentum and min(ref_m) < ref_m[0]  # SGD built without momentum got one, cycling
    # the run stops early in the decay, near the peak; a schedule as long as the run would end at its floor
    assert ours_lr[-1] > 0.9 * max(ours_lr)
    as_long_as_the_run = dataclasses.replace(s, length=None)
    assert lr_at(as_long_as_the_run, cfg.optim.lr, n - 1, spe) == pytest.approx(0.1 / 25 / 1e4, rel=1e-6)


def test_seed003_engine_trains_as_the_programs_loop(tmp_path, monkeypatch):
    # The program's structure at a tiny scale: the scheduler built for 15 "epochs" of 4 batches, trained for 6.
    spe, sched_epochs, train_epochs = 4, 15, 6
    d = tiny_run(SEED003, f"schedule.total={train_epochs * spe}", f"schedule.length={sched_epochs * spe}",
                 f"eval_every={spe}", n_train=spe * 32, batch_size=32, probes=False)
    cfg = RunConfig.from_dict(d)
    seen: list[tuple[float, float]] = []
    run_step = FastPath.train_step

    def spy(self, x, y):
        group = self.opt.param_groups[0]
        seen.append((group["lr"], group["momentum"]))
        return run_step(self, x, y)

    monkeypatch.setattr(FastPath, "train_step", spy)
    result = train(cfg, tmp_path / "run")
    assert result.status == "complete"

    net = initial_model(cfg)
    net.train()
    optimizer, scheduler = program003_optimizer(net.parameters(), spe, sched_epochs)
    criterion = nn.CrossEntropyLoss()
    expected = []
    for inputs, targets in engine_batches(cfg, train_epochs):  # the program's train(epoch), epoch after epoch
        expected.append((optimizer.param_groups[0]["lr"], optimizer.param_groups[0]["momentum"]))
        optimizer.zero_grad()
        loss = criterion(net(inputs), targets)
        loss.backward()
        optimizer.step()
        scheduler.step()
    assert len(seen) == len(expected) == train_epochs * spe
    assert np.abs(np.subtract(seen, expected)).max() <= 1e-12
    last = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert_state_close(last["model"], net.state_dict(), 1e-4)
    names = dict(net.named_parameters())
    for name, state in last["optim"].items():  # the momentum buffers the cycled momentum built
        assert close(state["momentum_buffer"], optimizer.state[names[name]]["momentum_buffer"], 1e-4), name


def test_seed003_normalises_with_the_programs_constants():
    from torchvision import transforms  # here: torchvision takes seconds to import, only these tests need it
    cfg = RunConfig.from_dict(tiny_run(SEED003, image_size=32, n_train=64, n_test=40))
    data = load_dataset(cfg.data)
    loaders = build_loaders(data, cfg.data, seeds=[cfg.seed], batch_size=16, eval_batch_size=40)
    normalize = transforms.Normalize((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))
    transform_test = transforms.Compose([transforms.ToTensor(), normalize])
    (x_test, _), = list(loaders.test)
    assert close(x_test, program_tensors(data.test.images, transform_test), 1e-6)
    # train: the program's RandomCrop(32, padding=4), RandomHorizontalFlip, ToTensor, Normalize, replayed with the
    # crop offsets and flips our loader drew
    order, params = loaders.train.plan(0)
    tf = transforms.functional
    for b, (x, _) in enumerate(loaders.train.epoch(0)):
        ref = []
        for k in range(b * 16, (b + 1) * 16):
            img = pil(data.train.images[order[0, k]][None])[0]
            img = tf.crop(tf.pad(img, 4), int(params["dy"][0, k]), int(params["dx"][0, k]), 32, 32)
            if params["flip"][0, k]:
                img = tf.hflip(img)
            ref.append(normalize(tf.to_tensor(img)))
        assert close(x, torch.stack(ref), 1e-6)


# == seed 004 (ResNet-20, Adam) =====================================================================================
def program004_schedule(epochs: int, iters: int) -> tuple[list[float], list[int], list[int]]:
    """The program's train_model() bookkeeping: the lr of each step, the steps before which it rebuilds its Adam,
    and the epochs (1-based) whose end it saves a checkpoint at."""
    lr = 0.001
    optimizer = torch.optim.Adam([nn.Parameter(torch.zeros(1))], lr=lr)
    lrs, rebuilt_before, saved = [], [], []
    for epoch in range(epochs):
        for _ in range(iters):
            lrs.append(optimizer.param_groups[0]["lr"])
        if (epoch + 1) % 20 == 0:
            lr /= 3
            optimizer = torch.optim.Adam([nn.Parameter(torch.zeros(1))], lr=lr)
            rebuilt_before.append((epoch + 1) * iters)
            saved.append(epoch + 1)  # torch.save(..., 'resnet_{epoch}.pkl') at the end of 1-based epoch epoch+1
    return lrs, rebuilt_before, saved


def test_seed004_lr_resets_and_checkpoints_are_the_programs():
    cfg = RunConfig.from_dict(recipe(SEED004))
    spe = loader_len(50000, 100, shuffle=False)
    lrs, rebuilt_before, saved = program004_schedule(80, spe)
    n = total_steps(cfg.schedule, spe)
    assert n == len(lrs)
    ours = [lr_at(cfg.schedule, cfg.optim.lr, k, spe) for k in range(n)]
    assert np.abs(np.subtract(ours, lrs)).max() <= 1e-12 * max(lrs)
    assert cfg.schedule.reset_optimizer
    assert milestone_steps(cfg.schedule, spe) == [k for k in rebuilt_before if k < n]
    assert [round(cfg.checkpoint_every * k) for k in range(1, 5)] == saved


def test_seed004_engine_trains_as_the_programs_loop(tmp_path, capsys):
    """80 epochs of one batch: Adam rebuilt every 20 epochs, checkpoints every 20, no shuffling."""
    from torchvision import transforms  # here: torchvision takes seconds to import, only these tests need it
    d = tiny_run(SEED004, n_train=16, n_test=16, batch_size=16, probes=False)
    cfg = RunConfig.from_dict(d)
    run = tmp_path / "run"
    assert train(cfg, run).status == "complete"
    written = sorted(p.name for p in run.glob("*.pt"))
    assert written == ["epoch_020.pt", "epoch_040.pt", "epoch_060.pt", "epoch_080.pt", "last.pt"]  # no val: no best.pt
    assert not list(run.glob(".*.tmp"))  # atomic writes leave no temporary file behind

    # the program's train_model(), on the same initial weights and the same batches
    resnet = initial_model(cfg)
    resnet.train()
    criterion = nn.CrossEntropyLoss()
    lr = 0.001
    optimizer = torch.optim.Adam(resnet.parameters(), lr=lr)
    batches = engine_batches(cfg, 80)
    names = {id(p): k for k, p in resnet.named_parameters()}
    for epoch in range(80):
        images, labels = next(batches)  # one batch an epoch here
        optimizer.zero_grad()
        loss = criterion(resnet(images), labels)
        loss.backward()
        optimizer.step()
        if (epoch + 1) % 20 == 0:
            ours = torch.load(run / f"epoch_{epoch + 1:03d}.pt", weights_only=True)
            assert_state_close(ours["model"], resnet.state_dict(), 1e-4)
            for p, state in optimizer.state.items():  # Adam's moments and step since its last rebuild
                mine = ours["optim"][names[id(p)]]
                assert float(mine["step"]) == float(state["step"]) == 20
                assert close(mine["exp_avg"], state["exp_avg"], 1e-4)
                assert close(mine["exp_avg_sq"], state["exp_avg_sq"], 1e-4)
            lr /= 3
            optimizer = torch.optim.Adam(resnet.parameters(), lr=lr)


    # predict_with_path_model: the program's test-set accuracy of a saved checkpoint, from ours by `eval`
    test = load_dataset(cfg.data).test
    resnet.eval()
    with torch.no_grad():
        x = program_tensors(test.images, transforms.Compose([transforms.ToTensor()]))
        correct = (resnet(x).argmax(1) == test.labels).sum().item()
    assert main(["eval", str(run / "epoch_080.pt"), "--device", "cpu"]) == 0
    test_line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("test:"))
    error = float(test_line.split("error")[1].split("%")[0])
    assert error == pytest.approx(100 * (1 - correct / len(test.labels)), abs=0.01)


def test_seed004_reset_zeroes_adam_at_the_drop(tmp_path, monkeypatch):
    """Right after the drop, Adam's state is that of a fresh optimizer after one step: step 1, first moment
    (1 − β1)·g, second (1 − β2)·g²."""
    d = tiny_run(SEED004, "schedule.total=3", "schedule.step_size=2", n_train=16, n_test=16, batch_size=16,
                 probes=False, checkpoint_every=0)
    states: list[dict[str, Any]] = []
    run_step = FastPath.train_step

    def spy(self, x, y):
        run_step(self, x, y)
        p = next(self.model.parameters())
        states.append({k: v.clone() for k, v in self.opt.state[p].items()} | {"grad": p.grad.clone()})

    monkeypatch.setattr(FastPath, "train_step", spy)
    train(RunConfig.from_dict(d), tmp_path / "run")
    assert [float(s["step"]) for s in states] == [1, 2, 1]  # the drop is before the third step
    b1, b2 = RunConfig.from_dict(d).optim.betas
    after = states[2]
    assert close(after["exp_avg"], (1 - b1) * after["grad"], 1e-6)
    assert close(after["exp_avg_sq"], (1 - b2) * after["grad"].square(), 1e-6)


def test_seed004_trains_in_the_stored_order_with_totensor_pixels():
    from torchvision import transforms  # here: torchvision takes seconds to import, only these tests need it
    cfg = RunConfig.from_dict(tiny_run(SEED004, n_train=48, n_test=20, image_size=32))
    data = load_dataset(cfg.data)
    to_tensor = transforms.Compose([transforms.ToTensor()])  # the program's test transform; no Normalize anywhere
    loaders = build_loaders(data, cfg.data, seeds=[cfg.seed], batch_size=16, eval_batch_size=20)
    (x_test, _), = list(loaders.test)
    assert close(x_test, program_tensors(data.test.images, to_tensor), 1e-6)
    for epoch in range(2):  # DataLoader(shuffle=False): batch b is images b·B … b·B+B−1, every epoch
        labels = torch.cat([y[:, 0] for _, y in loaders.train.epoch(epoch)])
        assert torch.equal(labels, data.train.labels)
    plain = RunConfig.from_dict(tiny_run(SEED004, "data.augment=none", n_train=48, image_size=32))
    loader = build_loaders(data, plain.data, seeds=[plain.seed], batch_size=16).train
    x = torch.cat([x for x, _ in loader.epoch(1)])
    assert close(x, program_tensors(data.train.images, to_tensor), 1e-6)


# == seeds 003 and 004: no init of their own, so PyTorch's layer defaults ===========================================
def _program003_net() -> nn.Module:
    """The program's ResNet50(): Bottleneck(expansion 4), [3, 4, 6, 3], 3×3 stem, as written (layers only)."""
    class Bottleneck(nn.Module):
        expansion = 4

        def __init__(self, in_planes, planes, stride=1):
            super().__init__()
            self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            self.conv3 = nn.Conv2d(planes, self.expansion * planes, kernel_size=1, bias=False)
            self.bn3 = nn.BatchNorm2d(self.expansion * planes)
            self.shortcut = nn.Sequential()
            if stride != 1 or in_planes != self.expansion * planes:
                self.shortcut = nn.Sequential(
                    nn.Conv2d(in_planes, self.expansion * planes, kernel_size=1, stride=stride, bias=False),
                    nn.BatchNorm2d(self.expansion * planes))

    class ResNet(nn.Module):
        def __init__(self, block, num_blocks, num_classes=10):
            super().__init__()
            self.in_planes = 64
            self.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.layer1 = self._make_layer(block, 64, num_blocks[0], stride=1)
            self.layer2 = self._make_layer(block, 128, num_blocks[1], stride=2)
            self.layer3 = self._make_layer(block, 256, num_blocks[2], stride=2)
            self.layer4 = self._make_layer(block, 512, num_blocks[3], stride=2)
            self.linear = nn.Linear(512 * block.expansion, num_classes)

        def _make_layer(self, block, planes, num_blocks, stride):
            layers = []
            for stride in [stride] + [1] * (num_blocks - 1):
                layers.append(block(self.in_planes, planes, stride))
                self.in_planes = planes * block.expansion
            return nn.Sequential(*layers)

    return ResNet(Bottleneck, [3, 4, 6, 3])


def _program004_net() -> nn.Module:
    """The program's ResNet(ResidualBlock, [3, 3, 3]), as written (layers only)."""
    def conv3x3(in_channels, out_channels, stride=1):
        return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)

    class ResidualBlock(nn.Module):
        def __init__(self, in_channels, out_channels, stride=1, downsample=None):
            super().__init__()
            self.conv1 = conv3x3(in_channels, out_channels, stride)
            self.bn1 = nn.BatchNorm2d(out_channels)
            self.conv2 = conv3x3(out_channels, out_channels)
            self.bn2 = nn.BatchNorm2d(out_channels)
            self.downsample = downsample

    class ResNet(nn.Module):
        def __init__(self, block, layers, num_classes=10):
            super().__init__()
            self.in_channels = 16
            self.conv = conv3x3(3, 16)
            self.bn = nn.BatchNorm2d(16)
            self.layer1 = self.make_layer(block, 16, layers[0])
            self.layer2 = self.make_layer(block, 32, layers[0], 2)
            self.layer3 = self.make_layer(block, 64, layers[1], 2)
            self.fc = nn.Linear(64, num_classes)

        def make_layer(self, block, out_channels, blocks, stride=1):
            downsample = None
            if (stride != 1) or (self.in_channels != out_channels):
                downsample = nn.Sequential(conv3x3(self.in_channels, out_channels, stride=stride),
                                           nn.BatchNorm2d(out_channels))
            layers = [block(self.in_channels, out_channels, stride, downsample)]
            self.in_channels = out_channels
            for _ in range(1, blocks):
                layers.append(block(out_channels, out_channels))
            return nn.Sequential(*layers)

    return ResNet(ResidualBlock, [3, 3, 3])


def _weights(model: nn.Module) -> list[tuple[tuple[int, ...], torch.Tensor, float]]:
    """(shape, weight, PyTorch's default bound 1/sqrt(fan_in)) of every conv and linear layer, sorted by shape."""
    out = [(tuple(m.weight.shape), m.weight.detach(), 1 / math.sqrt(m.weight[0].numel()))
           for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    return sorted(out, key=lambda t: t[0])


@pytest.mark.parametrize("path,program_net", [(SEED003, _program003_net), (SEED004, _program004_net)],
                         ids=["seed003", "seed004"])
def test_seed_without_its_own_init_keeps_pytorch_defaults(path, program_net):
    cfg = RunConfig.from_dict(recipe(path))
    assert cfg.model.init == "pytorch"
    torch.manual_seed(0)
    constructed = ResNet(cfg.model)
    torch.manual_seed(0)
    ours = build_model(cfg.model)
    program = program_net()
    ours_w, program_w = _weights(ours), _weights(program)
    assert [(s, bound) for s, _, bound in ours_w] == [(s, bound) for s, _, bound in program_w]
    for (_, w, bound), (_, w0, _) in zip(ours_w, _weights(constructed)):
        assert torch.equal(w, w0), "init pytorch must leave the layers as constructed"
    for _, w, bound in ours_w + program_w:  # U(−bound, bound): kaiming_uniform_(a=√5)
        assert 0.9 * bound < w.abs().max() <= bound
    kaiming = build_model(dataclasses.replace(cfg.model, init="kaiming"))  # the framework's default differs
    assert any(w.abs().max() > bound for _, w, bound in _weights(kaiming))
