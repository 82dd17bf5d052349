"""Model core: parameter counts against the papers, torchvision parity, plain/residual twins, every registry value,
ModelConfig (de)serialisation and errors, stable layer names and lesions."""
from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from resnet_core import ConfigError, ModelConfig, build_model, count_params
from resnet_core import config as config_mod
from resnet_core.blocks import BLOCKS
from resnet_core.placements import PLACEMENTS
from resnet_core.pooling import POOLINGS
from resnet_core.shortcuts import SHORTCUTS, Identity, Projection, ZeroPadShortcut
from resnet_core.stems import STEMS
from resnet_core.torchvision_compat import from_torchvision_state_dict
from resnet_core.zoo import NAMED_MODELS


pytestmark = pytest.mark.usefixtures("one_thread")   # tests/conftest.py


def meta_model(cfg) -> nn.Module:
    """Shapes only: big nets cost no memory or init time on the meta device."""
    with torch.device("meta"):
        return build_model(cfg)


def params_without_bn(model: nn.Module) -> int:
    return sum(p.numel() for m in model.modules() if not isinstance(m, nn.BatchNorm2d)
               for p in m.parameters(recurse=False))


def shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {n: tuple(p.shape) for n, p in model.named_parameters()}


# ---------------------------------------------------------------------------------------------------------------
# 1. Parameter counts
# ---------------------------------------------------------------------------------------------------------------

def cifar_option_a_count(depth: int, classes: int = 10) -> int:
    """He et al. 2016's CIFAR net counted by hand: 3×3 stem conv + BN, n basic blocks per stage (option A: no
    shortcut parameters), fc. An independent derivation of what the builder must produce."""
    n = (depth - 2) // 6
    total = 3 * 16 * 9 + 2 * 16
    in_ch = 16
    for w in (16, 32, 64):
        for _ in range(n):
            total += 9 * in_ch * w + 2 * w + 9 * w * w + 2 * w
            in_ch = w
    return total + 64 * classes + classes


def preact_bottleneck_count(depth: int, with_bn: bool = True, classes: int = 10) -> int:
    """He et al. 2016b's pre-activation bottleneck CIFAR net counted by hand: 3×3 stem conv (no BN), blocks
    BN-conv1×1-BN-conv3×3-BN-conv1×1 (BN on each conv's input), a 1×1 conv + BN projection where the shape
    changes, a final BN, fc."""
    n = (depth - 2) // 9
    bn = 2 if with_bn else 0
    total = 3 * 16 * 9
    in_ch = 16
    for s, w in enumerate((16, 32, 64)):
        for b in range(n):
            out = 4 * w
            total += bn * in_ch + in_ch * w + bn * w + 9 * w * w + bn * w + w * out
            if in_ch != out or (s > 0 and b == 0):
                total += in_ch * out + bn * out
            in_ch = out
    return total + bn * in_ch + in_ch * classes + classes


# He et al. 2016, Table 6 (CIFAR-10, option A): depth -> published #params in millions, as the paper rounds them.
CIFAR_PAPER_PARAMS = {20: (0.27, 2), 32: (0.46, 2), 44: (0.66, 2), 56: (0.85, 2), 110: (1.7, 1), 1202: (19.4, 1)}


@pytest.mark.parametrize("depth", sorted(CIFAR_PAPER_PARAMS))
def test_cifar_option_a_params_match_paper(depth):
    paper, decimals = CIFAR_PAPER_PARAMS[depth]
    cfg = ModelConfig(family="cifar", depth=depth, shortcut="identity")
    n = count_params(meta_model(cfg))
    assert round(n / 1e6, decimals) == paper
    assert n == cifar_option_a_count(depth)
    # the zoo's named model is that network
    assert ModelConfig.from_dict(NAMED_MODELS[f"resnet{depth}"]).resolved() == cfg.resolved()


@pytest.mark.parametrize("depth,paper", [(164, 1.7), (1001, 10.2)])
def test_preact_bottleneck_params_match_paper(depth, paper):
    cfg = ModelConfig(family="cifar", depth=depth, activation="pre", shortcut="conv1x1")
    assert cfg.resolved().block == "bottleneck"
    model = meta_model(cfg)
    n = count_params(model)
    assert n == preact_bottleneck_count(depth)
    # He et al. 2016b quote 1.7M and 10.2M. Our full counts are 1,704,154 and 10,328,602: the 1001-layer net with
    # BatchNorm's affine parameters rounds to 10.3M. Without them (conv + fc weights only) it is 10.18M, which is
    # the paper's 10.2M, so the paper evidently did not count BN's gamma/beta. We check that count against the
    # paper, for both depths, and the full count against the hand derivation above.
    without_bn = params_without_bn(model)
    assert without_bn == preact_bottleneck_count(depth, with_bn=False)
    assert round(without_bn / 1e6, 1) == paper
    assert ModelConfig.from_dict(NAMED_MODELS[f"preresnet{depth}"]).resolved() == cfg.resolved()


