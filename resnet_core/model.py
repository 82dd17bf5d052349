"""`ResNet` and `build_model`: stem → stages of residual blocks → (final BN-ReLU) → global pool → fc.

`build_model(cfg, members=G)` builds G independent members as one fused module (docs/fused_trials.md): member g
reads input channels ``in_channels·g … in_channels·(g+1)−1`` and writes logits ``[:, g]``. `members=1` is the
ordinary model.
"""
from __future__ import annotations

import dataclasses
from collections import OrderedDict
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import BLOCKS, ResidualBlock
from .config import ModelConfig
from .errors import ConfigError
from .inits import BIAS_INITS, INITS
from .layers import linear, member_rows, norm
from .placements import PLACEMENTS
from .pooling import POOLINGS
from .shortcuts import SHORTCUTS
from .stems import STEMS


class ResNet(nn.Module):
    def __init__(self, cfg: ModelConfig, members: int = 1) -> None:
        super().__init__()
        if not isinstance(members, int) or members < 1:
            raise ConfigError(f"members must be a positive integer, got {members!r}")
        r = cfg.resolved()
        self.cfg, self.members = cfg, members
        placement = PLACEMENTS.get(r.activation)
        block_kind = BLOCKS.get(r.block)
        make_shortcut = SHORTCUTS.get(r.shortcut)

        self.stem = STEMS.get(r.stem)(in_ch=r.in_channels, out_ch=r.widths[0], members=members, bias=r.conv_bias,
                                      with_norm=placement.stem_norm, with_relu=placement.stem_relu)
        in_ch = r.widths[0]
        for s, (n_blocks, width) in enumerate(zip(r.stages, r.widths), start=1):
            blocks = OrderedDict()
            for b in range(n_blocks):
                stride = 2 if s > 1 and b == 0 else 1
                convs = block_kind(in_ch=in_ch, width=width, stride=stride)
                out_ch = convs[-1].out_ch
                project = r.project_all or (r.project_stage_entry and b == 0)
                shortcut = make_shortcut(in_ch=in_ch, out_ch=out_ch, stride=stride, members=members, project=project,
                                         with_norm=r.shortcut_norm, bias=r.conv_bias)
                blocks[f"block{b}"] = ResidualBlock(convs, placement, shortcut, members, r.conv_bias)
                in_ch = out_ch
            self.add_module(f"stage{s}", nn.Sequential(blocks))
        self.n_stages = len(r.stages)
        self.final_bn = norm(in_ch, members) if placement.final_norm else None
        self.final_relu = placement.final_relu
        self.pool = POOLINGS.get(r.pooling)(channels=in_ch, members=members)
        self.fc = linear(in_ch, r.num_classes, members)
        self.feature_channels = in_ch

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for s in range(1, self.n_stages + 1):
            x = getattr(self, f"stage{s}")(x)
        if self.final_bn is not None:
            x = self.final_bn(x)
        if self.final_relu:
            x = F.relu(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, G·C, H, W]`` → logits ``[B, classes]`` (G=1) or ``[B, G, classes]`` (fused)."""
        return self.fc(self.pool(self.forward_features(x)))

    # -- named views used by probes, lesions and reports ------------------------------------------------------
    def blocks(self) -> Iterator[tuple[str, ResidualBlock]]:
        """Residual blocks in forward order, named ``stage1.block0`` …"""
        for name, module in self.named_modules():
            if isinstance(module, ResidualBlock):
                yield name, module

    def probe_layers(self) -> list[tuple[str, nn.Module]]:
        """Conv and linear layers in forward order, named ``stem.conv``, ``stage1.block0.conv1``, …, ``fc``."""
        return [(n, m) for n, m in self.named_modules()
                if isinstance(m, (nn.Conv2d, nn.Linear)) or type(m).__name__ == "MemberLinear"]

    def set_shortcut_gates(self, gates: Sequence[bool]) -> None:
        """Per member: keep (True) or drop (False) every block's shortcut — plain and residual members in one net."""
        if len(gates) != self.members:
            raise ConfigError(f"got {len(gates)} shortcut gates for {self.members} members")
        for _, block in self.blocks():
            block.set_shortcut_gate(gates)

    def set_lesion(self, names: Sequence[str] | str | None) -> None:
        """Replace the named blocks by their shortcut (the identity in a plain block of unchanged shape); None:
        restore all. Raises ConfigError for an unknown block or one that is not `lesionable`."""
        wanted = {names} if isinstance(names, str) else set(names or ())
        blocks = dict(self.blocks())
        unknown = wanted - set(blocks)
        if unknown:
            raise ConfigError(f"unknown block {sorted(unknown)[0]!r}; choose from: {', '.join(blocks)}")
        stuck = sorted(n for n in wanted if not blocks[n].lesionable)
        if stuck:
            raise ConfigError(f"block {stuck[0]!r} changes the shape and has no shortcut: it cannot be lesioned; "
                              f"lesionable blocks: {', '.join(n for n, b in blocks.items() if b.lesionable)}")
        for name, block in self.blocks():
            block.lesioned = name in wanted


