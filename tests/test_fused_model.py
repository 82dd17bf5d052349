"""Fused models (horizontal fusion, docs/fused_trials.md): G members in one module are exactly G separate models.

All comparisons run in float64, in train mode (BN batch statistics), on tiny nets and images, with differences
measured against a floor tied to the scale of the tensor's group (tests/numerics.py): some quantities here are zero
in exact arithmetic and hold only round-off.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from resnet_core import (ConfigError, ModelConfig, build_model, count_params, fuse_state_dicts,
                         load_member_state_dict, member_state_dict)
from resnet_core.layers import MemberLinear

from numerics import assert_states_close, scaled_error

pytestmark = pytest.mark.usefixtures("one_thread")   # tests/conftest.py

G = 3
CLASSES = 5


def tiny(**kw) -> ModelConfig:
    """A small CIFAR-style net: stages [2, 1, 1] so that stage 1 has an inner (identity) block."""
    d = dict(family="cifar", depth=None, stages=[2, 1, 1], widths=[4, 8, 16], num_classes=CLASSES)
    if kw.get("block") == "bottleneck":
        d["widths"] = [2, 4, 8]
    if kw.get("family") == "imagenet":
        d.update(stages=[1, 1, 1, 1], widths=[4, 4, 8, 8])
    d.update(kw)
    return ModelConfig.from_dict(d)


def image_size(cfg: ModelConfig) -> int:
    return 16 if cfg.resolved().stem == "imagenet" else 8


rel = scaled_error  # largest difference relative to max(the reference's largest magnitude, floor)
TRAIN_TOL = 1e-10  # 20 float64 SGD steps: round-off is ~1e-15 of the scale; 1e-9 on one weight is ~1e-9 of it


def member_slice(t: torch.Tensor, g: int, members: int = G) -> torch.Tensor:
    n = t.shape[0] // members
    return t[g * n:(g + 1) * n]


VARIANTS = {
    **{f"shortcut={s}": dict(shortcut=s) for s in ("identity", "conv1x1", "conv3x3", "none")},
    "block=bottleneck": dict(block="bottleneck"),
    "block=bottleneck+conv1x1": dict(block="bottleneck", shortcut="conv1x1"),
    **{f"activation={a}": dict(activation=a) for a in ("post", "pre", "bn_after_add", "relu_before_add",
                                                        "relu_only_pre")},
    "activation=pre+conv1x1": dict(activation="pre", shortcut="conv1x1"),
    "activation=bn_after_add+conv3x3": dict(activation="bn_after_add", shortcut="conv3x3"),
    "pooling=avg": dict(pooling="avg"),
    "pooling=max": dict(pooling="max"),
    "stem=cifar": dict(stem="cifar"),
    "stem=imagenet": dict(stem="imagenet"),
    "stem=imagenet+pre": dict(stem="imagenet", activation="pre"),
    "in_channels=1": dict(in_channels=1),
    "in_channels=3": dict(in_channels=3),
    "conv_bias": dict(conv_bias=True, shortcut="conv1x1"),
    "shortcut_norm=off": dict(shortcut="conv1x1", shortcut_norm=False),
    "seed002-like": dict(shortcut="conv1x1", shortcut_norm=False, conv_bias=True, in_channels=1,
                         stem="imagenet", init="xavier"),
    "project_all=conv1x1": dict(shortcut="conv1x1", project_all=True),
    "project_all=conv3x3": dict(shortcut="conv3x3", project_all=True),
    "project_stage_entry": dict(shortcut="conv1x1", project_stage_entry=True),
    "zero_init_residual": dict(zero_init_residual=True),
    "family=imagenet": dict(family="imagenet", shortcut="conv1x1"),
    "width=0.5": dict(width=0.5, widths=[8, 8, 16]),
}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_fused_equals_separate_outputs_and_gradients(name):
    cfg = tiny(**VARIANTS[name])
    C, H = cfg.in_channels, image_size(cfg)
    torch.manual_seed(0)
    solos = [build_model(cfg).double().train() for _ in range(G)]
    with torch.no_grad():  # non-trivial BN affine parameters and conv biases, so every parameter matters
        for m in solos:
            for p in m.parameters():
                if p.dim() == 1:
                    p.add_(0.1 * torch.randn_like(p))
    fused = build_model(cfg, members=G).double().train()
    fused.load_state_dict(fuse_state_dicts([m.state_dict() for m in solos]), strict=True)

    B = 4
    xs = [torch.randn(B, C, H, H, dtype=torch.float64) for _ in range(G)]
    ys = [torch.randint(0, CLASSES, (B,)) for _ in range(G)]
    out = fused(torch.cat(xs, dim=1))  # member g reads channels C·g … C·(g+1)−1
    assert out.shape == (B, G, CLASSES)
    sum(F.cross_entropy(out[:, g], ys[g]) for g in range(G)).backward()

    for g, solo in enumerate(solos):
        ref = solo(xs[g])
        F.cross_entropy(ref, ys[g]).backward()
        assert rel(out[:, g].detach(), ref.detach()) <= 1e-10
        fused_params = dict(fused.named_parameters())
        # Some gradients are zero in exact arithmetic (e.g. the bias of a BN whose output feeds another BN) and
        # hold only round-off (~1e-17); relative to themselves they are noise. Those are compared relative to a
        # floor of 1e-4 × the largest gradient of the member, i.e. to 1e-14 of it in absolute terms.
        floor = 1e-4 * max(p.grad.abs().max().item() for p in solo.parameters())
        for pname, p in solo.named_parameters():
            fp = fused_params[pname]
            assert fp.grad is not None and p.grad is not None, pname
            assert rel(member_slice(fp.grad, g), p.grad, floor) <= 1e-10, (pname, g)
        # BN running statistics were updated per member, exactly as in the separate model
        extracted = member_state_dict(fused, g)
        assert_states_close(extracted, solo.state_dict(), 1e-10, f"member {g}")
    # members differ from each other (the comparison is not between identical copies)
    assert not torch.allclose(out[:, 0], out[:, 1])


@pytest.mark.parametrize("name", ["shortcut=identity", "block=bottleneck+conv1x1", "activation=pre+conv1x1",
                                  "seed002-like", "family=imagenet"])
def test_members_1_is_the_plain_model(name):
    cfg = tiny(**VARIANTS[name])
    solo = build_model(cfg)
    one = build_model(cfg, members=1)
    one_seeded = build_model(cfg, members=1, seeds=[7])
    want = {n: tuple(p.shape) for n, p in solo.named_parameters()}
    for m in (one, one_seeded):
        assert {n: tuple(p.shape) for n, p in m.named_parameters()} == want
        assert count_params(m) == count_params(solo)
        assert m.state_dict().keys() == solo.state_dict().keys()
        assert not any(isinstance(mod, MemberLinear) for mod in m.modules())
    torch.manual_seed(7)
    ref = build_model(cfg)
    assert all(torch.equal(v, ref.state_dict()[k]) for k, v in one_seeded.state_dict().items())
    # a fused model has the same names; every tensor is G times as long along dim 0
    fused = build_model(cfg, members=G)
    assert fused.state_dict().keys() == solo.state_dict().keys()
    assert count_params(fused) == G * count_params(solo)
    for k, v in fused.state_dict().items():
        s = solo.state_dict()[k]
        assert v.shape == ((G * s.shape[0],) + tuple(s.shape[1:]) if s.dim() else s.shape), k


@pytest.mark.parametrize("name", ["shortcut=identity", "activation=pre+conv1x1", "seed002-like",
                                  "zero_init_residual", "pooling=max"])
def test_seeded_members_equal_seeded_solo_builds(name):
    cfg = tiny(**VARIANTS[name])
    seeds = [1, 2, 3]
    torch.manual_seed(123)
    rng_before = torch.get_rng_state()
    fused = build_model(cfg, members=G, seeds=seeds)
    assert torch.equal(torch.get_rng_state(), rng_before)  # seeded members leave the caller's RNG alone
    for g, s in enumerate(seeds):
        torch.manual_seed(s)
        ref = build_model(cfg).state_dict()
        got = member_state_dict(fused, g)
        assert got.keys() == ref.keys()
        for k in ref:
            assert torch.equal(got[k], ref[k]), (k, g)
    assert not torch.equal(member_state_dict(fused, 0)["stem.conv.weight"],
                           member_state_dict(fused, 1)["stem.conv.weight"])


def test_unseeded_members_draw_in_turn():
    cfg = tiny()
    torch.manual_seed(5)
    fused = build_model(cfg, members=G)
    torch.manual_seed(5)
    refs = [build_model(cfg).state_dict() for _ in range(G)]
    for g in range(G):
        got = member_state_dict(fused, g)
        assert all(torch.equal(got[k], refs[g][k]) for k in refs[g])


def _sgd_steps(model, opt, batches, fused: bool, steps: int):
    for step in range(steps):
        xs, ys = batches(step)
        opt.zero_grad()
        if fused:
            out = model(torch.cat(xs, dim=1))
            loss = sum(F.cross_entropy(out[:, g], ys[g]) for g in range(len(xs)))
        else:
            loss = F.cross_entropy(model(xs), ys)
        loss.backward()
        opt.step()


def _data(cfg, seeds):
    """Each member's own data stream: batch `step` of member g depends only on (seed g, step)."""
    C, H = cfg.in_channels, image_size(cfg)

    def member_batch(seed, step):
        gen = torch.Generator().manual_seed(1000 * seed + step)
        return (torch.randn(6, C, H, H, generator=gen, dtype=torch.float64),
                torch.randint(0, CLASSES, (6,), generator=gen))

    def fused_batches(step):
        pairs = [member_batch(s, step) for s in seeds]
        return [p[0] for p in pairs], [p[1] for p in pairs]

    return member_batch, fused_batches