TORCHVISION_PARAMS = {18: 11_689_512, 34: 21_797_672, 50: 25_557_032, 101: 44_549_160, 152: 60_192_808}


@pytest.mark.parametrize("depth", sorted(TORCHVISION_PARAMS))
def test_imagenet_params_equal_torchvision(depth):
    import torchvision  # here, not at the top: a 4-7 s import that only the comparisons need
    cfg = ModelConfig(family="imagenet", depth=depth, activation="post", shortcut="conv1x1", pooling="avg",
                      num_classes=1000)
    ours = meta_model(cfg)
    with torch.device("meta"):
        theirs = getattr(torchvision.models, f"resnet{depth}")(weights=None)
    assert count_params(ours) == TORCHVISION_PARAMS[depth] == count_params(theirs)
    # same tensors, name for name
    assert shapes(ours) == {from_key: s for from_key, s in
                            zip(from_torchvision_state_dict(dict(theirs.named_parameters())), shapes(theirs).values())}
    assert count_params(meta_model(NAMED_MODELS[f"resnet{depth}-imagenet"])) == TORCHVISION_PARAMS[depth]


# SEEDS.md: the seed programs' own networks (10 classes).
SEED_NAMED = {"seed001-resnet34": 21_294_026, "seed002-d2l-resnet18": 11_178_378,
              "seed003-resnet50-cifar": 23_520_842, "seed004-resnet20-conv3x3": 292_954}
SEED003_DEPTHS = {18: 11_173_962, 34: 21_282_122, 50: 23_520_842, 101: 42_512_970, 152: 58_156_618}


@pytest.mark.parametrize("name", sorted(SEED_NAMED))
def test_seed_named_model_params(name):
    assert count_params(meta_model(NAMED_MODELS[name])) == SEED_NAMED[name]


@pytest.mark.parametrize("depth", sorted(SEED003_DEPTHS))
def test_seed003_all_depths(depth):
    cfg = dict(family="imagenet", depth=depth, stem="cifar", shortcut="conv1x1", num_classes=10)
    assert count_params(meta_model(cfg)) == SEED003_DEPTHS[depth]


def test_seed001_needs_stage_entry_projection():
    """Seed 001 projects at the entry of every stage; without the switch it is torchvision's resnet34 (10 classes)."""
    import torchvision  # here, not at the top: a 4-7 s import that only the comparisons need
    cfg = dict(NAMED_MODELS["seed001-resnet34"], project_stage_entry=False)
    with torch.device("meta"):
        tv = torchvision.models.resnet34(weights=None, num_classes=10)
    assert count_params(meta_model(cfg)) == count_params(tv) != SEED_NAMED["seed001-resnet34"]


# ---------------------------------------------------------------------------------------------------------------
# 2. torchvision parity
# ---------------------------------------------------------------------------------------------------------------

