"""Weight and conv-bias init (`resnet_core.inits`): registries, and every built-in scheme draws exactly the numbers
the hard-coded branches of `model._init_single` drew before they became registries."""
from __future__ import annotations

import dataclasses
import itertools

import pytest
import torch
from torch import nn

from resnet_core import ConfigError, ModelConfig, build_model
from resnet_core.inits import BIAS_INITS, INITS
from resnet_core.model import ResNet, fuse_state_dicts

pytestmark = pytest.mark.usefixtures("one_thread")   # tests/conftest.py

MODELS = {  # small nets that still have every kind of layer an init touches
    "cifar-8 A": dict(family="cifar", depth=8, widths=[4, 8, 8]),
    "cifar-8 C pre gem zero-init": dict(family="cifar", depth=8, widths=[4, 8, 8], shortcut="conv1x1",
                                        project_all=True, activation="pre", pooling="gem", zero_init_residual=True),
    "cifar-11 bottleneck B3": dict(family="cifar", depth=11, block="bottleneck", widths=[4, 8, 8],
                                   shortcut="conv3x3", project_stage_entry=True, shortcut_norm=False),
    "imagenet-18": dict(family="imagenet", depth=18, widths=[4, 4, 8, 8], shortcut="conv1x1", num_classes=5),
}


def _old_init(model: ResNet, cfg: ModelConfig) -> None:
    """`model._init_single` as it was (commit 7d47510), before `inits`: the reference every built-in must match."""
    r = cfg.resolved()
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            if r.init == "kaiming":
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif r.init == "xavier":
                nn.init.xavier_uniform_(m.weight)
            if m.bias is not None and r.bias_init == "zero":
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and r.init == "xavier":
            nn.init.xavier_uniform_(m.weight)
    if r.zero_init_residual:
        for _, block in model.blocks():
            block.zero_init_last()


def _old_build(cfg: ModelConfig, seed: int) -> dict[str, torch.Tensor]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ResNet(cfg)
        _old_init(model, cfg)
    return model.state_dict()


def _assert_same(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert list(got) == list(want)
    differ = [k for k in want if not torch.equal(got[k], want[k])]
    assert not differ, f"not bit-identical: {differ[:5]}"


@pytest.mark.parametrize("model", list(MODELS))
def test_every_built_in_init_is_bit_identical_to_the_old_branches(model):
    """Every built-in init × bias_init × conv_bias, built alone (seeded, and from the caller's RNG, which is left as
    the old build left it) and as two fused members, equals the old code's parameters and buffers exactly."""
    for init, bias_init, conv_bias in itertools.product(INITS, BIAS_INITS, (False, True)):
        cfg = ModelConfig(**MODELS[model], init=init, bias_init=bias_init, conv_bias=conv_bias)
        torch.manual_seed(7)
        model_new = build_model(cfg)
        after_new = torch.random.get_rng_state()
        torch.manual_seed(7)
        old = ResNet(cfg)
        _old_init(old, cfg)
        assert torch.equal(after_new, torch.random.get_rng_state()), (init, bias_init, conv_bias)
        _assert_same(model_new.state_dict(), old.state_dict())
        fused = build_model(cfg, members=2, seeds=[3, 4])
        _assert_same(fused.state_dict(), fuse_state_dicts([_old_build(cfg, 3), _old_build(cfg, 4)]))
    cfg = ModelConfig(**{**MODELS[model], "shortcut": "identity", "project_all": False, "project_stage_entry": False},
                      init="xavier", conv_bias=True, bias_init="default")
    mixed = build_model(cfg, members=2, seeds=[3, 4], shortcuts=["none", "identity"])
    _assert_same(mixed.state_dict(), fuse_state_dicts([_old_build(dataclasses.replace(cfg, shortcut="none"), 3),
                                                       _old_build(cfg, 4)]))


def test_the_built_in_inits_draw_what_their_sources_give():
    """kaiming: N(0, 2/fan_out) (torchvision's ResNet); xavier: U(±sqrt(6/(fan_in+fan_out))) on convs and the head;
    pytorch: the layers' own U(±1/sqrt(fan_in)); conv biases zero, or left at U(±1/sqrt(fan_in))."""
    base = dict(family="cifar", depth=8, widths=[16, 32, 64], conv_bias=True)
    torch.manual_seed(0)
    conv = build_model(ModelConfig(**base)).stage2.block0.conv2   # 32 → 32, 3×3: fan_in = fan_out = 288
    assert abs(conv.weight.std().item() - (2 / 288) ** 0.5) < 0.01 and torch.count_nonzero(conv.bias) == 0
    model = build_model(ModelConfig(**base, init="xavier", bias_init="default"))
    conv, fc = model.stage2.block0.conv2, model.fc
    assert conv.weight.abs().max() <= (6 / 576) ** 0.5 and conv.weight.abs().max() > (1 / 288) ** 0.5
    assert fc.weight.abs().max() <= (6 / (64 + 10)) ** 0.5 and fc.weight.abs().max() > (1 / 64) ** 0.5
    assert 0 < conv.bias.abs().max() <= (1 / 288) ** 0.5
    conv = build_model(ModelConfig(**base, init="pytorch")).stage2.block0.conv2
    assert conv.weight.abs().max() <= (1 / 288) ** 0.5


def test_the_config_takes_the_registries_names_and_lists_them():
    with pytest.raises(ConfigError, match=r"^unknown model.init 'orthogonal'; choose one of: kaiming, xavier, "
                                          r"pytorch$"):
        ModelConfig(init="orthogonal")
    with pytest.raises(ConfigError, match=r"^unknown model.bias_init 'random'; choose one of: zero, default$"):
        ModelConfig(bias_init="random")
    assert INITS.kind == "model.init" and BIAS_INITS.kind == "model.bias_init"