def _init_single(model: ResNet, cfg: ModelConfig) -> None:
    """Initialise a single (unfused) model: BatchNorm weight 1, bias 0, then the ``model.init`` scheme on every module
    and the ``model.bias_init`` on every conv bias (`inits`), then ``zero_init_residual``."""
    r = cfg.resolved()
    weight_init, bias_init = INITS.get(r.init), BIAS_INITS.get(r.bias_init)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        weight_init(m)
        if isinstance(m, nn.Conv2d) and m.bias is not None:
            bias_init(m)
    if r.zero_init_residual:
        for _, block in model.blocks():
            block.zero_init_last()


MIXABLE_SHORTCUTS = ("none", "identity")  # same tensors; the fused block gates each member's shortcut by 1 or 0


def build_model(cfg: ModelConfig | dict, members: int = 1, seeds: Sequence[int] | None = None,
                shortcuts: Sequence[str] | None = None) -> ResNet:
    """Build the network. With ``members=G``, member g is initialised exactly as ``build_model(cfg)`` would be
    (under ``torch.manual_seed(seeds[g])`` if seeds are given, else drawing from the current RNG in turn).
    ``shortcuts`` gives each member its own ``shortcut``, mixing only ``none`` and ``identity``: then member g is
    ``build_model(cfg with shortcut=shortcuts[g])``, plain and residual twins in one module."""
    cfg = cfg if isinstance(cfg, ModelConfig) else ModelConfig.from_dict(cfg)
    if not isinstance(members, int) or members < 1:
        raise ConfigError(f"members must be a positive integer, got {members!r}")
    if seeds is not None and len(seeds) != members:
        raise ConfigError(f"got {len(seeds)} seeds for {members} members")
    member_cfgs = [cfg] * members
    if shortcuts is not None:
        if len(shortcuts) != members:
            raise ConfigError(f"got {len(shortcuts)} shortcuts for {members} members")
        if len(set(shortcuts)) > 1 and not set(shortcuts) <= set(MIXABLE_SHORTCUTS):
            raise ConfigError(f"fused members can mix model.shortcut {' and '.join(MIXABLE_SHORTCUTS)} only, got "
                              f"{', '.join(sorted(set(shortcuts)))}")
        member_cfgs = [dataclasses.replace(cfg, shortcut=s) for s in shortcuts]
    if members == 1 and seeds is None:
        model = ResNet(member_cfgs[0])
        _init_single(model, member_cfgs[0])
        return model
    solo_states = []
    for g in range(members):
        with torch.random.fork_rng(devices=[], enabled=seeds is not None):
            if seeds is not None:
                torch.manual_seed(int(seeds[g]))
            solo_states.append(build_model(member_cfgs[g]).state_dict())
    mixed = len({c.shortcut for c in member_cfgs}) > 1
    # The fused module's own default init is overwritten below; with seeds, it must not draw from the caller's RNG
    # either, so that a seeded build is a function of its seeds alone.
    with torch.random.fork_rng(devices=[], enabled=seeds is not None):
        model = ResNet(dataclasses.replace(cfg, shortcut="identity") if mixed else member_cfgs[0], members)
    error = member_layout_error(solo_states[0], model)
    if error is not None:
        raise ConfigError(f"this model cannot train as {members} fused members: {error}; a part's parameters must "
                          f"be member-major (docs/models.md: a parameter of shape [G]), or train unfused (sweep "
                          f"--fuse off)")
    model.load_state_dict(fuse_state_dicts(solo_states))
    if mixed:
        model.set_shortcut_gates([c.shortcut == "identity" for c in member_cfgs])
    return model


def member_layout_error(solo: dict[str, torch.Tensor], fused: ResNet) -> str | None:
    """Why ``fused`` (G members) is not G member-major copies of a solo model with state ``solo``, else None: a
    tensor it lacks or adds, one whose shape is not G solo shapes stacked along dim 0 (a layer that mixes the
    members), or a 0-d parameter (one number every member would share and train together)."""
    G, state = fused.members, fused.state_dict()
    params = {name for name, _ in fused.named_parameters()}
    for key in sorted(set(state) ^ set(solo)):
        return f"{key} is in the {'fused' if key in state else 'solo'} model only"
    for key, one in solo.items():
        got = list(state[key].shape)
        if one.dim() == 0:
            if key in params:
                return f"parameter {key} is one number (0-d) that all {G} members would share"
            continue
        want = [G * one.shape[0], *one.shape[1:]]
        if got != want:
            return f"{key} is {got} where {G} members of {list(one.shape)} stack to {want}"
    return None


def fuse_state_dicts(states: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """G ordinary state dicts → one fused state dict (member-major concatenation along dim 0)."""
    fused = {}
    for key, first in states[0].items():
        fused[key] = first.clone() if first.dim() == 0 else torch.cat([s[key] for s in states])
    return fused


def member_state_dict(model: ResNet, g: int) -> dict[str, torch.Tensor]:
    """Member g of a fused model as an ordinary state dict that ``build_model(cfg)`` loads."""
    G = getattr(model, "members", 1)
    if not 0 <= g < G:
        raise ConfigError(f"member {g} out of range for a model of {G} members")
    return {key: member_rows(value.detach(), g, G).clone() for key, value in model.state_dict().items()}


def load_member_state_dict(model: ResNet, g: int, state: dict[str, torch.Tensor]) -> None:
    """Write an ordinary state dict into member g of a fused model."""
    G = model.members
    with torch.no_grad():
        for key, target in model.state_dict().items():
            member_rows(target, g, G).copy_(state[key])


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
