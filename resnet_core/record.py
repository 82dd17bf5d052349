"""The run record: the local source of truth for every run, written even with W&B off.

A run directory holds
- ``config.yaml``: the fully resolved run config;
- ``metrics.jsonl``: one JSON object a line, ``{"step", "epoch", "split", "name", "value"}``, append-only;
- ``summary.json``: status and final/best numbers, rewritten atomically.

Errors are in percent (0-100), as in the papers. ``split`` is one of ``train``, ``val``, ``test`` (names ``loss``,
``error``, ``lr``, ``throughput``) or a probe split: ``grad_norm`` / ``grad_norm_max`` (name = layer, e.g.
``stage1.block0.conv1``), ``grad_norm_block`` / ``grad_norm_block_max`` (name = block, e.g. ``stage1.block0``),
``weight_norm`` (name = layer).
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Iterator

from .errors import ConfigError
from .values import dump_yaml, read_yaml

_UMASK = os.umask(0)
os.umask(_UMASK)
STATUSES = ("running", "complete", "diverged", "failed", "interrupted")
PROBE_SPLITS = ("grad_norm", "grad_norm_max", "grad_norm_block", "grad_norm_block_max", "weight_norm")
RECORD_FILES = ("config.yaml", "metrics.jsonl", "summary.json", "last.pt", "best.pt")   # a run folder's own files
OWNER_FILE = "owner.json"    # in a study folder: {study, study_id, storage} of the study whose runs it holds


def folder_owner(study_dir: str | Path) -> dict[str, Any] | None:
    """The owner record of a study folder (``OWNER_FILE``, written by a launch), or None when it has none (a folder
    from before owner records, a copied one in ``results/``). An unreadable record is a one-line ``ConfigError``."""
    path = Path(study_dir) / OWNER_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: not a readable owner record ({str(e).splitlines()[0][:80]}); it names the study "
                          f"whose runs {study_dir} holds") from None
    if not isinstance(record, dict) or not record.get("study_id"):
        raise ConfigError(f"{path}: not an owner record (no study_id); it names the study whose runs {study_dir} "
                          f"holds")
    return record


def run_owner(run_dir: str | Path) -> dict[str, Any] | None:
    """The owner record of the study folder a sweep's run folder lies in (``<study>/trials/<run>``), or None."""
    return folder_owner(Path(run_dir).parent.parent)


@contextlib.contextmanager
def atomic_file(path: Path, mode: str = "w", *, fsync: bool = True, exclusive: bool = False) -> Iterator[IO[Any]]:
    """The one atomic write: yield a temporary file in ``path``'s folder (as readable as any file the umask
    allows), then flush, fsync (unless ``fsync=False``) and rename it over ``path``; on an error the temporary file
    is removed and ``path`` is left as it was. ``mode`` is ``"w"`` (text) or ``"wb"`` (bytes, e.g. ``torch.save``).
    ``exclusive``: link it into place instead, so ``FileExistsError`` leaves a ``path`` already there as it was (of
    two writers at the same moment, one wins)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; a record is as readable as any file
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        if exclusive:
            os.link(tmp, path)
            Path(tmp).unlink()
        else:
            os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_out_file(path: str | Path, flag: str = "--out") -> Path:
    """``path`` if a file can be written there (a file or nothing yet, under folders or nothing yet); else a one-line
    ``ConfigError`` naming ``flag``: checked before the work, not when its result is written."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{flag} {path} is a folder, not a file; name a file (inside it, say)")
    blocking = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise ConfigError(f"{flag} {path}: {blocking} is a file, not a folder")
    return path


def remove_stale_temps(folder: Path) -> list[Path]:
    """Remove the temporary files of ``atomic_file`` (``.<name>.*.tmp``) that a killed writer left in ``folder``
    (each up to a whole checkpoint); the run's one writer calls this before it writes. Returns what it removed."""
    removed = []
    for tmp in Path(folder).glob(".*.tmp"):
        with contextlib.suppress(OSError):
            tmp.unlink()
            removed.append(tmp)
    return removed


def atomic_write_text(path: Path, text: str, *, fsync: bool = True, exclusive: bool = False) -> None:
    """Write ``text`` to ``path`` atomically (``atomic_file``)."""
    with atomic_file(path, "w", fsync=fsync, exclusive=exclusive) as f:
        f.write(text)


def atomic_write_json(path: Path, obj: Any, *, exclusive: bool = False) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_jsonable) + "\n", exclusive=exclusive)


