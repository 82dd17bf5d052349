"""A small reader for offline `.wandb` run files (wandb >= 0.30 ships none).

The file is a LevelDB-style record log: a 7-byte file header (":W&B", magic 0xBEE1, version 0), then 32 KiB blocks
of records, each with a 7-byte header (CRC32, length, type FULL/FIRST/MIDDLE/LAST) and a chunk of a serialised
`wandb_internal_pb2.Record`.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

if TYPE_CHECKING:  # wandb's protobufs take a second to import: loaded when a file is read, not at collection
    from wandb.proto import wandb_internal_pb2

BLOCK = 32768
HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path) -> Iterator[wandb_internal_pb2.Record]:
    from wandb.proto import wandb_internal_pb2  # noqa: F811 - see the TYPE_CHECKING import

    data = Path(path).read_bytes()
    ident, magic, version = struct.unpack("<4sHB", data[:HEADER])
    assert ident == b":W&B" and magic == 0xBEE1, f"not a .wandb file: {path}"
    pos, pending = HEADER, b""
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:  # the rest of a block too short for a header is padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + HEADER])
        chunk = data[pos + HEADER:pos + HEADER + length]
        pos += HEADER + length
        if kind == 0 and length == 0:
            pos += BLOCK - pos % BLOCK if pos % BLOCK else 0
            continue
        if kind == FULL:
            pending = chunk
        elif kind == FIRST:
            pending = chunk
            continue
        elif kind == MIDDLE:
            pending += chunk
            continue
        elif kind == LAST:
            pending += chunk
        record = wandb_internal_pb2.Record()
        record.ParseFromString(pending)
        pending = b""
        yield record


def read_run(run_dir: Path) -> dict[str, Any]:
    """Run info, config, history rows (by _step) and summary of the one offline run under `run_dir/wandb`."""
    files = sorted(Path(run_dir).glob("wandb/offline-run-*/run-*.wandb"))
    assert len(files) == 1, f"expected one offline run under {run_dir}, found {files}"
    out: dict[str, Any] = {"run": None, "config": {}, "history": [], "summary": {}}
    for r in records(files[0]):
        kind = r.WhichOneof("record_type")
        if kind == "run":
            out["run"] = {"group": r.run.run_group, "job_type": r.run.job_type, "name": r.run.display_name,
                          "tags": list(r.run.tags), "project": r.run.project}
            for item in r.run.config.update:
                out["config"][item.key] = json.loads(item.value_json)
        elif kind == "config":
            for item in r.config.update:
                out["config"][item.key] = json.loads(item.value_json)
        elif kind == "history":
            row = {}
            for item in r.history.item:
                key = item.key or "/".join(item.nested_key)
                row[key] = json.loads(item.value_json)
            if r.history.HasField("step"):
                row.setdefault("_step", r.history.step.num)
            out["history"].append(row)
        elif kind == "summary":
            for item in r.summary.update:
                key = item.key or "/".join(item.nested_key)
                out["summary"][key] = json.loads(item.value_json)
    return out


# wandb-core writes a finished run's last records asynchronously: well under a second when idle, far longer
# on a loaded machine (its service process competes for the cores like everything else)
WANDB_WRITE_S = 300.0


def read_finished_run(run_dir: Path, timeout: float = WANDB_WRITE_S) -> dict[str, Any]:
    """`read_run` once the run's file holds its exit record (wandb-core writes it asynchronously: right after
    `run.finish()` returns it can still be just the 7-byte header), with the run's ``exit_code`` and ``file``."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        files = sorted(Path(run_dir).glob("wandb/offline-run-*/run-*.wandb"))
        try:
            exits = [r.exit for f in files for r in records(f) if r.WhichOneof("record_type") == "exit"]
        except Exception:  # noqa: BLE001 - a record still being written
            exits = []
        if len(files) == 1 and exits:
            return {**read_run(run_dir), "exit_code": exits[-1].exit_code, "file": files[0]}
        if time.monotonic() > deadline:
            raise AssertionError(f"no finished offline W&B run under {run_dir}: {files}")
        time.sleep(0.1)