def randomise_bn(model: nn.Module, gen: torch.Generator) -> None:
    """Non-trivial BN statistics and affine parameters, so that a mis-mapped BN would show in the output."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(0.1 * torch.randn(c, generator=gen))
                m.running_var.copy_(0.5 + torch.rand(c, generator=gen))
                m.weight.copy_(0.5 + torch.rand(c, generator=gen))
                m.bias.copy_(0.1 * torch.randn(c, generator=gen))


@pytest.mark.parametrize("depth", [18, 50])
def test_torchvision_parity(depth):
    import torchvision  # here, not at the top: a 4-7 s import that only the comparisons need
    torch.manual_seed(depth)
    gen = torch.Generator().manual_seed(depth)
    tv = getattr(torchvision.models, f"resnet{depth}")(weights=None)
    randomise_bn(tv, gen)
    ours = build_model(NAMED_MODELS[f"resnet{depth}-imagenet"])
    missing = ours.load_state_dict(from_torchvision_state_dict(tv.state_dict()), strict=True)
    assert not missing.missing_keys and not missing.unexpected_keys
    tv.eval()
    ours.eval()
    x = torch.randn(2, 3, 224, 224, generator=gen)
    with torch.no_grad():
        want = tv(x)
        got = ours(x)
    assert got.shape == want.shape == (2, 1000)
    assert want.abs().max() > 1e-3  # a meaningful comparison
    assert (got - want).abs().max().item() <= 1e-5


# ---------------------------------------------------------------------------------------------------------------
# 3. Plain vs residual twin
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("base", [
    dict(family="cifar", depth=20),
    dict(family="cifar", depth=164, activation="pre"),
    dict(family="imagenet", depth=34, num_classes=1000),
    dict(family="imagenet", depth=50, num_classes=1000),
], ids=["cifar20", "cifar164-pre", "imagenet34", "imagenet50"])
def test_plain_twin_has_same_layers(base):
    plain = shapes(meta_model(dict(base, shortcut="none")))
    ident = shapes(meta_model(dict(base, shortcut="identity")))
    assert plain == ident  # option A adds no parameters
    proj_model = meta_model(dict(base, shortcut="conv1x1"))
    proj = shapes(proj_model)
    extra = set(proj) - set(plain)
    assert set(plain) <= set(proj)
    assert all(proj[k] == plain[k] for k in plain)
    # the difference is exactly the parameters of the projection shortcuts
    shortcut_params = {f"{name}.{p}" for name, m in proj_model.named_modules() if isinstance(m, Projection)
                       for p, _ in m.named_parameters()}
    assert extra == shortcut_params
    assert extra and all(".shortcut." in k for k in extra)
    n_projections = sum(isinstance(m, Projection) for m in proj_model.modules())
    n_stages = len(ModelConfig.from_dict(base).resolved().stages)
    expected = n_stages if ModelConfig.from_dict(base).resolved().block == "bottleneck" else n_stages - 1
    assert n_projections == expected  # only where the shape changes (option B)


def _post_branch(blk, x):
    """The post-activation basic branch, written out: conv-BN-ReLU-conv-BN."""
    return blk.bn2(blk.conv2(F.relu(blk.bn1(blk.conv1(x)))))


def test_plain_block_is_its_branch_and_residual_adds_x():
    torch.manual_seed(0)
    res = build_model(dict(family="cifar", depth=14, shortcut="identity")).eval()
    plain = build_model(dict(family="cifar", depth=14, shortcut="none")).eval()
    plain.load_state_dict(res.state_dict(), strict=True)
    x = torch.randn(2, 16, 8, 8)
    rb, pb = res.stage1.block1, plain.stage1.block1
    with torch.no_grad():
        branch = _post_branch(rb, x)
        torch.testing.assert_close(pb(x), F.relu(branch), rtol=0, atol=1e-6)
        torch.testing.assert_close(rb(x), F.relu(branch + x), rtol=0, atol=1e-6)
        # the stage-entry block: option A shortcut vs nothing
        x2 = torch.randn(2, 16, 8, 8)
        rb2, pb2 = res.stage2.block0, plain.stage2.block0
        branch2 = _post_branch(rb2, x2)
        torch.testing.assert_close(pb2(x2), F.relu(branch2), rtol=0, atol=1e-6)
        padded = F.pad(x2[:, :, ::2, ::2], (0, 0, 0, 0, 8, 8))
        torch.testing.assert_close(rb2(x2), F.relu(branch2 + padded), rtol=0, atol=1e-6)
        assert not torch.allclose(res(torch.randn(2, 3, 16, 16)), plain(torch.randn(2, 3, 16, 16)))


@pytest.mark.parametrize("activation", ["pre", "relu_before_add", "relu_only_pre"])
def test_plain_and_residual_differ_by_the_addition(activation):
    """Where nothing follows the addition, residual(x) − plain(x) is exactly the shortcut."""
    torch.manual_seed(1)
    cfg = dict(family="cifar", depth=14, activation=activation)
    res = build_model(dict(cfg, shortcut="identity")).double().eval()
    plain = build_model(dict(cfg, shortcut="none")).double().eval()
    plain.load_state_dict(res.state_dict(), strict=True)
    x = torch.randn(2, 16, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(res.stage1.block1(x) - plain.stage1.block1(x), x, rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------------------------------------------
# 4. Every registry value: forward, backward, shapes
# ---------------------------------------------------------------------------------------------------------------

def test_registries_match_config_vocabulary():
    assert set(SHORTCUTS.names()) == set(config_mod.SHORTCUTS) == {"identity", "conv1x1", "conv3x3", "none"}
    assert set(BLOCKS.names()) == set(config_mod.BLOCKS) == {"basic", "bottleneck"}
    assert set(PLACEMENTS.names()) == set(config_mod.ACTIVATIONS)
    assert {"post", "pre"} <= set(PLACEMENTS.names()) and len(PLACEMENTS.names()) == 5
    assert set(POOLINGS.names()) == set(config_mod.POOLINGS) == {"avg", "max", "gem"}
    assert set(STEMS.names()) == set(config_mod.STEMS) == {"cifar", "imagenet"}
    assert set(config_mod.INITS) == {"kaiming", "xavier", "pytorch"}
    with pytest.raises(ConfigError, match="identity"):
        SHORTCUTS.get("optionA")


SMALL = dict(family="cifar", depth=14, num_classes=7)


def _check_zero_init(model, cfg):
    act = ModelConfig.from_dict(cfg).activation
    for _, blk in model.blocks():
        last = blk.conv(blk.n_convs).weight if act == "pre" else blk.bn(blk.n_convs).weight
        assert torch.count_nonzero(last) == 0
    model.eval()
    x = torch.randn(2, 16, 8, 8)
    with torch.no_grad():  # the branch is zero at init: the block is its post-add function of the shortcut
        out = model.stage1.block1(x)
    torch.testing.assert_close(out, x if act == "pre" else F.relu(x))


def _check_xavier(model, cfg):
    w = model.stage1.block0.conv1.weight  # 16 -> 16, 3x3
    bound = (6 / (16 * 9 + 16 * 9)) ** 0.5
    assert w.abs().max() <= bound
    assert model.fc.weight.abs().max() <= (6 / (64 + 7)) ** 0.5


def _check_kaiming(model, cfg):
    w = model.stage2.block0.conv1.weight  # 16 -> 32, 3x3; kaiming normal, fan_out (torchvision): std sqrt(2/(32·9))
    assert abs(w.std().item() - (2 / 288) ** 0.5) < 0.01  # fan_in would give 0.118


def _has_projection_everywhere(model, cfg):
    assert all(isinstance(b.shortcut, Projection) for _, b in model.blocks())


def _stage_entry_projection(model, cfg):
    assert isinstance(model.stage1.block0.shortcut, Projection)
    assert isinstance(model.stage1.block1.shortcut, Identity)


def _no_shortcut_norm(model, cfg):
    projections = [b.shortcut for _, b in model.blocks() if isinstance(b.shortcut, Projection)]
    assert projections and all(p.bn is None for p in projections)


def _conv_bias(model, cfg):
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert all(c.bias is not None for c in convs)


def _in_channels_1(model, cfg):
    assert model.stem.conv.in_channels == 1


def _imagenet_stem(model, cfg):
    assert model.stem.conv.kernel_size == (7, 7) and model.stem.conv.stride == (2, 2)
    assert isinstance(model.stem.pool, nn.MaxPool2d)


def _cifar_stem(model, cfg):
    assert model.stem.conv.kernel_size == (3, 3) and model.stem.conv.stride == (1, 1) and model.stem.pool is None


def _shortcut_kind(kind):
    def check(model, cfg):
        entry, inner = model.stage2.block0.shortcut, model.stage2.block1.shortcut
        if kind == "none":
            assert entry is None and inner is None
        elif kind == "identity":
            assert isinstance(entry, ZeroPadShortcut) and isinstance(inner, Identity)
        else:
            k = int(kind[-1])
            assert isinstance(entry, Projection) and entry.conv.kernel_size == (k, k)
            assert isinstance(inner, Identity)
    return check


def _block_kind(kind):
    def check(model, cfg):
        assert model.stage1.block0.n_convs == (2 if kind == "basic" else 3)
    return check


def _placement(name):
    def check(model, cfg):
        assert all(b.placement.name == name for _, b in model.blocks())
        assert (model.final_bn is not None) == (name == "pre")
    return check


def _pooling(kind):
    def check(model, cfg):
        assert model.pool.kind == kind
        feats = torch.randn(2, 5, 3, 3)
        if kind == "gem":  # p = 3 at init: the cube root of the mean cube of the (clamped) features
            feats = feats.abs()
            want = feats.pow(3).mean(dim=(2, 3)).pow(1 / 3)
        else:
            want = feats.mean(dim=(2, 3)) if kind == "avg" else feats.amax(dim=(2, 3))
        torch.testing.assert_close(model.pool(feats), want)
    return check


VARIANTS = {
    **{f"shortcut={s}": (dict(shortcut=s), _shortcut_kind(s)) for s in ("identity", "conv1x1", "conv3x3", "none")},
    "block=basic": (dict(block="basic"), _block_kind("basic")),
    "block=bottleneck": (dict(depth=11, block="bottleneck"), _block_kind("bottleneck")),
    **{f"activation={a}": (dict(activation=a), _placement(a))
       for a in ("post", "pre", "bn_after_add", "relu_before_add", "relu_only_pre")},
    "activation=pre+conv1x1": (dict(activation="pre", shortcut="conv1x1"), _placement("pre")),
    "pooling=avg": (dict(pooling="avg"), _pooling("avg")),
    "pooling=max": (dict(pooling="max"), _pooling("max")),
    "pooling=gem": (dict(pooling="gem"), _pooling("gem")),
    "stem=cifar": (dict(stem="cifar"), _cifar_stem),
    "stem=imagenet": (dict(stem="imagenet"), _imagenet_stem),
    "init=kaiming": (dict(init="kaiming"), _check_kaiming),
    "init=xavier": (dict(init="xavier"), _check_xavier),
    "zero_init_residual": (dict(zero_init_residual=True), _check_zero_init),
    "zero_init_residual+pre": (dict(zero_init_residual=True, activation="pre"), _check_zero_init),
    "conv_bias": (dict(conv_bias=True, shortcut="conv1x1"), _conv_bias),
    "shortcut_norm=off": (dict(shortcut="conv1x1", shortcut_norm=False), _no_shortcut_norm),
    "project_all": (dict(shortcut="conv1x1", project_all=True), _has_projection_everywhere),
    "project_all+conv3x3": (dict(shortcut="conv3x3", project_all=True), _has_projection_everywhere),
    "project_stage_entry": (dict(shortcut="conv1x1", project_stage_entry=True), _stage_entry_projection),
    "in_channels=1": (dict(in_channels=1), _in_channels_1),
}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_registry_value_forward_backward(name):
    overrides, check = VARIANTS[name]
    cfg = dict(SMALL, **overrides)
    torch.manual_seed(0)
    model = build_model(cfg).train()
    check(model, cfg)
    model.train()
    in_ch = cfg.get("in_channels", 3)
    x = torch.randn(4, in_ch, 32, 32)
    y = torch.randint(0, 7, (4,))
    out = model(x)
    assert out.shape == (4, 7)
    assert torch.isfinite(out).all()
    F.cross_entropy(out, y).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
    assert any(p.grad.abs().sum() > 0 for p in model.parameters())
    model.eval()
    with torch.no_grad():
        assert model(x[:1]).shape == (1, 7)


def test_gem_pooling_spans_gap_to_gmp_and_fuses_per_member():
    """GeM (Radenović et al. 2018) with p = 1 is GAP and with a large p nears GMP; fused, each member has its own p."""
    from numerics import scaled_error

    torch.manual_seed(0)
    feats = torch.rand(3, 8, 4, 4, dtype=torch.float64) + 0.1
    pool = build_model(dict(SMALL, pooling="gem")).double().pool
    with torch.no_grad():
        pool.p.fill_(1.0)
        assert scaled_error(pool(feats), feats.mean(dim=(2, 3))) < 1e-12
        pool.p.fill_(64.0)
        gmp = feats.amax(dim=(2, 3))
        assert scaled_error(pool(feats), gmp) < 0.05 and (pool(feats) <= gmp).all()
    fused = build_model(dict(SMALL, pooling="gem"), members=2, seeds=[0, 1]).double()
    assert fused.pool.p.shape == (2,)
    with torch.no_grad():
        fused.pool.p.copy_(torch.tensor([1.0, 64.0]))
        out = fused.pool(torch.cat([feats, feats], dim=1))
    assert scaled_error(out[:, :8], feats.mean(dim=(2, 3))) < 1e-12
    assert scaled_error(out[:, 8:], pool(feats).detach()) < 1e-12  # member 1 pools as the solo net with p = 64


@pytest.mark.parametrize("cfg,in_ch", [
    (dict(family="cifar", depth=8, stem="imagenet", num_classes=10), 3),
    (NAMED_MODELS["seed002-d2l-resnet18"], 1),
], ids=["cifar8-imagenet-stem", "seed002"])
def test_output_shape_224(cfg, in_ch):
    model = build_model(cfg).eval()
    with torch.no_grad():
        out = model(torch.randn(1, in_ch, 224, 224))
    assert out.shape == (1, 10)
    assert torch.isfinite(out).all()


def test_output_shape_32_imagenet_family_and_width():
    model = build_model(dict(family="imagenet", depth=18, stem="cifar", num_classes=10, width=0.25)).eval()
    assert model.feature_channels == 128
    with torch.no_grad():
        feats = model.forward_features(torch.randn(2, 3, 32, 32))
    assert feats.shape == (2, 128, 4, 4)
    assert model.fc(model.pool(feats)).shape == (2, 10)


# ---------------------------------------------------------------------------------------------------------------
# 5. ModelConfig
# ---------------------------------------------------------------------------------------------------------------

ROUND_TRIP = [
    {},
    dict(family="cifar", depth=110, shortcut="none", pooling="max"),
    dict(family="cifar", depth=None, stages=[2, 3, 4], widths=[8, 16, 32], width=0.5, activation="pre"),
    dict(family="cifar", depth=164, activation="pre", shortcut="conv1x1"),
    *NAMED_MODELS.values(),
]


@pytest.mark.parametrize("d", ROUND_TRIP, ids=lambda d: "-".join(f"{k}={v}" for k, v in d.items())[:60] or "default")
def test_config_round_trip(d):
    cfg = ModelConfig.from_dict(d)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    assert ModelConfig.from_dict(yaml.safe_load(yaml.safe_dump(cfg.to_dict()))) == cfg
    r = cfg.resolved()
    assert "auto" not in (r.block, r.stem)
    assert r.stages is not None and r.widths is not None and r.width == 1.0
    r2 = ModelConfig.from_dict(r.to_dict())
    assert r2 == r
    assert r2.resolved() == r  # resolving is idempotent
    assert set(r.to_dict()) == {f.name for f in dataclasses.fields(ModelConfig)}
    if d in ROUND_TRIP[:4]:  # the resolved config builds the same network (checked on a few, to stay fast)
        assert shapes(meta_model(r2)) == shapes(meta_model(cfg))


def test_width_multiplier_resolves_into_widths():
    r = ModelConfig(family="cifar", depth=20, width=0.5).resolved()
    assert r.widths == [8, 16, 32] and r.width == 1.0 and r.stages == [3, 3, 3]


BAD = [
    # (dict, substrings the message must contain)
    (dict(depht=20), ["depht", "depth", "shortcut", "activation"]),
    (dict(shortcut="optionA"), ["model.shortcut", "optionA", "identity", "conv1x1", "conv3x3", "none"]),
    (dict(block="wide"), ["model.block", "wide", "basic", "bottleneck"]),
    (dict(activation="gelu"), ["model.activation", "gelu", "post", "pre", "relu_only_pre"]),
    (dict(pooling="median"), ["model.pooling", "median", "avg", "max"]),
    (dict(stem="deep"), ["model.stem", "deep", "cifar", "imagenet"]),
    (dict(init="orthogonal"), ["model.init", "orthogonal", "kaiming", "xavier"]),
    (dict(family="vit"), ["model.family", "vit", "cifar", "imagenet"]),
    (dict(family="cifar", depth=21), ["model.depth", "21", "6n+2", "20", "56", "110"]),
    (dict(family="imagenet", depth=50, block="basic"), ["model.depth", "50", "basic", "18", "34"]),
    (dict(family="imagenet", depth=20), ["model.depth", "20", "18", "34"]),
    (dict(family="cifar", depth=20, stages=[2, 2, 2]), ["model.depth", "20", "model.stages", "14"]),
    (dict(depth="abc"), ["model.depth", "abc"]),
    (dict(stages=5, depth=None), ["model.stages", "5"]),
    (dict(widths=[16, 32]), ["model.widths", "3"]),
    (dict(project_all=True), ["project_all", "conv1x1", "conv3x3"]),
    (dict(in_channels=0), ["model.in_channels", "0"]),
    (dict(width=-1), ["model.width", "-1"]),
]


@pytest.mark.parametrize("d,needles", BAD, ids=[str(d) for d, _ in BAD])
def test_config_errors_name_the_bad_key_and_choices(d, needles):
    with pytest.raises(ConfigError) as info:
        ModelConfig.from_dict(d)
    msg = str(info.value)
    assert "\n" not in msg
    for needle in needles:
        assert needle in msg, (needle, msg)
    # build_model with a dict goes through the same validation
    with pytest.raises(ConfigError):
        build_model(d)


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


# ---------------------------------------------------------------------------------------------------------------
# 6. Stable layer names and lesions
# ---------------------------------------------------------------------------------------------------------------

def test_probe_layers_and_blocks_names():
    model = meta_model(dict(family="cifar", depth=20))
    names = [n for n, _ in model.probe_layers()]
    assert names[0] == "stem.conv"
    assert "stage1.block0.conv1" in names
    assert names[-1] == "fc"
    assert len(names) == 20  # depth counts the weighted layers (option A adds none)
    assert len(set(names)) == len(names)
    blocks = [n for n, _ in model.blocks()]
    assert blocks == [f"stage{s}.block{b}" for s in (1, 2, 3) for b in range(3)]
    # names are the module paths, so a state dict key prefix
    sd = model.state_dict()
    assert all(f"{n}.weight" in sd for n in names)


def test_probe_layer_names_bottleneck_projection():
    model = meta_model(NAMED_MODELS["resnet50-imagenet"])
    names = [n for n, _ in model.probe_layers()]
    assert names[0] == "stem.conv" and names[-1] == "fc"
    assert "stage1.block0.conv3" in names and "stage1.block0.shortcut.conv" in names
    assert len(names) == 50 + 4  # 50 weighted layers plus one projection per stage
    assert [n for n, _ in model.blocks()][-1] == "stage4.block2"


def test_lesion_changes_output_and_restores_exactly():
    torch.manual_seed(0)
    model = build_model(dict(family="cifar", depth=20)).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        before = model(x)
        model.set_lesion("stage2.block1")
        assert [n for n, b in model.blocks() if b.lesioned] == ["stage2.block1"]
        lesioned = model(x)
        model.set_lesion(["stage1.block0", "stage3.block2"])
        assert [n for n, b in model.blocks() if b.lesioned] == ["stage1.block0", "stage3.block2"]
        model.set_lesion(None)
        after = model(x)
    assert not torch.allclose(before, lesioned)
    assert torch.equal(before, after)
    assert not any(b.lesioned for _, b in model.blocks())


@pytest.mark.parametrize("activation", ["post", "pre", "bn_after_add", "relu_before_add", "relu_only_pre"])
def test_lesioned_identity_block_is_post_add_function(activation):
    torch.manual_seed(0)
    model = build_model(dict(family="cifar", depth=20, activation=activation)).eval()
    randomise_bn(model, torch.Generator().manual_seed(3))
    model.set_lesion("stage2.block1")
    blk = model.stage2.block1
    x = torch.randn(2, 32, 8, 8)
    with torch.no_grad():
        out = blk(x)
        expected = {"post": F.relu(x), "pre": x, "relu_before_add": x, "relu_only_pre": x,
                    "bn_after_add": F.relu(blk.bn2(x))}[activation]
    assert torch.equal(out, expected)


def test_lesioned_stage_entry_block_is_padded_shortcut():
    model = build_model(dict(family="cifar", depth=20)).eval()
    model.set_lesion("stage2.block0")
    x = torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        out = model.stage2.block0(x)
    padded = torch.cat([torch.zeros(2, 8, 4, 4), x[:, :, ::2, ::2], torch.zeros(2, 8, 4, 4)], dim=1)
    assert torch.equal(out, F.relu(padded))


def test_lesion_unknown_block_is_config_error():
    model = meta_model(dict(family="cifar", depth=20))
    with pytest.raises(ConfigError) as info:
        model.set_lesion("stage4.block0")
    msg = str(info.value)
    assert "stage4.block0" in msg and "stage1.block0" in msg and "\n" not in msg
    assert not any(b.lesioned for _, b in model.blocks())


def test_plain_and_residual_blocks_are_lesioned_on_equal_footing():
    """A lesioned block of unchanged shape is the identity in a plain net as in its residual twin (post-activation
    inputs are ReLU outputs, so ReLU(x) = x); a plain stage entry has no shortcut and cannot be lesioned."""
    torch.manual_seed(0)
    plain = build_model(dict(family="cifar", depth=20, shortcut="none")).eval()
    residual = build_model(dict(family="cifar", depth=20, shortcut="identity")).eval()
    x = torch.rand(2, 32, 8, 8)  # >= 0, as the ReLU output that feeds a post-activation block
    with torch.no_grad():
        for model in (plain, residual):
            model.set_lesion("stage2.block1")
            assert torch.equal(model.stage2.block1(x), x)
            model.set_lesion(None)
            assert not torch.equal(model.stage2.block1(x), x)
    assert [n for n, b in plain.blocks() if not b.lesionable] == ["stage2.block0", "stage3.block0"]
    assert all(b.lesionable for _, b in residual.blocks())
    with pytest.raises(ConfigError, match="stage2.block0.*cannot be lesioned"):
        plain.set_lesion("stage2.block0")
    assert not any(b.lesioned for _, b in plain.blocks())


def test_lesion_table_marks_plain_stage_entries_and_keeps_the_rest():
    from resnet_core.lesion import lesion_table

    torch.manual_seed(0)
    model = build_model(dict(family="cifar", depth=8, shortcut="none", num_classes=4)).eval()
    loader = [(torch.randn(8, 3, 8, 8), torch.randint(0, 4, (8,)))]
    table = lesion_table(model, loader, torch.device("cpu"))
    assert table.block.tolist() == [n for n, _ in model.blocks()]
    stuck = table[~table.lesionable]
    assert stuck.block.tolist() == ["stage2.block0", "stage3.block0"] and stuck.test_error.isna().all()
    assert table[table.lesionable].test_error.notna().all()


def test_a_block_whose_deletion_makes_the_outputs_nan_is_a_lesion_result_counted_as_errors():
    """A net that is finite intact but gives NaN with one block deleted: that row counts its NaN images as errors and
    says how many (argmax over NaN scored 75 % for 4 classes before; then the whole table was refused, losing every
    other block's result); the other rows are as they were. A NaN intact net has no baseline: no table."""
    from resnet_core.errors import NonFiniteOutputs
    from resnet_core.lesion import lesion_table

    torch.manual_seed(0)
    model = build_model(dict(family="cifar", depth=8, shortcut="identity", num_classes=4)).eval()
    blocks = dict(model.blocks())
    loader = [(torch.randn(8, 3, 8, 8), torch.randint(0, 4, (8,)))]
    before = lesion_table(model, loader, torch.device("cpu"))
    hook = blocks["stage2.block0"].register_forward_hook(
        lambda m, i, out: out * float("nan") if m.lesioned else out)
    table = lesion_table(model, loader, torch.device("cpu")).set_index("block")
    assert table.loc["stage2.block0", "test_error"] == 100.0
    assert table.loc["stage2.block0", "nonfinite_images"] == 8
    others = table.drop(index="stage2.block0")
    assert (others["nonfinite_images"] == 0).all()
    assert others["test_error"].tolist() == before.set_index("block").drop(index="stage2.block0")["test_error"].tolist()
    hook.remove()
    blocks["stage1.block0"].register_forward_hook(lambda m, i, out: out * float("nan"))   # NaN intact
    with pytest.raises(NonFiniteOutputs, match=r"with no block deleted, on the test split \(8 of 8 images\)"):
        lesion_table(model, loader, torch.device("cpu"))
    assert not any(b.lesioned for b in blocks.values())  # the net is left intact


@pytest.mark.parametrize("cfg, size", [(ModelConfig(family="cifar", depth=20), 32),
                                       (ModelConfig(family="cifar", depth=14, shortcut="conv1x1", pooling="max",
                                                    activation="pre", num_classes=4, in_channels=1), 16)])
def test_the_shape_checks_forward_counts_the_flops_the_estimate_reads(cfg, size, monkeypatch):
    """A sweep's launch ran two meta forwards per model, one for the shape check and one to count FLOPs for its
    time estimate (a third of a 1,152-trial dry run). The check's forward (batch 2, train mode) counts them, and
    forward_flops reads that count without building the model again; it equals a count of its own, per image."""
    from torch.utils.flop_counter import FlopCounterMode

    from resnet_core import feasibility, flops

    with torch.device("meta"):
        model = build_model(cfg).eval()
    with FlopCounterMode(display=False) as counter:
        model(torch.empty(1, cfg.in_channels, size, size, device="meta"))
    want = counter.get_total_flops()
    monkeypatch.setattr(flops, "_COUNTED", {})
    feasibility._forward_error.cache_clear()   # another test's check of the same model would skip the forward
    feasibility.check_forward(cfg, channels=cfg.in_channels, size=size, batch_size=128)
    monkeypatch.setattr(flops, "build_model", lambda *a, **k: pytest.fail("counted again"))
    assert flops.forward_flops(cfg, size) == want and flops.forward_flops(cfg, size, batch=3) == 3 * want
