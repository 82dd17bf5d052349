"""Pins what ``sweeps.queue.optuna_adapter`` (the one home of Optuna's private API) relies on, and the import direction
resnet_core ← sweeps ← reports: an Optuna upgrade that breaks one of these fails here, not in a sweep."""
from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from sweeps.queue import optuna_adapter as adapter

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


def test_trial_ids_are_what_the_storage_takes(tmp_path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'a.db'}")
    study.enqueue_trial({}, user_attrs={"unit": "u"})
    frozen = study.get_trials(deepcopy=False)[0]
    tid = adapter.trial_id(frozen)
    assert isinstance(tid, int)
    trial = optuna.trial.Trial(study, tid)
    assert adapter.trial_id(trial) == tid and trial.number == frozen.number
    study_id = study._storage.get_study_id_from_name(study.study_name)  # noqa: SLF001 - only to check the id
    assert study._storage.get_trial_id_from_study_id_trial_number(study_id, frozen.number) == tid


def test_rdb_heartbeat_engine_and_stale_trials(tmp_path):
    """A heartbeat just recorded is fresh, one older than the grace period is listed stale. The fresh check reads
    through a storage with a 600 s grace period: with a 1 s one it failed whenever a second passed between the beat
    and the check (a loaded machine; SQLite's clock has whole seconds, so ~1.0 s was enough). The stale check reads
    through a 1 s grace period after 2.5 s without a beat: stale however late it runs."""
    import time

    url = f"sqlite:///{tmp_path / 'h.db'}"
    rdb = optuna.storages.RDBStorage(url, heartbeat_interval=1, grace_period=600)
    storage = adapter.cached_rdb(rdb)
    assert adapter.rdb_engine(storage) is rdb.engine and adapter.rdb_engine(rdb) is rdb.engine
    study = optuna.create_study(storage=storage)
    assert adapter.heartbeat_enabled(storage) and adapter.stale_trial_ids(study, storage) == set()
    study.enqueue_trial({}, user_attrs={"unit": "u"})
    tid = adapter.trial_id(study.get_trials(deepcopy=False)[0])
    assert storage.set_trial_state_values(tid, state=TrialState.RUNNING)
    adapter.record_heartbeat(storage, tid)
    assert adapter.stale_trial_ids(study, storage) == set()
    short = adapter.cached_rdb(optuna.storages.RDBStorage(url, heartbeat_interval=1, grace_period=1))
    time.sleep(2.5)   # a lower bound: later is as stale
    assert adapter.stale_trial_ids(study, short) == {tid}            # listed, not failed
    assert adapter.stale_trial_ids(study, storage) == set()          # the grace period is what decides
    assert study.get_trials(deepcopy=False)[0].state == TrialState.RUNNING
    plain = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'p.db'}")
    assert not adapter.heartbeat_enabled(plain)
    assert adapter.stale_trial_ids(optuna.create_study(storage=plain), plain) is None


def test_journal_has_no_heartbeat_and_no_engine(tmp_path):
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    storage = JournalStorage(JournalFileBackend(str(tmp_path / "j.journal")))
    study = optuna.create_study(storage=storage)
    assert adapter.stale_trial_ids(study, storage) is None and adapter.rdb_engine(storage) is None
    adapter.record_heartbeat(storage, 0)  # a no-op


