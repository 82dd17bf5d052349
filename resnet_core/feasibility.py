"""Can a run config train at all? Checked before anything is created (a study, a run folder), so a combination no
trial can train is one config error, not N failed trials.

``check_trainable`` runs the model forward once on the ``meta`` device (shapes only, no memory, no compute) in train
mode with the run's image size and batch size: a feature map that shrinks below the kernel, or BatchNorm with one
value per channel (e.g. the ImageNet stem on 16-pixel images at ``batch_size: 1``), raises there exactly as it
would in the first training step; so does a plugin's part that raises, or whose output has the wrong shape (a
shortcut not of its block's shape, which the addition would broadcast without a word; a pooling not ``[B, C]``),
and the error names the plugin parts the model uses. It also needs at least one full batch per epoch (the train
loader drops the last partial batch). ``check_fusable`` builds a model with plugin parts as fused members on
``meta``: a part that is not member-aware is refused there, before a sweep fuses it.
"""
from __future__ import annotations

import functools
import json
from typing import Any

from .errors import ConfigError


def train_count(n_train: int, val_size: int | float) -> int:
    """Training images left after the val split is held out (``data.val_size``: a count or a fraction)."""
    n_val = int(val_size * n_train) if isinstance(val_size, float) else int(val_size)
    return n_train - n_val


class PartShapeError(ValueError):
    """A registered part returned a tensor of the wrong shape."""


def _check_shapes(model: Any) -> None:
    """Hooks that raise `PartShapeError` where a shortcut's output is not its block's shape (the addition would
    broadcast it silently) or the pooling's is not ``[B, channels]``."""
    cfg = model.cfg.resolved()
    for _, block in model.blocks():
        if block.shortcut is not None:
            _hook_shortcut(block, cfg.shortcut)
    model.pool.register_forward_hook(functools.partial(_pool_hook, cfg.pooling, model.feature_channels))


def _hook_shortcut(block: Any, name: str) -> None:
    seen: dict[str, Any] = {}
    block.shortcut.register_forward_hook(lambda _m, _x, out: seen.update(shape=tuple(out.shape)))

    def check(_m: Any, _x: Any, out: Any) -> None:
        if seen.get("shape") != tuple(out.shape):
            raise PartShapeError(f"model.shortcut {name!r} returns {list(seen.get('shape', ()))} where its "
                                 f"block's output is {list(out.shape)}")
    block.register_forward_hook(check)


def _pool_hook(name: str, channels: int, _m: Any, x: Any, out: Any) -> None:
    want = [x[0].shape[0], channels]
    if list(out.shape) != want:
        raise PartShapeError(f"model.pooling {name!r} returns {list(out.shape)} for features "
                             f"{list(x[0].shape)}; it must return {want} ([batch, channels])")


@functools.lru_cache(maxsize=4096)
def _forward_error(model_json: str, channels: int, size: int, batch: int) -> tuple[str, bool] | None:
    """The first line of the error one training forward raises, and whether a part broke its shape contract."""
    import torch

    from .config import ModelConfig
    from .flops import counting_forward
    from .model import build_model

    cfg = ModelConfig.from_dict(json.loads(model_json))
    try:
        with torch.device("meta"):
            model = build_model(cfg)
            _check_shapes(model)
            model.train()
            counting_forward(model, torch.empty(batch, channels, size, size), cfg)   # the estimate reads its FLOPs
    except PartShapeError as e:
        return str(e), True
    except Exception as e:  # noqa: BLE001 - a user part (plugin) may raise anything while it is built or run
        text = str(e).strip().splitlines()
        kind = "" if isinstance(e, (RuntimeError, ValueError)) else f"{type(e).__name__}: "
        return (f"{kind}{text[0][:200]}" if text else type(e).__name__), False
    return None


def user_parts(model: Any) -> list[str]:
    """The model's parts that a plugin registered, each as ``model.KEY 'name' (from FILE)``."""
    from .config import PART_KEYS

    out = []
    for key, registry in PART_KEYS.items():
        name = getattr(model, key)
        if registry.source(name):
            out.append(f"model.{key} {name!r} (from {registry.source(name)})")
    return out


def any_user_parts() -> bool:
    """Whether a plugin has registered any model part in this process (`user_parts` names a model's)."""
    from .config import PART_KEYS

    return any(registry.source(name) for registry in PART_KEYS.values() for name in registry.names())


def check_forward(model: Any, *, channels: int, size: int, batch_size: int = 2) -> None:
    """Raise a one-line ``ConfigError`` if model config ``model`` cannot run one training forward on a batch of
    ``channels`` × ``size`` × ``size`` images; it names the plugin parts the model uses."""
    # BatchNorm needs > 1 value per channel; a batch of 2 is as good as any larger one for every shape check
    found = _forward_error(json.dumps(model.to_dict(), sort_keys=True), channels, size, min(batch_size, 2))
    if found is None:
        return
    error, contract = found
    r, parts = model.resolved(), user_parts(model)
    where = "" if contract else f"model.stem {r.stem}, {len(r.stages)} stages on {size}x{size} images at " \
                                f"batch_size {batch_size}: "
    whose = f" (user parts: {'; '.join(parts)})" if parts else ""
    raise ConfigError(f"this config cannot train: {where}{error}{whose}")


@functools.lru_cache(maxsize=4096)
def _fusion_error(model_json: str, members: int) -> str | None:
    """The one-line error a fused build of ``members`` members raises (shapes only, on the ``meta`` device)."""
    import torch

    from .config import ModelConfig
    from .model import build_model

    try:
        with torch.device("meta"):
            build_model(ModelConfig.from_dict(json.loads(model_json)), members=members)
    except ConfigError as e:
        return str(e)
    except Exception as e:  # noqa: BLE001 - a user part (plugin) may raise anything while it is built
        text = str(e).strip().splitlines()
        return f"this model cannot train as {members} fused members: {type(e).__name__}: " + (text[0][:200] if text
                                                                                              else "")
    return None