def _opt(model):
    return torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)


@pytest.mark.parametrize("name", ["shortcut=identity", "activation=pre+conv1x1", "seed002-like"])
def test_fused_training_equals_separate_runs(name):
    cfg = tiny(**VARIANTS[name])
    seeds = [11, 12, 13]
    steps = 20
    member_batch, fused_batches = _data(cfg, seeds)
    fused = build_model(cfg, members=G, seeds=seeds).double().train()
    start = {k: v.clone() for k, v in fused.state_dict().items()}
    _sgd_steps(fused, _opt(fused), fused_batches, fused=True, steps=steps)
    assert not torch.allclose(start["stem.conv.weight"], fused.state_dict()["stem.conv.weight"])
    for g, seed in enumerate(seeds):
        torch.manual_seed(seed)
        solo = build_model(cfg).double().train()
        _sgd_steps(solo, _opt(solo), lambda step: member_batch(seed, step), fused=False, steps=steps)
        assert_states_close(member_state_dict(fused, g), solo.state_dict(), TRAIN_TOL, f"member {g}")


def test_member_state_dict_round_trip_after_training():
    cfg = tiny(shortcut="conv1x1", activation="pre", pooling="max")
    seeds = [4, 5, 6]
    _, fused_batches = _data(cfg, seeds)
    fused = build_model(cfg, members=G, seeds=seeds).double().train()
    _sgd_steps(fused, _opt(fused), fused_batches, fused=True, steps=3)
    fused.eval()
    xs, _ = fused_batches(99)
    with torch.no_grad():
        fused_out = fused(torch.cat(xs, dim=1))
    for g in range(G):
        solo = build_model(cfg).double()
        result = solo.load_state_dict(member_state_dict(fused, g), strict=True)
        assert not result.missing_keys and not result.unexpected_keys
        solo.eval()
        with torch.no_grad():
            assert rel(solo(xs[g]), fused_out[:, g]) <= 1e-10
    # load_member_state_dict writes an ordinary state dict into one member and leaves the others alone
    before = {k: v.clone() for k, v in fused.state_dict().items()}
    load_member_state_dict(fused, 1, member_state_dict(fused, 2))
    with torch.no_grad():
        out = fused(torch.cat([xs[0], xs[2], xs[2]], dim=1))
    assert torch.equal(out[:, 1], out[:, 2])
    assert torch.equal(out[:, 0], fused_out[:, 0])
    after = fused.state_dict()
    for k, v in before.items():
        if v.dim():
            assert torch.equal(member_slice(after[k], 0), member_slice(v, 0)), k
            assert torch.equal(member_slice(after[k], 1), member_slice(v, 2)), k


