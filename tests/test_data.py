"""Data: config, sources, the val split, the synthetic set's learnability, the device loaders and their augmentation."""
from __future__ import annotations

import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from resnet_core.effect import check_effect
from resnet_core.errors import ConfigError
from resnet_core.data import (DataConfig, EvalLoader, LabeledImages, SyntheticConfig, TrainLoader, build_loaders,
                              channel_stats, holdout, load_dataset, make_glyphs, read_jpeg_archive,
                              seed_style_loader, stream_seed, write_jpeg_archive)
from resnet_core.data.augment import AUGMENTS, Geometry, resample_boxes, shift_flip


def ramp_images(n: int, c: int = 3, h: int = 8, w: int = 8) -> torch.Tensor:
    """Images whose every pixel is different (within one image), so a crop or flip is recognisable."""
    base = torch.arange(c * h * w).view(c, h, w) % 200 + 1
    return ((base[None] + 7 * torch.arange(n)[:, None, None, None]) % 250 + 1).to(torch.uint8)


def identity_set(n: int = 40, h: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Ramp images with label i for image i, so a batch's labels say which images it holds."""
    return ramp_images(n, h=h, w=h), torch.arange(n)


# -- config ------------------------------------------------------------------------------------------------------

def test_config_round_trip_and_defaults() -> None:
    cfg = DataConfig.from_dict({"name": "cifar10", "val_size": 5000, "synthetic": {"n_train": 64}})
    assert cfg.synthetic.n_train == 64 and cfg.val_size == 5000
    for name in ("imagefolder", "cifar10_jpeg"):   # the sources that read data.path
        assert DataConfig(name=name, path="/data/x").path == "/data/x"
    assert DataConfig.from_dict(cfg.to_dict()) == cfg
    assert DataConfig().name == "synthetic" and DataConfig().augment == "crop_flip"


@pytest.mark.parametrize("d, words", [
    ({"nmae": "cifar10"}, ["nmae", "name", "val_size"]),
    ({"name": "imagenet21k"}, ["data.name", "imagenet21k", "cifar10", "synthetic"]),
    ({"augment": "mixup"}, ["data.augment", "mixup", "crop_flip", "scale_crop"]),
    ({"val_size": -1}, ["data.val_size", "-1"]),
    ({"val_size": 1.5}, ["data.val_size", "1.5"]),
    ({"resize": 0}, ["data.resize"]),
    ({"download": "yes"}, ["data.download", "yes"]),
    ({"std": [0.2, 0.0, 0.2]}, ["data.std"]),
    ({"mean": [0.5, 0.5], "std": [0.2, 0.2, 0.2]}, ["data.mean", "data.std"]),
    ({"loader": "dali"}, ["data.loader", "dali", "device", "torch"]),
    ({"synthetic": {"size": 16}}, ["data.synthetic key", "size", "image_size"]),
    ({"synthetic": {"num_classes": 11}}, ["data.synthetic.num_classes", "11"]),
    ({"synthetic": 3}, ["data.synthetic"]),
    # keys the config's choices never read: a run on another copy of the data, or unnormalized, silently
    ({"name": "cifar10", "path": "/data/my-cifar"}, ["data.path", "/data/my-cifar", "no effect", "data.root"]),
    ({"name": "mnist", "path": "/data/mnist"}, ["data.path", "imagefolder", "cifar10_jpeg", "no effect"]),
    ({"path": "/data/x"}, ["data.path", "synthetic", "no effect"]),
    ({"normalize": False, "mean": [0.5, 0.5, 0.5]}, ["data.mean", "data.normalize", "no effect"]),
    ({"normalize": False, "std": [0.2, 0.2, 0.2]}, ["data.std", "data.normalize", "no effect"]),
])
def test_config_errors_name_the_key(d: dict, words: list[str]) -> None:
    with pytest.raises(ConfigError) as e:
        check_effect(DataConfig.from_dict(d), d, "data.")   # a key the user wrote and the data never reads, too
    message = str(e.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_data_root_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESNET_ABLATE_DATA", str(tmp_path / "env"))
    assert DataConfig().data_root() == tmp_path / "env"
    assert DataConfig(root=str(tmp_path / "mine")).data_root() == tmp_path / "mine"
    monkeypatch.delenv("RESNET_ABLATE_DATA")
    assert DataConfig().data_root() == Path.home() / ".cache" / "resnet-ablate" / "data"


# -- synthetic ---------------------------------------------------------------------------------------------------

def test_synthetic_is_deterministic_balanced_and_seeded() -> None:
    a, la = make_glyphs(300, seed=3)
    b, lb = make_glyphs(300, seed=3)
    c, _ = make_glyphs(300, seed=4)
    assert a.dtype == torch.uint8 and a.shape == (300, 3, 16, 16)
    assert torch.equal(a, b) and torch.equal(la, lb)
    assert not torch.equal(a, c)
    assert torch.bincount(la, minlength=10).tolist() == [30] * 10
    grey, _ = make_glyphs(20, seed=0, channels=1, image_size=24, num_classes=4)
    assert grey.shape == (20, 1, 24, 24)


def test_synthetic_source_splits() -> None:
    cfg = DataConfig(synthetic=SyntheticConfig(n_train=400, n_test=100, num_classes=5), val_size=0.25)
    data = load_dataset(cfg)
    assert (len(data.train), len(data.val), len(data.test)) == (300, 100, 100)
    assert data.num_classes == 5 and data.in_channels == 3 and data.image_size == (16, 16)
    assert data.classes[:2] == ["square", "frame"]
    assert int(data.train.labels.max()) == 4
    again = load_dataset(cfg)
    assert torch.equal(again.train.images, data.train.images) and torch.equal(again.test.images, data.test.images)
    # train and test never share an image
    flat = lambda x: {bytes(img.numpy()) for img in x}  # noqa: E731
    assert not flat(data.train.images) & flat(data.test.images)


def _fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, lr: float) -> nn.Module:
    gen = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    batch = 64
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=epochs * (len(x) // batch))
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=gen)
        for i in range(len(x) // batch):
            idx = perm[i * batch:(i + 1) * batch]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()


@torch.no_grad()
def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return (model(x).argmax(1) == y).float().mean().item()


@pytest.mark.slow
def test_synthetic_is_learnable_by_a_cnn_not_by_a_linear_model() -> None:
    """Chance is 10 %. A linear model on pixels stays near it (every class has the same mean image); a three-layer
    CNN gets several times that in ~1 s of CPU."""
    torch.manual_seed(0)
    xtr, ytr = make_glyphs(2000, seed=10)
    xte, yte = make_glyphs(500, seed=11)
    mean, std = xtr.float().mean((0, 2, 3), keepdim=True), xtr.float().std((0, 2, 3), keepdim=True)
    xtr, xte = (xtr.float() - mean) / std, (xte.float() - mean) / std

    def conv(i: int, o: int) -> list[nn.Module]:
        return [nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU()]

    cnn = nn.Sequential(*conv(3, 16), nn.MaxPool2d(2), *conv(16, 32), nn.MaxPool2d(2), *conv(32, 64),
                        nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(64, 10))
    linear = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 10))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny convs: one thread is fastest, and immune to a busy machine
    try:
        cnn_acc = _accuracy(_fit(cnn, xtr, ytr, epochs=3, lr=1e-2), xte, yte)
        linear_acc = _accuracy(_fit(linear, xtr, ytr, epochs=9, lr=1e-2), xte, yte)
    finally:
        torch.set_num_threads(threads)
    assert linear_acc < 0.25, linear_acc
    assert cnn_acc > 0.38 and cnn_acc > linear_acc + 0.2, (cnn_acc, linear_acc)