# how far a fused member's logits may be from its solo model's, relative to their norm: the two agree to ~1e-15 in
# float64 (~1e-6 in float32), and a part that mixes the members moves them by far more (tests/test_plugins.py)
FUSED_FORWARD_RTOL = {"float64": 1e-9, "float32": 1e-4}


@functools.lru_cache(maxsize=256)
def _fused_forward_error(model_json: str, channels: int, size: int, known: bool) -> str | None:
    """Why one training forward of 2 fused members on the CPU (a batch of 2 images of ``channels`` × ``size`` ×
    ``size`` each; float64, or float32 where a part fails in float64) is not what each member's solo model
    computes on its own images, else None: a forward that draws from torch's generator (fused members share the
    draws that separate runs take from their own seeds), or member logits that differ from the solo model's (a
    part that mixes the members' channels). Where the images' shape is not ``known`` (an ImageFolder tree: its
    channels are found as it loads), a forward that raises is no verdict."""
    import torch

    try:
        return _compare_fused_forward(model_json, channels, size, torch.float64)
    except Exception:  # noqa: BLE001 - a user part may hold float32 tensors of its own: compared in float32
        pass
    try:
        return _compare_fused_forward(model_json, channels, size, torch.float32)
    except Exception as e:  # noqa: BLE001 - a user part (plugin) may raise anything
        text = str(e).strip().splitlines()
        return f"its fused forward raised {type(e).__name__}: " + (text[0][:200] if text else "") if known else None


def _compare_fused_forward(model_json: str, channels: int, size: int, dtype: Any) -> str | None:
    import torch

    from .config import ModelConfig
    from .model import build_model, member_state_dict

    cfg, G = ModelConfig.from_dict(json.loads(model_json)), 2
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(0)
        fused = build_model(cfg, members=G, seeds=range(G)).to(dtype).train()
        x = torch.randn(2, G * channels, size, size, dtype=dtype)
        drawn = torch.random.get_rng_state()
        out = fused(x)
        if not torch.equal(drawn, torch.random.get_rng_state()):
            return ("a part draws random numbers in its forward (torch's generator): fused members would share "
                    "draws that separate runs take from their own seeds")
        for g in range(G):
            solo = build_model(cfg).to(dtype)
            solo.load_state_dict(member_state_dict(fused, g))
            own = solo.train()(x[:, g * channels:(g + 1) * channels])
            diff = float((out[:, g] - own).norm() / own.norm().clamp_min(1e-30))
            if not diff <= FUSED_FORWARD_RTOL[str(dtype).removeprefix("torch.")]:
                return (f"member {g}'s logits differ from its own model's on its own images by {diff:.2g} of "
                        f"their norm (a part that mixes the members' channels)")
    return None


def check_fusable(model: Any, members: int, *, size: int | None = None) -> None:
    """Raise a one-line ``ConfigError`` if model config ``model`` (its ``in_channels`` and ``num_classes`` the
    dataset's) cannot train as ``members`` fused members that each compute what a separate run would: a plugin part
    that is not member-aware in its tensors (`model.member_layout_error`, a build on ``meta``) or in its forward
    (one float64 forward on the CPU, on ``size`` × ``size`` images: a part that draws random numbers or mixes the
    members). ``size`` None: the dataset's shape is not known before it loads; the model's usual input size stands
    in, and a forward that fails there is not held against the part. It names the plugin parts the model uses. A model of built-in
    parts only is not checked here: each of them is member-aware (tests/test_fused_model.py)."""
    from .zoo import input_size

    parts = user_parts(model)
    if members < 2 or not parts:
        return
    model_json = json.dumps(model.to_dict(), sort_keys=True)
    error = _fusion_error(model_json, min(members, 2))
    if error is None:
        error = _fused_forward_error(model_json, model.in_channels, size or input_size(model), size is not None)
        if error is not None:
            error = (f"this model cannot train as {members} fused members: {error}; a part's forward must treat "
                     f"each member's channels as its own and draw no random numbers (docs/models.md), or train "
                     f"unfused (sweep --fuse off)")
    if error is not None:
        raise ConfigError(f"{error} (user parts: {'; '.join(parts)})")


def check_batches(rc: Any, n_train: int) -> None:
    """Raise a one-line ``ConfigError`` if the ``n_train`` training images (before the val split) of run config
    ``rc`` leave none to train on, or no full batch."""
    n = train_count(n_train, rc.data.val_size)
    if n <= 0:
        raise ConfigError(f"data.val_size {rc.data.val_size!r} holds out {n_train - n} images but the train split "
                          f"has only n_train {n_train}: no training images would be left; give data.val_size "
                          f"below {n_train} (or a fraction in [0, 1))")
    if n < rc.batch_size:
        raise ConfigError(f"batch_size {rc.batch_size} is larger than the {n} training images left after "
                          f"data.val_size {rc.data.val_size!r}: an epoch would have no full batch")


def check_trainable(rc: Any, *, image_size: int, channels: int, classes: int, n_train: int | None = None) -> None:
    """Raise a one-line ``ConfigError`` if run config ``rc`` cannot take one training step on images of
    ``channels`` × ``image_size`` × ``image_size`` (before ``data.resize``) with ``classes`` classes, or if the
    ``n_train`` training images (before the val split) give no full batch."""
    size = rc.data.resize or image_size
    if n_train is not None:
        check_batches(rc, n_train)
    model = rc.model.on_images(channels, classes)
    check_forward(model, channels=channels, size=size, batch_size=rc.batch_size)
