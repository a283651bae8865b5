"""`tenet_trainer.forkserver`: each run a process of its own, forked from the pre-imported server or, for an
import-time environment change or `fresh`, exec'd afresh; status and signals reported; a run
without its caller is stopped; the server outlives no parent. (The CLI tests all go through it: conftest `run_cli`.)"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tenet_trainer.forkserver import import_time_env_differs


def _wait(what: str, probe, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except FileNotFoundError:
        return ""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("fork")
    sock = folder / "fork.sock"
    proc = subprocess.Popen([sys.executable, "-m", "tenet_trainer.forkserver", str(sock)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    assert (sock.stat().st_mode & 0o777) == 0o600
    yield sock
    proc.terminate()
    proc.wait(30)
    assert not sock.exists(), "the server removes its socket when it stops"


def _start(sock: Path, folder: Path, args: list[str], **extra) -> tuple[socket.socket, int, Path, Path]:
    out, err = folder / "out", folder / "err"
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(str(sock))
    env = {**os.environ, "TENET_TORCH_THREADS": "1", **extra.pop("env", {})}
    conn.sendall((json.dumps({"args": args, "env": env, "cwd": str(folder), "stdout": str(out), "stderr": str(err), **extra}) + "\n").encode())
    reader = conn.makefile("r")
    pid = int(reader.readline())
    return conn, pid, out, err


def _status(conn: socket.socket) -> int:
    with conn:
        return int(conn.makefile("r").readline())


def _serve_until_ready(sock: Path, folder: Path, tiny_model: Path, **extra) -> tuple[socket.socket, int, Path]:
    conn, pid, out, _ = _start(sock, folder, ["serve", "--model", str(tiny_model), "--port", "0"], **extra)
    _wait("the served model's ready line", lambda: out.exists() and '"ready"' in out.read_text())
    return conn, pid, out


def test_a_run_is_forked_from_the_server_unless_its_environment_or_the_caller_asks_for_a_fresh_one(server: Path, tiny_model: Path, tmp_path: Path):
    # The server makes the same choice for an import-time variable that differs (below): one exec is enough here.
    cases = {"forked": {}, "fresh": {"fresh": True}}
    for name, extra in cases.items():
        folder = tmp_path / name.replace(" ", "-")
        folder.mkdir()
        conn, pid, out = _serve_until_ready(server, folder, tiny_model, **extra)
        command = _cmdline(pid)
        if name == "forked":
            assert "tenet_trainer.forkserver" in command, command
        else:
            assert "-m tenet_trainer serve" in command, f"{name}: {command}"
        os.kill(pid, signal.SIGTERM)  # serve shuts down gracefully on SIGTERM and exits 0
        assert _status(conn) == 0, name
        assert '"done"' in out.read_text(), name


def test_only_variables_read_at_import_time_call_for_a_fresh_interpreter():
    server = {"PATH": "/usr/bin", "HF_HUB_OFFLINE": "1", "TENET_TORCH_THREADS": "2"}
    assert not import_time_env_differs(dict(server), server)
    assert not import_time_env_differs({**server, "TENET_TORCH_THREADS": "1", "PYTHONUNBUFFERED": "1"}, server)
    assert import_time_env_differs({**server, "HF_HUB_OFFLINE": "0"}, server)
    assert import_time_env_differs({**server, "HF_HOME": "/elsewhere"}, server)  # set only in the run
    assert import_time_env_differs({k: v for k, v in server.items() if k != "HF_HUB_OFFLINE"}, server)  # unset in the run
    for name in ("ATEN_CPU_CAPABILITY", "CUDA_VISIBLE_DEVICES", "PYTHONPATH", "PYTHONHASHSEED", "TORCH_HOME", "PYTORCH_CUDA_ALLOC_CONF", "TRANSFORMERS_CACHE"):
        assert import_time_env_differs({**server, name: "x"}, server), name


def test_exit_codes_signals_and_appended_logs(server: Path, tiny_model: Path, tmp_path: Path):
    conn, _, out, err = _start(server, tmp_path, ["no-such-command"])
    assert _status(conn) == 2
    assert "unknown command 'no-such-command'" in err.read_text()
    first = err.read_text()

    conn, pid, out, err = _start(server, tmp_path, ["serve", "--model", str(tiny_model), "--port", "0"], append=True)
    _wait("ready", lambda: '"ready"' in out.read_text())
    os.kill(pid, signal.SIGKILL)
    assert _status(conn) == -signal.SIGKILL
    assert err.read_text().startswith(first), "append keeps what an earlier run wrote"


def test_a_run_whose_caller_went_away_is_stopped_gracefully(server: Path, tiny_model: Path, tmp_path: Path):
    conn, pid, out = _serve_until_ready(server, tmp_path, tiny_model)
    conn.close()  # a worker SIGKILLed mid-job: nobody supervises the run any more
    _wait("the run to end", lambda: not _alive(pid), 60)
    assert '"done"' in out.read_text(), "SIGTERM, not SIGKILL: the command shut down in its own way"


def test_the_server_exits_when_its_parent_does(tmp_path: Path):
    sock = tmp_path / "orphan.sock"
    # A parent that starts the server, waits for it to be ready, says its pid and exits.
    launcher = (
        "import subprocess, sys\n"
        f"p = subprocess.Popen([sys.executable, '-m', 'tenet_trainer.forkserver', {str(sock)!r}], stdout=subprocess.PIPE, text=True)\n"
        "print(p.stdout.readline().strip(), p.pid, flush=True)\n"
    )
    said = subprocess.run([sys.executable, "-c", launcher], capture_output=True, text=True, timeout=300).stdout.split()
    assert said[0] == "ready", said
    pid = int(said[1])
    _wait("the orphaned server to exit", lambda: not _alive(pid), 30)
    assert not sock.exists()
