"""The comparison helpers of tests/numerics.py: round-off on quantities that are zero in exact arithmetic passes,
a real fault (1e-9 on one weight of one member) fails."""
from __future__ import annotations

import pytest
import torch

from numerics import assert_series_close, assert_states_close, scaled_error, state_errors

from test_fused_model import G, TRAIN_TOL, _data, _opt, _sgd_steps, tiny, VARIANTS
from resnet_core import build_model, member_state_dict


def member_state() -> dict[str, torch.Tensor]:
    """A realistic member state: weights ~0.1-1, BN statistics, a conv bias that is pure round-off, a counter."""
    gen = torch.Generator().manual_seed(0)
    return {"conv.weight": 0.3 * torch.randn(8, 4, 3, 3, generator=gen, dtype=torch.float64),
            "conv.bias": 1e-17 * torch.randn(8, generator=gen, dtype=torch.float64),  # zero in exact arithmetic
            "bn.weight": 1 + 0.1 * torch.randn(8, generator=gen, dtype=torch.float64),
            "bn.running_var": 1 + torch.rand(8, generator=gen, dtype=torch.float64),
            "bn.num_batches_tracked": torch.tensor(20)}


def test_round_off_on_a_zero_quantity_passes_where_a_relative_error_would_not():
    ref = member_state()
    got = {k: v.clone() for k, v in ref.items()}
    got["conv.bias"] = -got["conv.bias"]  # another CPU's round-off: the same size, another sign
    naive = (got["conv.bias"] - ref["conv.bias"]).abs().max() / ref["conv.bias"].abs().max()
    assert naive > 1  # the old per-tensor relative error: noise against noise decides
    assert_states_close(got, ref, TRAIN_TOL)
    got["conv.weight"] = got["conv.weight"] * (1 + 1e-14)  # ordinary round-off on a weight
    assert_states_close(got, ref, TRAIN_TOL)


@pytest.mark.parametrize("key", ["conv.weight", "conv.bias", "bn.weight", "bn.running_var"])
def test_a_1e9_fault_on_one_element_fails(key):
    ref = member_state()
    got = {k: v.clone() for k, v in ref.items()}
    got[key].view(-1)[3] += 1e-9
    assert max(state_errors(got, ref).values()) > TRAIN_TOL
    with pytest.raises(AssertionError, match=key.replace(".", r"\.")):
        assert_states_close(got, ref, TRAIN_TOL)


def test_counters_and_shapes_compare_exactly():
    ref = member_state()
    got = {**ref, "bn.num_batches_tracked": torch.tensor(21)}
    with pytest.raises(AssertionError):
        assert_states_close(got, ref, TRAIN_TOL)
    assert scaled_error(torch.zeros(3), torch.zeros(4)) == float("inf")
    assert scaled_error(torch.tensor([float("nan")]), torch.tensor([1.0])) == float("inf")


def test_a_1e9_fault_on_one_members_trained_weight_fails_the_fused_comparison():
    """The fused-training comparison of test_fused_model at its tolerance: member 1's trained state, with 1e-9 added
    to one weight, no longer matches its separate run."""
    cfg = tiny(**VARIANTS["seed002-like"])  # conv biases and a projection without BN: round-off-only tensors
    seeds = [11, 12, 13]
    member_batch, fused_batches = _data(cfg, seeds)
    fused = build_model(cfg, members=G, seeds=seeds).double().train()
    _sgd_steps(fused, _opt(fused), fused_batches, fused=True, steps=5)
    torch.manual_seed(seeds[1])
    solo = build_model(cfg).double().train()
    _sgd_steps(solo, _opt(solo), lambda step: member_batch(seeds[1], step), fused=False, steps=5)
    got = member_state_dict(fused, 1)
    assert_states_close(got, solo.state_dict(), TRAIN_TOL)
    got["stage2.block0.conv1.weight"].view(-1)[0] += 1e-9
    with pytest.raises(AssertionError, match="stage2.block0.conv1.weight"):
        assert_states_close(got, solo.state_dict(), TRAIN_TOL)


def test_metric_series_floor_is_the_series_scale():
    ref = {(s, "train", "loss"): v for s, v in ((2, 2.3), (4, 1.9))} | {(2, "grad_norm", "fc"): 0.5,
                                                                       (4, "grad_norm", "fc"): 1e-17}
    got = dict(ref) | {(4, "grad_norm", "fc"): -1e-17}
    assert_series_close(got, ref, lambda k: 1e-10)
    got[(4, "train", "loss")] += 1e-9
    with pytest.raises(AssertionError):
        assert_series_close(got, ref, lambda k: 1e-10)