# -- val split ---------------------------------------------------------------------------------------------------

def test_holdout_is_deterministic_disjoint_and_complete() -> None:
    images, labels = identity_set(100)
    data = LabeledImages(images, labels)
    train, val = holdout(data, 20, split_seed=1)
    train2, val2 = holdout(data, 0.2, split_seed=1)
    _, val3 = holdout(data, 20, split_seed=2)
    assert len(val) == 20 and len(train) == 80
    assert torch.equal(val.labels, val2.labels) and torch.equal(train.labels, train2.labels)
    assert not torch.equal(val.labels, val3.labels)
    assert not set(val.labels.tolist()) & set(train.labels.tolist())
    assert sorted(val.labels.tolist() + train.labels.tolist()) == list(range(100))
    assert torch.equal(val.images, images[val.labels])  # images travel with their labels
    assert holdout(data, 0, 1) == (data, None)
    with pytest.raises(ConfigError, match="val_size"):
        holdout(data, 100, 0)


# -- the device loaders ------------------------------------------------------------------------------------------

def _batches(loader: TrainLoader, epoch: int, start: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return list(loader.epoch(epoch, start))


def test_train_loader_shapes_and_epoch_coverage() -> None:
    images, labels = identity_set(40)
    loader = TrainLoader(images, labels, seeds=[0, 1], batch_size=8, augment="crop_flip", pad=2, mean=[0.5] * 3,
                         std=[0.25] * 3)
    assert loader.steps_per_epoch == len(loader) == 5
    batches = _batches(loader, 0)
    assert len(batches) == 5
    x, y = batches[0]
    assert x.shape == (8, 6, 8, 8) and x.dtype == torch.float32 and y.shape == (8, 2) and y.dtype == torch.int64
    seen = torch.cat([y for _, y in batches])  # [40, 2]
    for g in range(2):
        assert sorted(seen[:, g].tolist()) == list(range(40))  # each member sees every image once an epoch
    drop = TrainLoader(images, labels, seeds=[0], batch_size=16)
    assert drop.steps_per_epoch == 2 and len(_batches(drop, 0)) == 2  # drop_last
    with pytest.raises(ConfigError, match="batch_size"):
        TrainLoader(images, labels, seeds=[0], batch_size=41)


def test_train_loader_is_deterministic_and_resumable() -> None:
    images, labels = identity_set(48)
    make = lambda: TrainLoader(images, labels, seeds=[3, 4], batch_size=8, augment="crop_flip", pad=2)  # noqa: E731
    a, b = _batches(make(), 1), _batches(make(), 1)
    for (xa, ya), (xb, yb) in zip(a, b):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    resumed = _batches(make(), 1, start=4)
    assert len(resumed) == 2
    for (xa, ya), (xr, yr) in zip(a[4:], resumed):
        assert torch.equal(xa, xr) and torch.equal(ya, yr)
    other_epoch = _batches(make(), 2)
    assert not torch.equal(torch.cat([y for _, y in a]), torch.cat([y for _, y in other_epoch]))


def test_members_are_independent_and_match_solo_runs() -> None:
    images, labels = identity_set(48)
    kw = dict(batch_size=8, augment="crop_flip", pad=2, mean=[0.4] * 3, std=[0.3] * 3)
    fused = _batches(TrainLoader(images, labels, seeds=[5, 6, 7], **kw), 0)
    for g, seed in enumerate([5, 6, 7]):
        solo = _batches(TrainLoader(images, labels, seeds=[seed], **kw), 0)
        for (xf, yf), (xs, ys) in zip(fused, solo):
            assert torch.equal(xf[:, 3 * g:3 * g + 3], xs)
            assert torch.equal(yf[:, g:g + 1], ys)
    orders = torch.cat([y for _, y in fused])
    assert not torch.equal(orders[:, 0], orders[:, 1]) and not torch.equal(orders[:, 1], orders[:, 2])
    assert len({stream_seed(s, e) for s in range(4) for e in range(4)}) == 16


def _plan_reference(loader: TrainLoader, epoch: int) -> tuple[torch.Tensor, dict]:
    order, params = loader.plan(epoch)
    return order[0], {k: v[0] for k, v in params.items()}


def test_crop_flip_reproduces_shifted_and_mirrored_pixels() -> None:
    images, labels = identity_set(24)
    pad = 3
    loader = TrainLoader(images, labels, seeds=[11], batch_size=24, augment="crop_flip", pad=pad, normalize=False)
    (x, y), = _batches(loader, 0)
    order, p = _plan_reference(loader, 0)
    assert torch.equal(y[:, 0], order)
    assert p["flip"].any() and not p["flip"].all() and (p["dy"] != pad).any()
    for i in range(24):
        padded = F.pad(images[order[i]], (pad, pad, pad, pad))
        want = padded[:, p["dy"][i]:p["dy"][i] + 8, p["dx"][i]:p["dx"][i] + 8]
        if p["flip"][i]:
            want = want.flip(-1)
        assert torch.equal((x[i] * 255).round().to(torch.uint8), want), i


def test_flip_only_and_none() -> None:
    images, labels = identity_set(16)
    flip = TrainLoader(images, labels, seeds=[2], batch_size=16, augment="flip", normalize=False)
    (x, _), = _batches(flip, 0)
    order, p = _plan_reference(flip, 0)
    want = torch.where(p["flip"][:, None, None, None], images[order].flip(-1), images[order])
    assert torch.equal((x * 255).round().to(torch.uint8), want)
    none = TrainLoader(images, labels, seeds=[2], batch_size=16, augment="none", normalize=False)
    (x, _), = _batches(none, 0)
    order, _ = _plan_reference(none, 0)
    assert torch.equal((x * 255).round().to(torch.uint8), images[order])


def test_scale_crop_equals_resize_then_crop() -> None:
    images = ramp_images(6, h=16, w=16)
    aug = AUGMENTS.get("scale_crop")(Geometry((16, 16), (16, 16), pad=2))  # scale 16 → 20, crop 16
    p = aug.draw(6, torch.Generator().manual_seed(0))
    out = aug.apply(images, p)
    big = F.interpolate(images.float(), size=(20, 20), mode="bilinear", align_corners=False)
    for i in range(6):
        want = big[i, :, p["dy"][i]:p["dy"][i] + 16, p["dx"][i]:p["dx"][i] + 16]
        want = want.flip(-1) if p["flip"][i] else want
        torch.testing.assert_close(out[i], want, atol=1e-3, rtol=0)


def test_random_resized_crop_matches_torchvision() -> None:
    from torchvision.transforms import functional as TF

    images = ramp_images(32, h=16, w=16)
    aug = AUGMENTS.get("random_resized_crop")(Geometry((16, 16), (40, 40)))
    p = aug.draw(32, torch.Generator().manual_seed(0))
    x0, y0, w, h = p["box"].unbind(1)
    assert ((w >= 1) & (h >= 1) & (x0 >= 0) & (y0 >= 0) & (x0 + w <= 16) & (y0 + h <= 16)).all()
    area = w * h / 256
    assert (area >= 0.08 - 0.05).all() and (area <= 1).all() and area.std() > 0.1
    out = aug.apply(images, p)
    assert out.shape == (32, 3, 40, 40)
    for i in range(32):
        want = TF.resized_crop(images[i].float(), int(y0[i]), int(x0[i]), int(h[i]), int(w[i]), [40, 40],
                               antialias=False)
        want = want.flip(-1) if p["flip"][i] else want
        torch.testing.assert_close(out[i], want, atol=1e-3, rtol=0)


def test_shift_flip_and_boxes_agree_on_integer_crops() -> None:
    images = ramp_images(5, h=12, w=12).float()
    dy, dx = torch.tensor([0, 1, 2, 3, 4]), torch.tensor([4, 3, 2, 1, 0])
    flip = torch.tensor([True, False, True, False, True])
    shifted = shift_flip(images, dy, dx, flip, pad=2)
    boxes = torch.stack([dx - 2, dy - 2, torch.full((5,), 12), torch.full((5,), 12)], 1).float()
    inside = resample_boxes(images, boxes, flip, (12, 12))
    torch.testing.assert_close(shifted[:, :, 4:8, 4:8], inside[:, :, 4:8, 4:8])  # away from the zero border


def test_normalization_stats_and_resize_and_channels_last() -> None:
    images = make_glyphs(400, seed=1)[0]
    mean, std = channel_stats(images)
    x = images.double() / 255
    assert np.allclose(mean, x.mean((0, 2, 3)).numpy(), atol=1e-9)
    assert np.allclose(std, x.std((0, 2, 3), unbiased=False).numpy(), atol=1e-9)
    loader = EvalLoader(images, torch.zeros(400, dtype=torch.long), batch_size=400, mean=mean, std=std)
    (out, _), = list(loader)
    assert torch.allclose(out.mean((0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(out.std((0, 2, 3), unbiased=False), torch.ones(3), atol=1e-4)
    own = EvalLoader(images, torch.zeros(400, dtype=torch.long), batch_size=400)  # mean/std None: its own
    assert torch.allclose(next(iter(own))[0], out)
    raw = EvalLoader(images, torch.zeros(400, dtype=torch.long), batch_size=400, normalize=False)
    torch.testing.assert_close(next(iter(raw))[0], images.float() / 255, atol=1e-6, rtol=0)
    big = EvalLoader(images[:4], torch.zeros(4, dtype=torch.long), batch_size=4, normalize=False, out_size=40,
                     channels_last=True)
    xb = next(iter(big))[0]
    assert xb.shape == (4, 3, 40, 40) and xb.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(xb.mean((2, 3)), images[:4].float().mean((2, 3)) / 255, atol=0.02)
    train = TrainLoader(images, torch.zeros(400, dtype=torch.long), seeds=[0, 1], batch_size=8, out_size=24,
                        augment="random_resized_crop", channels_last=True)
    xt, _ = next(train.epoch(0))
    assert xt.shape == (8, 6, 24, 24) and xt.is_contiguous(memory_format=torch.channels_last)


def test_a_channel_with_one_value_is_refused_where_it_would_normalize(tmp_path: Path) -> None:
    """Red-only images (green and blue 0 throughout): the train split's own std of those channels is 0, so
    normalizing divided by 0 and every run "diverged" at step 1 with the advice to lower optim.lr. Refused in one
    line naming data.std and the channel; fixed constants, or no normalization, load it."""
    from PIL import Image

    rng = np.random.default_rng(4)
    for split in ("train", "test"):
        for cls in ("a", "b"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(2):
                pixels = np.zeros((6, 6, 3), dtype=np.uint8)
                pixels[..., 0] = rng.integers(0, 256, (6, 6))
                Image.fromarray(pixels).save(tmp_path / split / cls / f"{i}.png")
    cfg = {"name": "imagefolder", "path": str(tmp_path)}
    with pytest.raises(ConfigError, match=r"^data\.std: channel 1 of imagefolder's train split holds one value "
                                          r"\(0 in every pixel\).*data\.normalize false"):
        load_dataset(DataConfig(**cfg))
    with pytest.raises(ConfigError, match="data.std: channel 1"):   # a fixed mean alone leaves the split's own std
        load_dataset(DataConfig(**cfg, mean=[0.5, 0.0, 0.0]))
    assert load_dataset(DataConfig(**cfg, normalize=False)).std[1] == 0.0
    data = load_dataset(DataConfig(**cfg, mean=[0.5, 0.0, 0.0], std=[0.25, 1.0, 1.0]))
    loaders = build_loaders(data, DataConfig(**cfg, mean=[0.5, 0.0, 0.0], std=[0.25, 1.0, 1.0]), seeds=[0],
                            batch_size=4)
    assert torch.isfinite(next(iter(loaders.test))[0]).all()


def test_eval_loader_keeps_order_and_last_partial_batch() -> None:
    images, labels = identity_set(23)
    loader = EvalLoader(images, labels, batch_size=10, normalize=False)
    batches = list(loader)
    assert len(loader) == 3 and [len(y) for _, y in batches] == [10, 10, 3]
    assert torch.cat([y for _, y in batches]).tolist() == list(range(23))
    assert torch.equal((torch.cat([x for x, _ in batches]) * 255).round().to(torch.uint8), images)


def test_build_loaders_from_config() -> None:
    cfg = DataConfig(val_size=40, synthetic=SyntheticConfig(n_train=200, n_test=50), pad=2)
    data = load_dataset(cfg)
    loaders = build_loaders(data, cfg, seeds=[0, 1], batch_size=32, eval_batch_size=64)
    assert loaders.train.steps_per_epoch == 5 and set(loaders.evals()) == {"val", "test"}
    assert sum(len(y) for _, y in loaders.val) == 40


@pytest.mark.parametrize("resize", [None, 20])
def test_the_model_known_before_loading_is_the_model_the_loaded_dataset_builds(resize: int | None) -> None:
    from resnet_core.run_config import RunConfig
    rc = RunConfig.from_dict({"model": {"depth": 8},
                              "data": {"resize": resize, "synthetic": {"channels": 1, "num_classes": 5,
                                                                        "image_size": 12, "n_train": 40}}})
    model, size = rc.model_on_dataset()
    data = load_dataset(rc.data)
    assert model == rc.model.on_images(data.in_channels, data.num_classes)
    assert (model.in_channels, model.num_classes) == (1, 5) and size == (resize or data.image_size[0])
    mnist, mnist_size = RunConfig.from_dict({"data": {"name": "mnist"}}).model_on_dataset()
    assert (mnist.in_channels, mnist.num_classes, mnist_size) == (1, 10, 28)
    tree = RunConfig.from_dict({"data": {"name": "imagefolder", "path": "/nowhere", "resize": resize}})
    assert tree.model_on_dataset() == (tree.model, resize)   # known only once the tree loads


def test_seed_style_loader_matches_the_device_loader() -> None:
    images, labels = identity_set(20, h=16)
    data = LabeledImages(images, labels)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    plain = seed_style_loader(data, 8, 0, "none", mean, std, shuffle=False)
    device = EvalLoader(images, labels, batch_size=8, mean=mean, std=std)
    for (xs, ys), (xd, yd) in zip(plain, device):
        assert torch.equal(ys, yd)
        torch.testing.assert_close(xs, xd, atol=1e-5, rtol=0)
    augmented = seed_style_loader(data, 8, 0, "crop_flip", mean, std, seed=0)
    x, y = next(iter(augmented))
    assert x.shape == (8, 3, 16, 16) and y.shape == (8,)
    assert not torch.equal(y, torch.arange(8))  # shuffled
    scaled = seed_style_loader(data, 4, 0, "scale_crop", normalize=False, out_size=24, seed=0)
    assert next(iter(scaled))[0].shape == (4, 3, 24, 24)


# -- file sources ------------------------------------------------------------------------------------------------

def test_offline_torchvision_download_is_a_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets.cifar as cifar

    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(cifar, "download_and_extract_archive", offline)  # offline, even where a network exists
    with pytest.raises(ConfigError) as e:
        load_dataset(DataConfig(name="cifar10", root=str(tmp_path / "cache")))
    message = str(e.value)
    assert "\n" not in message
    for word in ("cifar10", str(tmp_path / "cache"), "cifar-10-python.tar.gz", "Name or service not known"):
        assert word in message
    with pytest.raises(ConfigError) as e:
        load_dataset(DataConfig(name="fashion_mnist", root=str(tmp_path), download=False))
    assert "fashion_mnist" in str(e.value) and "data.download is false" in str(e.value)
    # without a download torchvision extracts nothing: the hint names the extracted files, not the .gz it ignores
    assert "{train,t10k}-{images-idx3,labels-idx1}-ubyte (the .gz files gunzipped)" in str(e.value), e.value
    assert ".gz there" not in str(e.value)


def _write_png_tree(root: Path, sizes: dict[str, tuple[int, int]]) -> dict[str, list[np.ndarray]]:
    from PIL import Image

    rng = np.random.default_rng(0)
    written: dict[str, list[np.ndarray]] = {}
    for split in ("train", "test"):
        for cls in ("cat", "dog"):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(3):
                h, w = sizes.get(f"{split}/{cls}/{i}", (10, 10))
                pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
                written.setdefault(split, []).append(pixels)
    return written


def test_imagefolder_from_a_temp_tree(tmp_path: Path) -> None:
    written = _write_png_tree(tmp_path / "tree", {})
    data = load_dataset(DataConfig(name="imagefolder", path=str(tmp_path / "tree")))
    assert data.classes == ["cat", "dog"] and data.val is None
    assert data.train.images.shape == (6, 3, 10, 10) and data.train.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert np.array_equal(data.train.images[4].permute(1, 2, 0).numpy(), written["train"][4])  # PNG is lossless
    assert len(data.test) == 6

    _write_png_tree(tmp_path / "mixed", {"train/dog/1": (12, 9)})
    with pytest.raises(ConfigError, match="data.resize"):
        load_dataset(DataConfig(name="imagefolder", path=str(tmp_path / "mixed")))
    resized = load_dataset(DataConfig(name="imagefolder", path=str(tmp_path / "mixed"), resize=8))
    assert resized.train.images.shape == (6, 3, 8, 8)
    # every image of a split at one size, but test/ at another: a GAP net would evaluate at a size it never trained on
    _write_png_tree(tmp_path / "splits", {f"test/{c}/{i}": (12, 12) for c in ("cat", "dog") for i in range(3)})
    with pytest.raises(ConfigError, match=r"10x10 at train/cat/0.png and 12x12 at test/cat/0.png.*data.resize"):
        load_dataset(DataConfig(name="imagefolder", path=str(tmp_path / "splits")))
    resized = load_dataset(DataConfig(name="imagefolder", path=str(tmp_path / "splits"), resize=8))
    assert resized.train.images.shape[1:] == resized.test.images.shape[1:] == (3, 8, 8)
    with pytest.raises(ConfigError, match="train/"):
        load_dataset(DataConfig(name="imagefolder", path=str(tmp_path / "nowhere")))
    with pytest.raises(ConfigError, match="data.path"):
        load_dataset(DataConfig(name="imagefolder"))


def test_images_with_bytes_after_their_end_are_whole_and_a_cut_one_is_named(tmp_path: Path) -> None:
    """The check before a sweep reads each JPEG's and PNG's last bytes: one that does not end with its format's end
    marker is decoded to decide. A JPEG padded with zeros or followed by other bytes (as some cameras and tools
    write them) loads as it did; one cut short is refused naming it, as a trial's load would have."""
    from PIL import Image

    from resnet_core.data.imagefolder import check_imagefolder

    _write_png_tree(tmp_path / "tree", {})
    pixels = np.random.default_rng(1).integers(0, 256, (10, 10, 3), dtype=np.uint8)
    for name, extra in (("padded", b"\x00" * 100), ("trailer", b"more bytes after the EOI marker")):
        file = tmp_path / "tree" / "train" / "cat" / f"{name}.jpg"
        Image.fromarray(pixels).save(file, quality=95)
        file.write_bytes(file.read_bytes() + extra)
    data = load_dataset(DataConfig(name="imagefolder", path=str(tmp_path / "tree")))
    assert data.train.images.shape == (8, 3, 10, 10)
    file = tmp_path / "tree" / "train" / "dog" / "cut.png"
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (10, 10, 3), dtype=np.uint8)).save(file)
    file.write_bytes(file.read_bytes()[:-40])
    with pytest.raises(ConfigError, match=r"cannot read image .*train/dog/cut\.png"):
        check_imagefolder(tmp_path / "tree")


def test_a_grayscale_imagefolder_loads_with_one_channel_and_a_mixed_one_as_rgb(tmp_path: Path) -> None:
    """An MNIST-like tree of grayscale PNGs trained as 3 identical channels (torchvision's loader makes every image
    RGB): it loads with 1 channel, and its per-channel statistics are 1 value; one colour image makes it RGB."""
    from PIL import Image

    rng = np.random.default_rng(1)
    gray: dict[str, np.ndarray] = {}
    for split in ("train", "test"):
        for cls in ("zero", "one"):
            (tmp_path / "gray" / split / cls).mkdir(parents=True)
            for i in range(2):
                pixels = rng.integers(0, 256, (6, 6), dtype=np.uint8)
                Image.fromarray(pixels, mode="L").save(tmp_path / "gray" / split / cls / f"{i}.png")
                gray[f"{split}/{cls}/{i}"] = pixels
    data = load_dataset(DataConfig(name="imagefolder", path=str(tmp_path / "gray")))
    assert data.train.images.shape == (4, 1, 6, 6) and data.in_channels == 1 and len(data.mean) == 1
    assert np.array_equal(data.train.images[2, 0].numpy(), gray["train/zero/0"])   # classes sorted: one, zero

    colour = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
    Image.fromarray(colour).save(tmp_path / "gray" / "test" / "one" / "2.png")
    mixed = load_dataset(DataConfig(name="imagefolder", path=str(tmp_path / "gray")))
    assert mixed.train.images.shape == (4, 3, 6, 6) and mixed.in_channels == 3
    assert all(np.array_equal(mixed.train.images[2, c].numpy(), gray["train/zero/0"]) for c in range(3))
    assert np.array_equal(mixed.test.images[2].permute(1, 2, 0).numpy(), colour)


def test_a_16_bit_grayscale_imagefolder_is_scaled_to_8_bits_not_clipped(tmp_path: Path) -> None:
    """16-bit grayscale PNGs (microscopy, medical scans) load at their 8-bit equivalent, value / 257 to the nearest
    level (PIL's convert("L") clipped every value above 255: an all-white dataset, silently); a float image, whose
    range is unknown, is refused naming the file."""
    from PIL import Image

    rng = np.random.default_rng(2)
    wide: dict[str, np.ndarray] = {}
    for split in ("train", "test"):
        for cls in ("a", "b"):
            (tmp_path / "wide" / split / cls).mkdir(parents=True)
            pixels = rng.integers(0, 65536, (6, 6), dtype=np.uint16)
            Image.fromarray(pixels).save(tmp_path / "wide" / split / cls / "0.png")
            wide[f"{split}/{cls}"] = pixels
    assert Image.open(tmp_path / "wide" / "train" / "a" / "0.png").mode.startswith("I")
    data = load_dataset(DataConfig(name="imagefolder", path=str(tmp_path / "wide")))
    assert data.in_channels == 1
    expected = np.rint(wide["train/b"] / 257).astype(np.uint8)
    assert np.array_equal(data.train.images[1, 0].numpy(), expected)
    assert data.mean[0] == pytest.approx(0.5, abs=0.15)   # uniform 16-bit noise, not saturated at 1.0

    Image.fromarray(rng.random((6, 6), dtype=np.float32)).save(tmp_path / "wide" / "test" / "a" / "1.tiff")
    with pytest.raises(ConfigError, match=r"1\.tiff.*float"):
        load_dataset(DataConfig(name="imagefolder", path=str(tmp_path / "wide")))


def test_a_32_bit_integer_image_is_refused_and_a_16_bit_pgm_is_scaled(tmp_path: Path) -> None:
    """Pillow opens a 32-bit integer TIFF and a 16-bit PGM both in mode "I". The TIFF was scaled as if 16-bit
    (value / 257): an 8-bit range image stored as 32-bit integers loaded as 0 or 1, a black dataset that trains at
    chance, silently. Its range is unknown, so it is refused naming the file, as a float image is; a 16-bit PGM
    (Pillow scales its samples to 0…65535) still loads at its 8-bit equivalent."""
    from PIL import Image

    rng = np.random.default_rng(3)
    levels = {}
    for split in ("train", "test"):
        for cls in ("a", "b"):
            (tmp_path / "pgm" / split / cls).mkdir(parents=True)
            pixels = rng.integers(0, 65536, (6, 6), dtype=np.uint16)
            (tmp_path / "pgm" / split / cls / "0.pgm").write_bytes(b"P5\n6 6\n65535\n" + pixels.astype(">u2").tobytes())
            levels[f"{split}/{cls}"] = pixels
    assert Image.open(tmp_path / "pgm" / "train" / "a" / "0.pgm").mode == "I"
    data = load_dataset(DataConfig(name="imagefolder", path=str(tmp_path / "pgm")))
    assert np.array_equal(data.train.images[0, 0].numpy(), np.rint(levels["train/a"] / 257).astype(np.uint8))

    eight_bit = rng.integers(0, 256, (6, 6)).astype(np.int32)
    Image.fromarray(eight_bit, mode="I").save(tmp_path / "pgm" / "test" / "b" / "1.tiff")
    assert Image.open(tmp_path / "pgm" / "test" / "b" / "1.tiff").mode == "I"
    with pytest.raises(ConfigError, match=r"1\.tiff.*32-bit integer"):
        load_dataset(DataConfig(name="imagefolder", path=str(tmp_path / "pgm")))


def test_an_imagefolder_tree_skips_hidden_entries_and_follows_symlinked_folders(tmp_path: Path) -> None:
    """What a copied or downloaded tree carries besides its images: hidden folders (.ipynb_checkpoints/) and files
    (macOS's ._*.png, .DS_Store) are neither classes nor images, and images in a symlinked subfolder are loaded, in
    the check before a sweep as in the loading (the check refused both trees, or the loader read ._0.png)."""
    from resnet_core.data.imagefolder import check_imagefolder

    written = _write_png_tree(tmp_path / "tree", {})
    root = tmp_path / "tree"
    (root / "train" / ".ipynb_checkpoints").mkdir()
    (root / "train" / ".ipynb_checkpoints" / "notes.ipynb").write_text("{}")
    (root / "train" / "cat" / "._0.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    (root / "train" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    for split in ("train", "test"):   # a hidden folder of images in every split is no class either
        (root / split / ".thumbnails").mkdir()
        (root / split / ".thumbnails" / "0.png").write_bytes((root / split / "cat" / "0.png").read_bytes())
    linked = tmp_path / "linked"   # train/<class>/more -> a folder of images elsewhere
    for cls in ("cat", "dog"):
        (linked / "train" / cls).mkdir(parents=True)
        (linked / "train" / cls / "more").symlink_to(root / "train" / cls, target_is_directory=True)
    (linked / "test").symlink_to(root / "test", target_is_directory=True)
    for tree in (root, linked):
        assert check_imagefolder(tree) == tree
        data = load_dataset(DataConfig(name="imagefolder", path=str(tree)))
        assert data.classes == ["cat", "dog"]
        assert data.train.labels.tolist() == [0, 0, 0, 1, 1, 1] and len(data.test) == 6
        assert np.array_equal(data.train.images[4].permute(1, 2, 0).numpy(), written["train"][4])


def test_jpeg_archive_round_trip(tmp_path: Path) -> None:
    # smooth images survive JPEG closely; labels and class names exactly
    yy, xx = torch.meshgrid(torch.arange(16), torch.arange(16), indexing="ij")
    smooth = torch.stack([(xx * 12 + k * 20) % 256 for k in range(3)]).to(torch.uint8)
    train = LabeledImages(torch.stack([smooth, smooth.flip(-1), smooth.flip(-2), smooth]), torch.tensor([0, 1, 2, 1]))
    test = LabeledImages(torch.stack([smooth.flip(-1), smooth]), torch.tensor([2, 0]))
    path = write_jpeg_archive(tmp_path / "tiny.npz", train, test, ["a", "b", "c"], quality=95)
    with np.load(path) as z:
        assert sorted(z.files) == sorted(["classes", "train_jpeg", "train_offsets", "train_labels", "test_jpeg",
                                          "test_offsets", "test_labels"])
        assert z["train_offsets"].shape == (5,) and z["train_jpeg"].dtype == np.uint8
    got_train, got_test, classes = read_jpeg_archive(path)
    assert classes == ["a", "b", "c"]
    assert torch.equal(got_train.labels, train.labels) and torch.equal(got_test.labels, test.labels)
    assert (got_train.images.float() - train.images.float()).abs().mean() < 4
    data = load_dataset(DataConfig(name="cifar10_jpeg", path=str(path), val_size=1))
    assert (len(data.train), len(data.val), len(data.test), data.num_classes) == (3, 1, 2, 3)

    with pytest.raises(ConfigError, match="no JPEG archive"):
        load_dataset(DataConfig(name="cifar10_jpeg", path=str(tmp_path / "missing.npz")))
    np.savez(tmp_path / "wrong.npz", images=np.zeros(3))
    with pytest.raises(ConfigError, match="missing array"):
        load_dataset(DataConfig(name="cifar10_jpeg", path=str(tmp_path / "wrong.npz")))


def test_torchvision_sets_convert_to_nchw(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiny stand-ins for CIFAR-10's pickles and MNIST's idx files, read by torchvision itself."""
    import pickle

    import torchvision.datasets.cifar as cifar

    monkeypatch.setattr(cifar, "check_integrity", lambda *args, **kwargs: True)  # no md5 for the stand-ins
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    chw = rng.integers(0, 256, (12, 3, 32, 32), dtype=np.uint8)
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        rows = chw[2 * i:2 * i + 2]
        with open(folder / name, "wb") as f:
            pickle.dump({"data": rows.reshape(2, -1), "labels": [i, 9 - i]}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"c{k}" for k in range(10)]}, f)
    data = load_dataset(DataConfig(name="cifar10", root=str(tmp_path), download=False))
    assert data.train.images.shape == (10, 3, 32, 32) and data.test.images.shape == (2, 3, 32, 32)
    assert np.array_equal(data.train.images.numpy(), chw[:10]) and np.array_equal(data.test.images.numpy(), chw[10:])
    assert data.train.labels.tolist()[:4] == [0, 9, 1, 8] and data.classes[3] == "c3"

    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    digits = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    for split, n in (("train", 5), ("t10k", 3)):
        (raw / f"{split}-images-idx3-ubyte").write_bytes(
            np.array([0x0803, n, 28, 28], dtype=">i4").tobytes() + digits[:n].tobytes())
        (raw / f"{split}-labels-idx1-ubyte").write_bytes(
            np.array([0x0801, n], dtype=">i4").tobytes() + np.arange(n, dtype=np.uint8).tobytes())
    mnist = load_dataset(DataConfig(name="mnist", root=str(tmp_path), download=False))
    assert mnist.in_channels == 1 and mnist.train.images.shape == (5, 1, 28, 28) and len(mnist.test) == 3
    assert np.array_equal(mnist.train.images[:, 0].numpy(), digits) and mnist.num_classes == 10


def test_torch_loader_behind_the_same_interface() -> None:
    cfg = DataConfig(loader="torch", synthetic=SyntheticConfig(n_train=64, n_test=20), augment="none")
    data = load_dataset(cfg)
    loaders = build_loaders(data, cfg, seeds=[3], batch_size=16, eval_batch_size=8)
    assert loaders.train.steps_per_epoch == 4 and loaders.train.members == 1
    batches = list(loaders.train.epoch(0))
    x, y = batches[0]
    assert len(batches) == 4 and x.shape == (16, 3, 16, 16) and y.shape == (16, 1)
    again = list(loaders.train.epoch(0, start=2))  # same order for (seed, epoch); resumable
    assert all(torch.equal(a[1], b[1]) for a, b in zip(batches[2:], again))
    device = build_loaders(data, DataConfig(synthetic=cfg.synthetic), seeds=[3], batch_size=16, eval_batch_size=8)
    for (xt, _), (xd, _) in zip(loaders.test, device.test):
        torch.testing.assert_close(xt, xd, atol=1e-5, rtol=0)
    with pytest.raises(ConfigError, match="one member"):
        build_loaders(data, cfg, seeds=[0, 1], batch_size=16)