def test_samplers_read_trials_through_the_view():
    """TPE reads the study it is given through ``_get_trials``: the view must filter it."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for cell, x in (("a", 1.0), ("a", 2.0), ("b", 100.0)):
        study.add_trial(optuna.trial.create_trial(params={"x": x}, distributions={
            "x": optuna.distributions.FloatDistribution(0, 200)}, value=x, user_attrs={"cell": cell}))
    view = adapter.StudyView(study, lambda t: t.user_attrs.get("cell") == "a")
    assert [t.params["x"] for t in view.get_trials()] == [1.0, 2.0] == [t.params["x"] for t in view.trials]
    assert [t.params["x"] for t in view._get_trials(deepcopy=False, states=None, use_cache=True)] == [1.0, 2.0]
    assert hasattr(optuna.Study, "_get_trials")
    seen = []
    sampler = optuna.samplers.TPESampler(n_startup_trials=1, seed=0)
    original = study._get_trials

    def spy(*args, **kwargs):
        seen.append(True)
        return original(*args, **kwargs)

    study._get_trials = spy
    sampler.sample_independent(view, study.get_trials()[0], "x", optuna.distributions.FloatDistribution(0, 200))
    assert seen, "TPE no longer reads trials through Study._get_trials: update StudyView"


PRIVATE = re.compile(r"optuna.*\._|\._storage|_CachedStorage|\._trial_id|\._study_id|_get_stale|\._backend|get_storage\(")


def test_optuna_private_names_live_in_the_adapter_only():
    hits = []
    for package in ("sweeps", "resnet_core", "reports"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if path.name == "optuna_adapter.py":
                continue
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if PRIVATE.search(line):
                    hits.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not hits, "\n".join(hits)


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package,forbidden", [("sweeps", {"reports"}), ("resnet_core", {"sweeps", "reports"})])
def test_imports_run_one_way(package, forbidden):
    """resnet_core ← sweeps ← reports: nothing imports a package downstream of it (also inside functions)."""
    bad = {str(p.relative_to(ROOT)): _imports(p) & forbidden for p in sorted((ROOT / package).rglob("*.py"))}
    assert not {k: v for k, v in bad.items() if v}


def test_importing_every_sweeps_module_loads_no_reports_module():
    mods = sorted(f"sweeps.{p.stem}" for p in (ROOT / "sweeps").glob("*.py") if p.stem != "__init__")
    code = f"import sys\nfor m in {mods!r}: __import__(m)\nprint(sorted(n for n in sys.modules if n.split('.')[0] == 'reports'))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_the_journal_reads_records_by_optunas_own_op_codes(tmp_path):
    """``journal`` salvages a damaged journal by each line's ``op_code``: the codes are Optuna's (its private
    ``JournalOperation``), so a journal Optuna writes must carry, for each kind of record, the code ``journal`` reads
    as that kind. Hard-coded codes that Optuna renumbered fail here; so does a fallback table gone stale."""
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    from sweeps.queue import journal

    path = tmp_path / "j.journal"
    storage = JournalStorage(JournalFileBackend(str(path)))
    study = optuna.create_study(storage=storage, study_name="ops")
    study.set_user_attr("k", 1)
    storage.set_study_system_attr(study._study_id, "s", 2)   # noqa: SLF001 - only to write that record
    trial = study.ask()
    trial.suggest_float("lr", 0.0, 1.0)
    trial.report(0.5, 1)
    trial.set_user_attr("u", 1)
    storage.set_trial_system_attr(adapter.trial_id(trial), "t", 1)
    study.tell(trial, 0.25)
    optuna.delete_study(study_name="ops", storage=storage)
    codes = [json.loads(line)["op_code"] for line in path.read_text().splitlines()]
    ops = journal.OPS
    assert codes == [ops["CREATE_STUDY"], ops["SET_STUDY_USER_ATTR"], ops["SET_STUDY_SYSTEM_ATTR"],
                     ops["CREATE_TRIAL"], ops["SET_TRIAL_PARAM"], ops["SET_TRIAL_INTERMEDIATE_VALUE"],
                     ops["SET_TRIAL_USER_ATTR"], ops["SET_TRIAL_SYSTEM_ATTR"], ops["SET_TRIAL_STATE_VALUES"],
                     ops["DELETE_STUDY"]]
    assert (journal.CREATE_STUDY, journal.CREATE_TRIAL, journal.DELETE_STUDY) == (codes[0], codes[3], codes[-1])
    assert set(journal.STUDY_OPS) == {codes[1], codes[2], codes[-1]}
    assert set(journal.TRIAL_OPS) == set(codes[4:9])
    assert set(codes) <= journal.KNOWN_OPS
    from optuna.storages.journal._storage import JournalOperation   # where the installed Optuna keeps it
    assert journal.OPS == {op.name: int(op) for op in JournalOperation} == adapter.JOURNAL_OPS_FALLBACK
