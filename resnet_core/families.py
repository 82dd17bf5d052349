"""Stage layouts (`FAMILIES`): how a family and a depth become blocks per stage and widths (as in the papers).

A family is one registration, ``FAMILIES.register(name, label=…)(Family(widths=…, stem=…))``, built in or from a
plugin (`resnet_core.plugins`); `ModelConfig` accepts exactly the registered names. `stages_for` and
`default_block` ask the family and check its answers, so a plugin's family that answers wrongly is a one-line
ConfigError naming it (and its file) when the config is read, before anything is written.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from .blocks import BLOCKS, convs_per_block
from .errors import ConfigError, first_line
from .registry import Registry
from .stems import STEMS
from .values import positive_ints

# He et al. 2016, Table 1: ImageNet depth -> (block, blocks per stage).
IMAGENET_STAGES = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
CIFAR_BOTTLENECK_DEPTHS = (164, 1001)  # He et al. 2016b's pre-activation bottleneck nets
DEPTH_EXAMPLES = {"basic": "20, 32, 44, 56, 110, 1202", "bottleneck": "29, 47, 56, 110, 164, 1001"}  # 3 stages


def equal_stages(*, depth: int, block: str, family: str) -> tuple[int, ...]:
    """n blocks in every stage: depth = (stages × convs per block)·n + 2 (He et al. 2016 §4.2: 6n+2 for three
    stages of basic blocks, 9n+2 of bottlenecks); an impossible depth is a ConfigError that gives the rule."""
    n_stages = len(FAMILIES.get(family).widths)
    per_stage = n_stages * convs_per_block(block)
    n, rest = divmod(depth - 2, per_stage)
    if rest or n < 1:
        examples = (DEPTH_EXAMPLES.get(block) if n_stages == 3 else None) \
            or ", ".join(str(per_stage * k + 2) for k in (1, 2, 3, 6))
        raise ConfigError(f"model.depth {depth} is impossible for family {family} with {block} blocks: depth must be "
                          f"{per_stage}n+2 (e.g. {examples})")
    return (n,) * n_stages


def equal_block(*, depth: int, family: str) -> str:
    """Bottleneck where only bottlenecks give the depth (three stages: 9n+2 but not 6n+2) and at He et al. 2016b's
    164 and 1001 (three stages); else basic."""
    n_stages = len(FAMILIES.get(family).widths)
    paper = n_stages == 3 and depth in CIFAR_BOTTLENECK_DEPTHS
    only_bottleneck = (depth - 2) % (2 * n_stages) != 0 and (depth - 2) % (3 * n_stages) == 0
    return "bottleneck" if paper or only_bottleneck else "basic"


def table_layout(table: Mapping[int, tuple[str, Sequence[int]]]) -> dict[str, Callable[..., Any]]:
    """``stages`` and ``block`` for a `Family` whose depths are a table, depth → (block, blocks per stage), as He
    et al. 2016's Table 1; another depth is a ConfigError that lists the table's depths for the block."""
    def stages(*, depth: int, block: str, family: str) -> tuple[int, ...]:
        valid = [d for d, (b, _) in table.items() if b == block]
        if depth not in valid:
            raise ConfigError(f"model.depth {depth} is impossible for family {family} with {block} blocks; "
                              f"choose one of: {', '.join(map(str, valid))} (or give model.stages)")
        return tuple(table[depth][1])

    def default(*, depth: int, family: str) -> str:
        return table[depth][0] if depth in table else "basic"

    return {"stages": stages, "block": default}


@dataclass(frozen=True)
class Family:
    """A stage layout. ``widths``: base channels per stage (before ``model.width``); ``stem``: the STEMS name that
    ``stem: auto`` picks; ``stages(depth=, block=, family=)`` → blocks per stage, one per width, or a ConfigError
    that names the possible depths (``family``: the registered name, for that message); ``block(depth=, family=)``
    → the block ``block: auto`` picks. The defaults are the CIFAR rule, n blocks per stage (`equal_stages`)."""

    widths: Sequence[int]
    stem: str
    stages: Callable[..., Sequence[int]] = equal_stages
    block: Callable[..., str] = equal_block


FAMILIES: Registry[Family] = Registry("model.family")
FAMILIES.register("cifar")(Family(widths=(16, 32, 64), stem="cifar"))  # He et al. 2016 §4.2; 2016b for 164/1001
FAMILIES.register("imagenet")(Family(widths=(64, 128, 256, 512), stem="imagenet", **table_layout(IMAGENET_STAGES)))


def _whose(name: str) -> str:
    source = FAMILIES.source(name)
    return f"model.family {name!r}" + (f" (from {source})" if source else "")


def get_family(name: str) -> Family:
    """The registered family, checked: one that is not a `Family`, has no positive widths or names an unregistered
    stem is a one-line ConfigError naming it."""
    fam = FAMILIES.get(name)
    if not isinstance(fam, Family):
        raise ConfigError(f"{_whose(name)} is a {type(fam).__name__}; register a resnet_core.families.Family")
    if not positive_ints(fam.widths):
        raise ConfigError(f"{_whose(name)} has widths {fam.widths!r}; give positive integers, one per stage")
    if not isinstance(fam.stem, str) or fam.stem not in STEMS:
        raise ConfigError(f"{_whose(name)} names stem {fam.stem!r}; choose one of: {', '.join(STEMS)}")
    return fam


def _ask(name: str, method: Callable[..., Any], **kwargs: Any) -> Any:
    """``method(**kwargs)``; its ConfigError as it is (an impossible depth), any other error one line naming the
    family (a plugin's code may raise anything)."""
    try:
        return method(**kwargs)
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 - a user family (plugin) may raise anything
        raise ConfigError(f"{_whose(name)} failed: {first_line(e)}") from None


def default_block(name: str, depth: int) -> str:
    """The block ``block: auto`` gives at this depth, as the family says."""
    block = _ask(name, get_family(name).block, depth=depth, family=name)
    if not isinstance(block, str) or block not in BLOCKS:
        raise ConfigError(f"{_whose(name)} picks block {block!r} for depth {depth}; choose one of: "
                          f"{', '.join(BLOCKS)}")
    return block


def stages_for(name: str, depth: int, block: str) -> tuple[int, ...]:
    """Blocks per stage, as the family says; an impossible depth is a ConfigError that says which depths exist, and
    an answer that is not one positive integer per width is a ConfigError naming the family."""
    fam = get_family(name)
    stages = _ask(name, fam.stages, depth=depth, block=block, family=name)
    if not positive_ints(stages) or len(stages) != len(fam.widths):
        raise ConfigError(f"{_whose(name)} returns stages {stages!r} for depth {depth} with {block} blocks; it must "
                          f"return {len(fam.widths)} positive integers, one per width {list(fam.widths)}")
    return tuple(stages)


def depth_of(stages: tuple[int, ...], block: str) -> int:
    return 2 + convs_per_block(block) * sum(stages)