def _jsonable(x: Any) -> Any:
    if hasattr(x, "item"):
        return x.item()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def _clean(value: float) -> float | None:
    """JSON has no NaN/inf: store them as None so every reader can parse the file."""
    value = float(value)
    return value if math.isfinite(value) else None


class RunRecord:
    """Writer for one run directory."""

    def __init__(self, run_dir: Path | str) -> None:
        self.dir = Path(run_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(self.dir)
        self.metrics_path = self.dir / "metrics.jsonl"
        self.summary_path = self.dir / "summary.json"
        self.config_path = self.dir / "config.yaml"

    def write_config(self, config: dict[str, Any]) -> None:
        atomic_write_text(self.config_path, dump_yaml(config))

    def log(self, step: int, epoch: float, split: str, values: dict[str, float]) -> None:
        """Append one line per value; each line is flushed whole, so a killed run leaves a readable file."""
        lines = [
            json.dumps({"step": int(step), "epoch": round(float(epoch), 4), "split": split, "name": k,
                        "value": _clean(v)})
            for k, v in values.items()
        ]
        with open(self.metrics_path, "a") as f:
            f.write("\n".join(lines) + "\n")
            f.flush()

    def truncate_after(self, step: int) -> None:
        """On resume: drop metric lines logged after ``step`` (they belong to the lost part of the run)."""
        self.drop_rows(lambda r: r["step"] > step)

    def drop_rows(self, drop: Callable[[dict[str, Any]], bool]) -> None:
        """Rewrite metrics.jsonl without the rows ``drop`` selects (atomically)."""
        if not self.metrics_path.exists():
            return
        kept = [r for r in read_metrics(self.dir) if not drop(r)]
        atomic_write_text(self.metrics_path, "".join(json.dumps(r) + "\n" for r in kept))

    def write_summary(self, summary: dict[str, Any]) -> None:
        atomic_write_json(self.summary_path, summary)


def record_files(run_dir: Path | str) -> list[str]:
    """The run-record files ``run_dir`` already holds (none when it does not exist): another run's, unless resumed."""
    return [name for name in RECORD_FILES if (Path(run_dir) / name).exists()]


def read_metrics(run_dir: Path | str, bad: list[int] | None = None) -> Iterator[dict[str, Any]]:
    """Yield metric rows; a line that is not a metric row (a torn last line of a killed writer, a damaged file) is
    skipped, and its 1-based number appended to ``bad`` when given, so readers can count and report them."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return
    with open(path, errors="replace") as f:
        for number, line in enumerate(f, start=1):
            try:
                row = json.loads(line)
                if not isinstance(row, dict) or not {"step", "split", "name"} <= set(row):
                    raise ValueError(line)
            except ValueError:
                if bad is not None:
                    bad.append(number)
                continue
            if row.get("value") is None:
                row["value"] = float("nan")
            yield row


def read_summary(run_dir: Path | str) -> dict[str, Any]:
    """The run's summary ({} if there is none). An empty or truncated file (a full disk, a copy cut short) or one
    that cannot be read (a folder of that name, no permission) is a one-line ``ConfigError`` naming it."""
    path = Path(run_dir) / "summary.json"
    if not path.exists():
        return {}
    try:
        text = path.read_text(errors="replace")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read summary.json ({e.strerror or type(e).__name__})") from None
    try:
        summary = json.loads(text)
    except ValueError:
        size = path.stat().st_size
        raise ConfigError(f"{path}: {'empty' if size == 0 else 'truncated or damaged'} summary.json "
                          f"({size} bytes)") from None
    if not isinstance(summary, dict):
        raise ConfigError(f"{path}: not a run summary (a JSON {type(summary).__name__})")
    return summary


def read_config(run_dir: Path | str) -> dict[str, Any]:
    path = Path(run_dir) / "config.yaml"
    return read_yaml(path) if path.exists() else {}


def metrics_frame(run_dir: Path | str, splits: Iterable[str] | None = None):
    """The metrics as a pandas DataFrame (columns step, epoch, split, name, value)."""
    import pandas as pd

    wanted = set(splits) if splits is not None else None
    bad: list[int] = []
    rows = [r for r in read_metrics(run_dir, bad) if wanted is None or r["split"] in wanted]
    df = pd.DataFrame(rows, columns=["step", "epoch", "split", "name", "value"])
    df.attrs["bad_lines"] = bad  # line numbers of metrics.jsonl that could not be read (skipped)
    return df
