"""Exit codes and signals, in one place for every command (and any launcher, e.g. a Slurm one, that reuses it).

SIGTERM — what cluster schedulers, ``kill`` and ``Process.terminate`` send — is handled exactly like Ctrl-C: it
raises ``Terminated`` (a ``KeyboardInterrupt``) in the main thread, so the same ``except KeyboardInterrupt`` paths
mark trials interrupted and close run records; the process then exits 143 instead of 130.

Exit codes (README, "Exit codes"):
  0   everything asked for completed
  1   some trial or run failed or diverged (or a worker crashed)
  2   a config or input error (a one-line message; nothing was created)
  3   some trials are not finished (the sweep's timeout, or a unit interrupted too often); run it again to resume
  130 interrupted by Ctrl-C (SIGINT); 143 stopped by SIGTERM — interrupted trials resume on the next launch
"""
from __future__ import annotations

import contextlib
import errno
import signal
import threading
from typing import Any, Iterator

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_UNFINISHED = 0, 1, 2, 3
EXIT_SIGINT, EXIT_SIGTERM = 128 + signal.SIGINT, 128 + signal.SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where a KeyboardInterrupt would be."""


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated(f"signal {signal.Signals(signum).name}")


def handle_sigterm() -> Any:
    """Make SIGTERM raise ``Terminated`` in the main thread (a no-op elsewhere: signals go to the main thread).
    Returns the previous handler (None off the main thread)."""
    if threading.current_thread() is threading.main_thread():
        return signal.signal(signal.SIGTERM, _raise_terminated)
    return None


def handle_inherited_sigint() -> Any:
    """Make SIGINT raise ``KeyboardInterrupt`` again where the process inherited it ignored: a shell without job
    control starts ``cmd &`` so, and Python then leaves it ignored, so ``kill -INT`` (or Ctrl-C reaching the
    script) would not stop a sweep that a launcher script started in the background. Returns the previous
    handler where it changed one, else None."""
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        return signal.signal(signal.SIGINT, signal.default_int_handler)
    return None


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """``handle_sigterm`` and ``handle_inherited_sigint`` for the duration of a block (a command run in-process,
    e.g. from tests or a launcher), then the previous handlers again."""
    previous = handle_sigterm()
    previous_int = handle_inherited_sigint()
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if previous_int is not None:
            signal.signal(signal.SIGINT, previous_int)


def interrupt_code(e: BaseException) -> int:
    """143 for SIGTERM, 130 for Ctrl-C."""
    return EXIT_SIGTERM if isinstance(e, Terminated) else EXIT_SIGINT


FULL_DISK = (errno.ENOSPC, errno.EDQUOT)   # no space left, or none left to this user (a cluster's quota)


def os_error_in(e: BaseException | None) -> OSError | None:
    """The first ``OSError`` in ``e``'s chain: ``e`` itself, else what it was raised from or while handling (torch's
    zip writer turns a failed ``write`` of the file object it was given into its own ``RuntimeError`` raised while
    handling the ``OSError``: ``[enforce fail at inline_container.cc…] … unexpected pos …``); None without one."""
    seen: set[int] = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, OSError):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


def disk_full(e: BaseException) -> bool:
    """Whether ``e`` is a full disk: an ENOSPC (or EDQUOT) ``OSError`` in its chain (``os_error_in``), or torch's
    zip writer failing (``[enforce fail at inline_container.cc…] … file write failed``, what ``torch.save`` raises
    when the disk fills under a path)."""
    err = os_error_in(e)
    if err is not None:
        return err.errno in FULL_DISK
    text = str(e)
    return isinstance(e, RuntimeError) and ("No space left" in text or
                                            ("inline_container" in text and "write failed" in text))


def disk_full_error(e: BaseException) -> OSError:
    """``e`` (``disk_full``) as the ENOSPC OSError that ``os_error_line`` turns into one line: the one in its chain
    (which names the file), else a new one."""
    err = os_error_in(e)
    return err if err is not None else OSError(errno.ENOSPC, "No space left on device")


def os_error_line(e: OSError) -> str:
    """An OSError as one line for the user: what, which file, and what to do."""
    where = f" {e.filename}" if e.filename else ""
    if e.errno in FULL_DISK:
        quota = " (disk quota exceeded)" if e.errno == errno.EDQUOT else ""
        return (f"no space left on the device{quota}{' writing' + where if where else ''}; free some space and run "
                f"the same command again (a sweep resumes; add --resume to a `train`)")
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"cannot write{where or ' a file'}: {e.strerror or 'permission denied'} (a read-only folder?)"
    if e.errno in (errno.ENOTDIR, errno.EEXIST):
        return f"{(where.strip() or 'a path')}: a part of this path is a file, not a folder"
    return f"{e.strerror or type(e).__name__}{':' + where if where else ''}"


def interrupt_reason(e: BaseException) -> str:
    """A run's ``reason`` when a signal stopped it: ``interrupted (Ctrl-C)``, ``interrupted (SIGTERM)``."""
    text = str(e).removeprefix("signal ").strip()
    return f"interrupted ({text or 'Ctrl-C'})"


class DeferredSignals:
    """While a training step runs, a stopping signal (SIGINT, SIGTERM, SIGUSR1/2 wherever a Python handler raises
    for it) waits for the step to end, so the state a graceful stop checkpoints is a whole step's. A second signal
    during the same step is not deferred (a stuck step can still be stopped). Main thread only; elsewhere a no-op."""

    SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGUSR1", "SIGUSR2") if hasattr(signal, n))

    def __init__(self) -> None:
        self.previous: dict[int, Any] = {}
        self.pending: tuple[int, Any] | None = None
        self.inside = False
        self._handler = self._on_signal   # one bound method, to recognise it when restoring

    def __enter__(self) -> "DeferredSignals":
        if threading.current_thread() is threading.main_thread():
            for s in self.SIGNALS:
                prev = signal.getsignal(s)
                if callable(prev):
                    self.previous[s] = prev
                    signal.signal(s, self._handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        for s, prev in self.previous.items():
            if signal.getsignal(s) == self._handler:   # a handler that re-armed itself stays as it set itself
                signal.signal(s, prev)

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self.inside and self.pending is None:
            self.pending = (signum, frame)
            return
        self.previous[signum](signum, frame)

    @contextlib.contextmanager
    def step(self) -> Iterator[None]:
        """Around one training step: a signal that arrives inside is handled when the step has ended. A step
        that raises leaves ``inside`` set: its state is not a whole step's (and later signals wait)."""
        self.inside = True
        yield
        self.inside = False
        if self.pending is not None:
            (signum, frame), self.pending = self.pending, None
            self.previous[signum](signum, frame)
