"""`precision: auto` resolves per machine: a run resumed where it resolves otherwise than it ran is refused in one
line (it would go on in another precision), and the pin the refusal names resumes it."""
from __future__ import annotations

import pytest
from test_engine import tiny
from train_callbacks import InterruptAt

from resnet_core import devices
from resnet_core.engine import train
from resnet_core.errors import ConfigError


def test_resuming_an_auto_run_where_auto_resolves_otherwise_is_refused_and_the_pin_resumes(tmp_path, monkeypatch):
    cfg = tiny("precision=auto", fast="eager", eval_every=0.5)
    with monkeypatch.context() as m:   # the machine it started on: a CPU with native bf16, where auto is bf16
        m.setattr(devices, "cpu_has_native_bf16", lambda: True)
        with pytest.raises(KeyboardInterrupt):
            train(cfg, tmp_path / "run", callbacks=[InterruptAt(8)])
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: False)   # here auto is fp32
    with pytest.raises(ConfigError, match=r"ran as bf16 .* resolves to fp32 here; pin it \(--set precision=bf16\)"):
        train(cfg, tmp_path / "run", resume=True)
    with pytest.raises(ConfigError, match="differs in precision"):   # another precision is another run
        train({**cfg, "precision": "fp32"}, tmp_path / "run", resume=True)
    resumed = train({**cfg, "precision": "bf16"}, tmp_path / "run", resume=True)   # the pin
    assert resumed.status == "complete" and resumed.summary["precision"] == "bf16"
