"""Stage layouts: how a family and a depth become blocks per stage and widths (as in the papers)."""
from __future__ import annotations

from .errors import ConfigError

FAMILY_WIDTHS = {"cifar": (16, 32, 64), "imagenet": (64, 128, 256, 512)}

# He et al. 2016, Table 1: ImageNet depth -> (block, blocks per stage).
IMAGENET_STAGES = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
CIFAR_BOTTLENECK_DEPTHS = (164, 1001)  # He et al. 2016b's pre-activation bottleneck nets
DEPTH_EXAMPLES = {"basic": "20, 32, 44, 56, 110, 1202", "bottleneck": "29, 47, 56, 110, 164, 1001"}


def _convs(block: str) -> int:
    """Convs per block (the block registry knows): depth = stem conv + convs in all blocks + fc."""
    from .blocks import convs_per_block

    return convs_per_block(block)


def default_block(family: str, depth: int) -> str:
    if family == "imagenet":
        return IMAGENET_STAGES[depth][0] if depth in IMAGENET_STAGES else "basic"
    if depth in CIFAR_BOTTLENECK_DEPTHS or (depth - 2) % 6 != 0 and (depth - 2) % 9 == 0:
        return "bottleneck"
    return "basic"


def stages_for(family: str, depth: int, block: str) -> tuple[int, ...]:
    """Blocks per stage; an impossible depth is a ConfigError that says which depths exist."""
    if family == "imagenet":
        valid = [d for d, (b, _) in IMAGENET_STAGES.items() if b == block]
        if depth not in valid:
            raise ConfigError(f"model.depth {depth} is impossible for family imagenet with {block} blocks; "
                              f"choose one of: {', '.join(map(str, valid))} (or give model.stages)")
        return IMAGENET_STAGES[depth][1]
    per_stage = 3 * _convs(block)
    n, rest = divmod(depth - 2, per_stage)
    if rest or n < 1:
        examples = DEPTH_EXAMPLES.get(block) or ", ".join(str(per_stage * k + 2) for k in (1, 2, 3, 6))
        raise ConfigError(f"model.depth {depth} is impossible for family cifar with {block} blocks: depth must be "
                          f"{per_stage}n+2 (e.g. {examples})")
    return (n, n, n)


def depth_of(stages: tuple[int, ...], block: str) -> int:
    return 2 + _convs(block) * sum(stages)
