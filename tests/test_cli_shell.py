"""The command line in a shell: a line on the terminal while torch loads (and none on a pipe), and completion
scripts that bash and zsh accept and register as documented."""
from __future__ import annotations

import io
import os
import pty
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest

from resnet_core import cli
from resnet_core.cli import LOADING, main

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


# -- the loading line ------------------------------------------------------------------------------------------------
def test_the_cli_module_loads_without_torch():
    """The console entry (resnet_core.cli:main) is importable before torch, so the line comes before the wait."""
    probe = "import sys, resnet_core.cli; print('torch' in sys.modules, 'resnet_core.model' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=ENV, timeout=120)
    assert done.returncode == 0 and done.stdout.split() == ["False", "False"], done.stderr


@pytest.mark.parametrize("terminal, torch_loaded, said", [(True, False, True), (False, False, False),
                                                       (True, True, False)])
def test_the_loading_line_is_for_a_terminal_only(monkeypatch, terminal, torch_loaded, said):
    stream = _Terminal() if terminal else io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    if torch_loaded:  # as after an earlier import: the module object is all the check looks at
        monkeypatch.setitem(sys.modules, "torch", sys.modules.get("torch", types.ModuleType("torch")))
    else:  # put back at the test's end; nothing imports torch meanwhile
        monkeypatch.delitem(sys.modules, "torch", raising=False)
    cli._say_loading()()
    assert stream.getvalue() == (LOADING + "\r\x1b[K" if said else "")


def test_a_terminal_sees_the_line_before_torch_loads_and_stdout_stays_clean():
    """`python -m resnet_core --version` with stderr on a pseudo-terminal: the line first, then cleared; stdout
    (a pipe) holds the version alone."""
    master, slave = pty.openpty()
    with subprocess.Popen([sys.executable, "-m", "resnet_core", "--version"], cwd=REPO, env=ENV,
                          stdout=subprocess.PIPE, stderr=slave) as p:
        os.close(slave)
        out, _ = p.communicate(timeout=300)
    said = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        said += chunk
    os.close(master)
    assert p.returncode == 0 and out.decode().startswith("resnet-ablate "), out
    assert said.decode().startswith(LOADING) and said.decode().endswith("\r\x1b[K"), said


# -- completion scripts ----------------------------------------------------------------------------------------------
def _script(shell: str, capsys) -> str:
    assert main(["completion", shell]) == 0
    return capsys.readouterr().out


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=60)


def test_the_bash_script_parses(tmp_path, capsys):
    if shutil.which("bash") is None:
        pytest.skip("bash is not installed")
    (tmp_path / "complete.bash").write_text(_script("bash", capsys))
    done = _run(["bash", "-n", "complete.bash"], tmp_path)
    assert done.returncode == 0, done.stderr


def test_the_zsh_script_parses_and_registers_from_fpath_and_from_eval(tmp_path, capsys):
    """As `completion --help` says: saved as _resnet-ablate on fpath (compinit reads its #compdef line), or
    eval'ed; either way `resnet-ablate` gets a completion function."""
    if shutil.which("zsh") is None:
        pytest.skip("zsh is not installed (apt-get install zsh)")
    folder = tmp_path / "zfunc"
    folder.mkdir()
    (folder / "_resnet-ablate").write_text(_script("zsh", capsys))
    done = _run(["zsh", "-n", str(folder / "_resnet-ablate")], tmp_path)
    assert done.returncode == 0, done.stderr
    check = (f"fpath=({folder} $fpath); autoload -Uz compinit; compinit -u -D -d {tmp_path}/zcompdump; "
             'print -r -- "fpath=${_comps[resnet-ablate]}"; eval "$(<' f'{folder}/_resnet-ablate)"; '
             'print -r -- "eval=${_comps[resnet-ablate]}"; print -r -- "defined=$+functions[_shtab_resnet_ablate]"; '
             "print -r -- ${_shtab_resnet_ablate_sweep_options}")
    done = _run(["zsh", "-f", "-c", check], tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:3] == ["fpath=_resnet-ablate", "eval=_shtab_resnet_ablate", "defined=1"], done.stdout
    assert "--workers" in lines[3]


# -- a stop while the commands load ------------------------------------------------------------------------------------
def test_kill_int_while_the_commands_load_stops_a_background_command(tmp_path):
    """A script's `resnet-ablate train … &` inherits SIGINT ignored; `kill -INT` sent while torch and the commands
    still load (the terminal shows the loading line) stops it with 130 and no traceback. Before: the handler came
    after the imports, the signal was dropped, and the run trained to its end (exit 0)."""
    import select
    import signal
    import time

    run = tmp_path / "run"
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "resnet_core", "train", "--config",
                             str(REPO / "ablations" / "recipes" / "smoke.yaml"), "--out", str(run)],
                            cwd=REPO, env={**ENV, "WANDB_MODE": "disabled"}, stdin=slave, stdout=slave, stderr=slave,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    os.close(slave)
    seen, sent = b"", False
    deadline = time.monotonic() + 600
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.05)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:   # the terminal closed: the command has exited
                    break
                if not chunk:
                    break
                seen += chunk
            if not sent and LOADING.encode() in seen:
                proc.send_signal(signal.SIGINT)   # the loading line is up: torch is still being imported
                sent = True
            if proc.poll() is not None and not ready:
                break
        proc.wait(timeout=300)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    text = seen.decode(errors="replace")
    assert sent, text
    assert proc.returncode == 130, text
    assert "Traceback" not in text and "interrupted" in text
    assert not (run / "summary.json").exists()   # stopped before training started