def test_fuse_then_extract_is_identity():
    cfg = tiny(shortcut="conv3x3", conv_bias=True)
    states = [build_model(cfg).state_dict() for _ in range(G)]
    fused = fuse_state_dicts(states)
    model = build_model(cfg, members=G)
    model.load_state_dict(fused, strict=True)
    for g in range(G):
        got = member_state_dict(model, g)
        assert all(torch.equal(got[k], states[g][k]) for k in states[g])


def test_fused_errors():
    cfg = tiny()
    with pytest.raises(ConfigError, match="seeds"):
        build_model(cfg, members=3, seeds=[1, 2])
    with pytest.raises(ConfigError, match="members"):
        build_model(cfg, members=0)
    with pytest.raises(ConfigError, match="member 3"):
        member_state_dict(build_model(cfg, members=G), 3)


# -- plain and residual twins in one fused model (shortcut none / identity per member) --------------------------
MIXED = ["none", "identity", "none"]
MIXED_VARIANTS = ["activation=post", "activation=pre", "activation=bn_after_add", "activation=relu_before_add",
                  "activation=relu_only_pre", "block=bottleneck", "pooling=max", "stem=imagenet+pre",
                  "zero_init_residual"]


def _with_shortcut(cfg: ModelConfig, shortcut: str) -> ModelConfig:
    import dataclasses

    return dataclasses.replace(cfg, shortcut=shortcut)


