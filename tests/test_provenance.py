"""Results travel with their code: resnet_core.provenance (run summaries and studies record it)."""
from __future__ import annotations

import re

from resnet_core import provenance as prov

KEYS = {"package", "version", "git_commit", "git_dirty", "torch", "optuna", "wandb", "plugins"}


def test_provenance_names_the_code_and_the_library_versions():
    p = prov.provenance()
    assert set(p) == KEYS and p["package"] == "resnet-ablate"
    assert p["torch"] and p["optuna"] and p["wandb"]  # installed with the package, read without importing wandb
    assert p["git_commit"] is None or re.fullmatch(r"[0-9a-f]{40}", p["git_commit"])
    assert p["git_dirty"] in (None, True, False)
    p["torch"] = "changed"
    assert prov.provenance()["torch"] != "changed"  # a fresh dict each call, computed once


def test_outside_a_git_checkout_the_commit_is_none_and_nothing_fails(tmp_path, monkeypatch):
    assert prov.git_state(tmp_path / "installed") == (None, None)  # e.g. site-packages: no .git
    broken = tmp_path / "broken"
    (broken / ".git").mkdir(parents=True)  # a .git git cannot read
    assert prov.git_state(broken) == (None, None)
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))  # no git at all
    nogit = tmp_path / "nogit"
    (nogit / ".git").mkdir(parents=True)
    assert prov.git_state(nogit) == (None, None)
    assert prov.distribution_version("surely-not-an-installed-distribution") is None


def test_a_study_appends_a_code_version_only_when_it_changes(monkeypatch):
    here = prov.provenance()
    assert prov.provenance_history(None) == [here]  # a study from before provenance was recorded starts a list
    assert prov.provenance_history([here]) is None  # the same code again: nothing to write
    older = {**here, "version": "0.0.1", "git_commit": "0" * 40}
    assert prov.provenance_history([older]) == [older, here]
