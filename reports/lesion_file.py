"""A lesion table (`resnet-ablate lesion`'s CSV) checked against the study a report reads: finite numbers, each block
once per run, and only the study's own runs."""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from resnet_core.errors import ConfigError


def checked_lesion(df: pd.DataFrame | None, path: Path | str | None, explicit: bool, notes: list[str], study: str,
                   trials: pd.DataFrame, dirs: list[Path]) -> pd.DataFrame | None:
    """A lesion.csv with every number finite, no block twice for one run, and only this study's runs (a `run`
    column: files from before it are read as before); a given file that breaks this is refused, one found in the
    study folder is left out (or its other runs' rows) with a note. Two runs under one label get their run after
    it."""
    if df is None:
        return None
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)  # the cells as written: "abc", "inf", "" told apart
    problem = _lesion_problem(raw, Path(path))
    if problem:
        if explicit:
            raise ConfigError(problem)
        notes.append(f"{problem}: the file is left out")
        return None
    if "run" not in raw.columns:  # written before lesion rows named their run: read as before
        return df
    foreign = _foreign_lesion_runs(raw, Path(path), study, trials, dirs)
    if foreign:
        listed = list(foreign.values())
        named = ", ".join(listed[:3]) + (f" and {len(listed) - 3} more" if len(listed) > 3 else "")
        if explicit:
            raise ConfigError(f"lesion file {path}: {named} {'is not a run' if len(foreign) == 1 else 'are not runs'}"
                              f" of study {study!r}; give a lesion file of its own checkpoints")
        notes.append(f"{path}: the rows of {named} left out: not {'a run' if len(foreign) == 1 else 'runs'} of "
                     f"this study")
        keep = ~raw["run"].isin(list(foreign)).to_numpy()
        df, raw = df[keep].reset_index(drop=True), raw[keep].reset_index(drop=True)
        if df.empty:
            return None
    if "model" in raw.columns:  # one label per run: a model label + seed never merges two runs' rows
        runs_of = raw.groupby("model")["run"].nunique()
        shared = raw["model"].map(runs_of) > 1
        df.loc[shared, "model"] = raw.loc[shared, "model"] + " (" + raw.loc[shared, "run"] + ")"
    return df


def _lesion_problem(raw: pd.DataFrame, path: Path) -> str | None:
    """What makes a lesion file's rows unusable (one line naming the file, row and column), or None."""
    where = f"lesion file {path}"
    lesionable_col = "lesionable" in raw.columns
    for i, row in raw.iterrows():
        at = f"{where}, row {i + 1} (line {i + 2})"
        lesionable = str(row["lesionable"]).strip().lower() if lesionable_col else "true"
        if lesionable not in ("true", "false"):
            return f"{at}, column lesionable: {row['lesionable']!r}; expected True or False"
        for col in ("block_index", "test_error", "baseline_error"):
            cell = str(row[col]).strip()
            if col == "test_error" and lesionable == "false" and cell.lower() in ("", "nan"):
                continue  # a block that cannot be lesioned has no error
            value = _finite_number(cell)
            if value is None or (col == "block_index" and not value.is_integer()):
                what = "a whole number" if col == "block_index" else "a finite number"
                return f"{at}, column {col}: {cell!r} is not {what}"
        if "run" in raw.columns and not str(row["run"]).strip():
            return f"{at}, column run: empty; every row names the run folder it was measured on"
    group = "run" if "run" in raw.columns else "model" if "model" in raw.columns else None
    keys = [group, "block"] if group else ["block"]
    again = raw.index[raw.duplicated(keys)]
    if len(again):
        second = raw.loc[again[0]]
        first = raw.index[(raw[keys] == second[keys]).all(axis=1)][0]
        whose = f" of {group} {second[group]!r}" if group else ""
        return (f"{where}: block {second['block']!r}{whose} is in rows {first + 1} and {again[0] + 1}: one run's "
                f"rows given twice, or two runs under one name")
    return None


def _finite_number(cell: str) -> float | None:
    """The finite number a CSV cell holds, or None."""
    try:
        value = float(cell)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _foreign_lesion_runs(raw: pd.DataFrame, path: Path, study: str, trials: pd.DataFrame,
                         dirs: list[Path]) -> dict[str, str]:
    """The `run` values of a lesion file that are not run folders of this study's trials (a relative one is read
    against the lesion file's folder), or whose `study` names another, each with how a message names it."""
    own: set[Path] = set()
    for attr, resolved in zip(trials["run_dir_attr"], trials["run_dir"]):
        if resolved:
            own.add(Path(str(resolved)).resolve())
        if attr:
            rel = Path(str(attr))
            own.update((rel if rel.is_absolute() else d / rel).resolve() for d in dirs)
    named = raw["study"] if "study" in raw.columns else pd.Series("", index=raw.index)
    foreign = {}
    for run, other in dict.fromkeys(zip(raw["run"], named)):
        folder = Path(run) if Path(run).is_absolute() else path.parent / run
        if (other and other != study) or folder.resolve() not in own:
            foreign[run] = f"{run} (study {other!r})" if other and other != study else run
    return foreign
