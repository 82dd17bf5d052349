"""Named model configs: the papers' networks and the four seed programs' networks."""
from __future__ import annotations

from .config import ModelConfig
from .errors import choices_error
from .families import get_family
from .stems import STEMS


def _cifar(depth: int, **kw) -> dict:
    return {"family": "cifar", "depth": depth, **kw}


def _imagenet(depth: int, **kw) -> dict:
    return {"family": "imagenet", "depth": depth, "shortcut": "conv1x1", "num_classes": 1000, **kw}


NAMED_MODELS: dict[str, dict] = {
    **{f"resnet{d}": _cifar(d) for d in (20, 32, 44, 56, 110, 1202)},
    **{f"plain{d}": _cifar(d, shortcut="none") for d in (20, 32, 44, 56, 110)},
    "preresnet110": _cifar(110, activation="pre"),
    "preresnet164": _cifar(164, activation="pre", shortcut="conv1x1"),
    "preresnet1001": _cifar(1001, activation="pre", shortcut="conv1x1"),
    **{f"resnet{d}-imagenet": _imagenet(d) for d in (18, 34, 50, 101, 152)},
    "plain34-imagenet": _imagenet(34, shortcut="none"),
    # The seed programs (docs/seeds.md).
    "seed001-resnet34": _imagenet(34, num_classes=10, project_stage_entry=True),
    "seed002-d2l-resnet18": _imagenet(18, num_classes=10, in_channels=1, conv_bias=True, shortcut_norm=False,
                                      init="xavier"),
    "seed003-resnet50-cifar": _imagenet(50, num_classes=10, stem="cifar"),
    "seed004-resnet20-conv3x3": _cifar(20, shortcut="conv3x3"),
}

def input_size(cfg: ModelConfig) -> int:
    """The image size a model is usually run at (FLOPs are quoted there): its stem's registered ``input_size``, else
    (a user's stem registered without one) its family's stem's, else the CIFAR stem's."""
    r = cfg.resolved()
    return (STEMS.meta(r.stem).get("input_size") or STEMS.meta(get_family(r.family).stem).get("input_size")
            or STEMS.meta("cifar")["input_size"])


def named_model(name: str) -> ModelConfig:
    if name not in NAMED_MODELS:
        raise choices_error("model name", name, NAMED_MODELS)
    return ModelConfig.from_dict(NAMED_MODELS[name])
