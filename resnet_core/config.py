"""`ModelConfig`: one small dataclass that describes a network. Parts are named by string.

The allowed names of a part are its registry's (`shortcuts.SHORTCUTS`, `placements.PLACEMENTS`, `inits.INITS`, …): a
part registered there — built in or by a plugin — is a valid value here, with nothing else to edit."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .effect import Unread
from .errors import ConfigError, choices_error
from .values import check_fields, positive_ints
from .families import FAMILIES, default_block, depth_of, get_family, stages_for
from .blocks import BLOCKS
from .inits import BIAS_INITS, INITS
from .placements import PLACEMENTS as ACTIVATIONS
from .pooling import POOLINGS
from .registry import Registry
from .shortcuts import SHORTCUTS
from .stems import STEMS

# config key → the registry whose names it takes (block and stem also take "auto")
PART_KEYS: dict[str, Registry] = {"family": FAMILIES, "block": BLOCKS, "shortcut": SHORTCUTS,
                                  "activation": ACTIVATIONS, "pooling": POOLINGS, "stem": STEMS,
                                  "init": INITS, "bias_init": BIAS_INITS}


def projecting_shortcuts() -> list[str]:
    """The shortcuts that model.project_all / project_stage_entry can ask to project (registered ``projection``)."""
    return [n for n in SHORTCUTS if SHORTCUTS.meta(n).get("projection")]


@dataclass
class ModelConfig:
    family: str = "cifar"              # stage layout: cifar (3 stages, 16/32/64) | imagenet (4, 64…512) | a plugin's
    depth: int | None = 20             # cifar 6n+2 (basic) / 9n+2 (bottleneck); imagenet 18/34/50/101/152
    block: str = "auto"                # basic | bottleneck | auto (the papers' choice for the depth)
    shortcut: str = "identity"         # identity (option A) | conv1x1 | conv3x3 (option B) | none (plain net) | …
    project_all: bool = False          # projection on every block (option C); needs a conv shortcut
    project_stage_entry: bool = False  # projection on the first block of every stage, even if shapes match (seed 001)
    shortcut_norm: bool = True         # BN after a projection conv (seed 002 has none)
    activation: str = "post"           # post | pre | bn_after_add | relu_before_add | relu_only_pre (He 2016b, Tab. 2)
    pooling: str = "avg"               # avg (GAP) | max (GMP)
    stem: str = "auto"                 # cifar (3×3/1) | imagenet (7×7/2 + 3×3/2 max-pool) | auto (the family's)
    in_channels: int = 3               # 1 for (Fashion-)MNIST
    num_classes: int = 10
    width: float = 1.0                 # multiplier on every stage width
    conv_bias: bool = False            # biased convolutions (seed 002, d2l)
    init: str = "kaiming"              # kaiming | xavier (seed 002) | pytorch (the layers' own defaults: seeds 003, 004)
    bias_init: str = "zero"            # conv biases: zero | default (PyTorch's U(±1/sqrt(fan_in)), as seed 002 keeps)
    zero_init_residual: bool = False   # zero the last BN (or conv) of each residual branch
    stages: list[int] | None = None    # explicit blocks per stage (instead of depth)
    widths: list[int] | None = None    # explicit base width per stage (default: the family's)

    def __post_init__(self) -> None:
        self.validate()

    # -- validation ---------------------------------------------------------------------------------------------
    def validate(self) -> None:
        check_fields(self, "model.", choices={key: registry.names() + (["auto"] if key in ("block", "stem") else [])
                                              for key, registry in PART_KEYS.items()}, parts=PART_KEYS)
        for key in ("in_channels", "num_classes"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"model.{key} must be a positive integer, got {value!r}")
        if not isinstance(self.width, (int, float)) or isinstance(self.width, bool) or self.width <= 0:
            raise ConfigError(f"model.width must be a positive number, got {self.width!r}")
        for key in ("project_all", "project_stage_entry", "shortcut_norm", "conv_bias", "zero_init_residual"):
            if not isinstance(getattr(self, key), bool):
                raise ConfigError(f"model.{key} must be true or false, got {getattr(self, key)!r}")
        if (self.project_all or self.project_stage_entry) and not SHORTCUTS.meta(self.shortcut).get("projection"):
            raise ConfigError(f"model.project_all/project_stage_entry need model.shortcut "
                              f"{' or '.join(projecting_shortcuts())}, got {self.shortcut!r}")
        if self.stages is None and self.depth is None:
            raise ConfigError("model.depth or model.stages must be given")
        if self.depth is not None and (not isinstance(self.depth, int) or isinstance(self.depth, bool)):
            raise ConfigError(f"model.depth must be an integer, got {self.depth!r}")
        if self.stages is not None:
            if not positive_ints(self.stages):
                raise ConfigError(f"model.stages must be a list of positive integers, got {self.stages!r}")
        if self.widths is not None:
            n_stages = len(self.stages) if self.stages is not None else len(get_family(self.family).widths)
            if not positive_ints(self.widths) or len(self.widths) != n_stages:
                raise ConfigError(f"model.widths must be {n_stages} positive integers, got {self.widths!r}")
        self.resolved()  # raises on an impossible depth

    def unread(self) -> dict[str, Unread]:
        """The keys this model's parts do not read (key → why): conv biases' init without conv biases, the residual
        branch's zero init under a placement with nothing to zero, the projection's BN and switches with a shortcut that
        never projects (a shortcut that reads them registers ``projection=True``), the stage-entry projection where
        every block projects."""
        out: dict[str, Unread] = {}
        if not self.conv_bias:
            out["bias_init"] = Unread("model.conv_bias true, got false", "no convolution has a bias")
        if ACTIVATIONS.get(self.activation).zero_init == "none":
            zeroing = [n for n in ACTIVATIONS if ACTIVATIONS.get(n).zero_init != "none"]
            out["zero_init_residual"] = Unread(f"model.activation {' or '.join(zeroing)}, got {self.activation!r}",
                                               f"{self.activation}'s residual branch ends in no layer to zero")
        if not SHORTCUTS.meta(self.shortcut).get("projection"):
            out.update({key: Unread(f"model.shortcut {' or '.join(projecting_shortcuts())}, got {self.shortcut!r}",
                                    f"{self.shortcut} never projects")
                        for key in ("shortcut_norm", "project_all", "project_stage_entry")})
        elif self.project_all:
            out["project_stage_entry"] = Unread("model.project_all false, got true", "every block projects")
        return out

    # -- resolution ---------------------------------------------------------------------------------------------
    def resolved(self) -> "ModelConfig":
        """A copy with every `auto` replaced and `stages`/`widths`/`depth` made explicit and consistent."""
        block = self.block
        if self.stages is not None:
            block = "basic" if block == "auto" else block
            stages = tuple(self.stages)
            depth = depth_of(stages, block)
            if self.depth is not None and self.depth != depth:
                raise ConfigError(f"model.depth {self.depth} disagrees with model.stages {list(stages)} "
                                  f"({block} blocks give depth {depth}); give one of them")
        else:
            block = default_block(self.family, self.depth) if block == "auto" else block
            stages = stages_for(self.family, self.depth, block)
            depth = self.depth
        base = self.widths or list(get_family(self.family).widths)[: len(stages)]
        if len(base) != len(stages):
            raise ConfigError(f"model.stages has {len(stages)} stages but family {self.family} has "
                              f"{len(base)} widths; give model.widths")
        widths = [max(1, round(w * self.width)) for w in base]
        stem = get_family(self.family).stem if self.stem == "auto" else self.stem
        resolved = object.__new__(ModelConfig)  # skip __post_init__: resolving must not recurse into validate()
        resolved.__dict__.update(self.__dict__, depth=depth, block=block, stem=stem, stages=list(stages),
                                 widths=widths, width=1.0)
        return resolved

    def on_images(self, channels: int, classes: int) -> "ModelConfig":
        """A copy that takes ``channels``-channel images and predicts ``classes`` classes: the model a dataset
        builds (the dataset sets ``in_channels`` and ``num_classes``, not the config)."""
        return dataclasses.replace(self, in_channels=channels, num_classes=classes)

    # -- (de)serialisation --------------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "ModelConfig":
        d = dict(d or {})
        valid = [f.name for f in dataclasses.fields(cls)]
        for key in d:
            if key not in valid:
                raise choices_error("model key", key, valid)
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def is_plain(self) -> bool:
        return self.shortcut == "none"

    def describe(self) -> str:
        r = self.resolved()
        kind = "plain" if self.is_plain else "ResNet"
        return (f"{kind}-{r.depth} ({r.family}, {r.block}, shortcut={r.shortcut}, activation={r.activation}, "
                f"pooling={r.pooling}, stages={r.stages}, widths={r.widths})")