@pytest.mark.parametrize("name", MIXED_VARIANTS)
def test_plain_and_residual_members_equal_their_separate_models(name):
    cfg = tiny(**VARIANTS[name])
    C, H = cfg.in_channels, image_size(cfg)
    seeds = [3, 4, 5]
    fused = build_model(cfg, members=G, seeds=seeds, shortcuts=MIXED).double().train()
    B = 4
    xs = [torch.randn(B, C, H, H, dtype=torch.float64) for _ in range(G)]
    ys = [torch.randint(0, CLASSES, (B,)) for _ in range(G)]
    out = fused(torch.cat(xs, dim=1))
    sum(F.cross_entropy(out[:, g], ys[g]) for g in range(G)).backward()
    fused_params = dict(fused.named_parameters())
    for g, (seed, shortcut) in enumerate(zip(seeds, MIXED)):
        torch.manual_seed(seed)
        solo = build_model(_with_shortcut(cfg, shortcut)).double().train()
        init = member_state_dict(fused, g)
        assert all(torch.equal(init[k], v) for k, v in solo.named_parameters())  # member g = its seeded solo build
        ref = solo(xs[g])
        F.cross_entropy(ref, ys[g]).backward()
        assert rel(out[:, g].detach(), ref.detach()) <= 1e-10, g
        floor = 1e-4 * max(p.grad.abs().max().item() for p in solo.parameters())
        for pname, p in solo.named_parameters():
            assert rel(member_slice(fused_params[pname].grad, g), p.grad, floor) <= 1e-10, (pname, g)
    # the plain member really is plain: the same weights with a shortcut give other outputs
    torch.manual_seed(seeds[0])
    twin = build_model(_with_shortcut(cfg, "identity")).double().train()
    assert rel(twin(xs[0]).detach(), out[:, 0].detach()) > 1e-3


def test_plain_and_residual_members_train_as_their_separate_runs():
    cfg = tiny(shortcut="identity")
    seeds = [21, 22, 23]
    member_batch, fused_batches = _data(cfg, seeds)
    fused = build_model(cfg, members=G, seeds=seeds, shortcuts=MIXED).double().train()
    _sgd_steps(fused, _opt(fused), fused_batches, fused=True, steps=20)
    for g, (seed, shortcut) in enumerate(zip(seeds, MIXED)):
        torch.manual_seed(seed)
        solo = build_model(_with_shortcut(cfg, shortcut)).double().train()
        _sgd_steps(solo, _opt(solo), lambda step: member_batch(seed, step), fused=False, steps=20)
        assert_states_close(member_state_dict(fused, g), solo.state_dict(), TRAIN_TOL, f"member {g}")


def test_only_none_and_identity_mix():
    cfg = tiny()
    with pytest.raises(ConfigError, match="none and identity"):
        build_model(cfg, members=2, shortcuts=["none", "conv1x1"])
    with pytest.raises(ConfigError, match="shortcuts"):
        build_model(cfg, members=3, shortcuts=["none", "identity"])
    same = build_model(tiny(shortcut="conv1x1"), members=2, shortcuts=["conv1x1", "conv1x1"])  # not mixed: no gate
    assert all(b.shortcut_gate is None for _, b in same.blocks())
    mixed = build_model(cfg, members=2, shortcuts=["identity", "none"])
    assert "shortcut_gate" not in " ".join(mixed.state_dict())  # a member's state dict stays an ordinary one
