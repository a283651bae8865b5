"""A pre-imported interpreter that runs `python -m tenet_trainer ARGS` in forked children.

A trainer command started as a fresh process spends 4–8 CPU-seconds importing torch, transformers and
peft before it does anything (`python -X importtime`: peft alone pulls in torch._dynamo, sympy and
scipy.optimize). A CPU-only worker runs many short jobs (reward model, DPO, KL per iteration), and the
test suites run the CLI many times, so this server imports those once; each run is a fork of it: a
process of its own, with its own stdout and stderr (files the caller names), environment, working
folder, exit status and signals, in which `cli.main(args)` runs as `python -m tenet_trainer` runs it
(`__main__` makes the same call). The server runs no tensor operation, so no thread pool exists when
it forks, and it forks from its one thread. Its command line names `tenet_trainer`, and so does each
child's (a fork keeps it), which is how a worker recognises a trainer it left running.

A run whose environment changes a variable read at import time (`IMPORT_TIME_ENV`,
`IMPORT_TIME_PREFIXES`), or that asks for `"fresh": true`, replaces its forked child with a fresh
`python -m tenet_trainer ARGS` (exec: same pid, files and status reporting). GPU workers do not use the
server at all: CUDA must not be touched before a fork, and CUDA_VISIBLE_DEVICES differs per job.

Protocol, over a Unix socket (mode 600), one run per connection: the caller sends one JSON line
`{"args": [...], "env": {...}, "cwd": "...", "stdout": path, "stderr": path, "append": bool, "fresh": bool}`;
the server answers with the child's pid on one line, then its exit status on another (negative: killed
by that signal, as `subprocess` reports it). A run whose caller closes the connection first gets SIGTERM
(a trainer checkpoints and exits, as when preempted): an unsupervised trainer does not train on. The
server exits when its parent process does (checked twice a second); runs in progress are not touched.

    python -m tenet_trainer.forkserver SOCKET_PATH    (prints "ready" once it listens)
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import random
import select
import signal
import socket
import socketserver
import sys
import traceback

PRELOAD = (
    "tenet_trainer.cli",
    "tenet_trainer.reward_model",
    "tenet_trainer.sft",
    "tenet_trainer.dpo",
    "tenet_trainer.rl",
    "tenet_trainer.measure",
    "tenet_trainer.make_tiny",
    "tenet_trainer.convert_gguf",
)

IMPORT_TIME_ENV = ("ATEN_CPU_CAPABILITY", "CUDA_VISIBLE_DEVICES", "PYTHONPATH", "PYTHONHASHSEED")
IMPORT_TIME_PREFIXES = ("HF_", "TRANSFORMERS_", "TORCH_", "PYTORCH_")
"""Variables read when torch, transformers or huggingface_hub are imported: a run that sets one to
something other than the server's value gets a fresh interpreter instead. (OMP_NUM_THREADS is read when
OpenMP loads too, but the trainer's TENET_TORCH_THREADS, read when a command starts, overrides it with
torch.set_num_threads; the processes a run starts, `--nproc`, get it from the run's environment.)"""


def import_time_env_differs(env: dict[str, str], server_env: dict[str, str]) -> bool:
    keys = {k for k in {*env, *server_env} if k in IMPORT_TIME_ENV or k.startswith(IMPORT_TIME_PREFIXES)}
    return any(env.get(k) != server_env.get(k) for k in keys)


_SERVER_ENV: dict[str, str] = {}


def _run_child(request: dict) -> None:
    """In the forked child: become the command's process, run it, exit with its status."""
    mode = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if request.get("append") else os.O_TRUNC)
    out = os.open(request["stdout"], mode, 0o600)
    err = os.open(request["stderr"], mode, 0o600)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(err, 2)
    for fd in (null, out, err):
        os.close(fd)
    os.chdir(request["cwd"])
    env = {str(k): str(v) for k, v in request["env"].items()}
    if request.get("fresh") or import_time_env_differs(env, _SERVER_ENV):
        try:
            os.execve(sys.executable, [sys.executable, "-m", "tenet_trainer", *request["args"]], env)
        except OSError as error:
            os.write(2, f"could not start {sys.executable}: {error}\n".encode())
            os._exit(127)
    os.environ.clear()
    os.environ.update(env)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    # A fresh process's unseeded generators differ from run to run; forked ones would share the server's.
    random.seed()
    sys.argv = ["tenet_trainer", *request["args"]]
    code = 1
    try:
        from tenet_trainer.cli import main

        code = main(request["args"])
    except SystemExit as exit_:  # argparse's usage errors, a command's sys.exit
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        if exit_.code is not None and not isinstance(exit_.code, int):
            print(exit_.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001 - as the interpreter does: the traceback on stderr, status 1
        traceback.print_exc()
        code = 1
    finally:
        try:
            atexit._run_exitfuncs()
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _wait_or_stop(pid: int, connection: socket.socket) -> int:
    """The run's wait status. A caller that goes away (a worker SIGKILLed) leaves its run unsupervised:
    the run gets SIGTERM, on which a trainer writes a checkpoint and exits, as it does when preempted."""
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        readable, _, _ = select.select([connection], [], [], 0.5)
        if readable:
            try:
                gone = connection.recv(1, socket.MSG_PEEK) == b""
            except OSError:
                gone = True
            if gone:
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
                return os.waitpid(pid, 0)[1]
            connection.recv(4096)  # nothing more is expected from the caller; drop it


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        # Already in a child of the server (ForkingMixIn): fork the command's process and report on it.
        line = self.rfile.readline()
        if not line:
            return
        request = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            self.connection.close()
            self.server.socket.close()  # a long run keeps no descriptor of the server's
            _run_child(request)
        try:
            self.wfile.write(f"{pid}\n".encode())
            self.wfile.flush()
        except OSError:
            pass
        status = _wait_or_stop(pid, self.connection)
        code = os.waitstatus_to_exitcode(status)
        try:
            self.wfile.write(f"{code}\n".encode())
            self.wfile.flush()
        except OSError:
            pass


class _Server(socketserver.ForkingMixIn, socketserver.UnixStreamServer):
    block_on_close = False
    parent = 0

    def service_actions(self) -> None:
        super().service_actions()  # reaps finished handlers
        if os.getppid() != self.parent:  # whoever started this server has exited
            raise SystemExit(0)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m tenet_trainer.forkserver SOCKET_PATH", file=sys.stderr)
        raise SystemExit(2)
    path = args[0]
    _SERVER_ENV.update(os.environ)  # what runs are compared with: the caller's environment, before the quieting below
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    parent = os.getppid()
    old = os.umask(0o177)  # the socket is made 600 from the start
    try:
        server = _Server(path, _Handler)
    finally:
        os.umask(old)
    server.parent = parent
    with server:
        print("ready", flush=True)
        try:
            server.serve_forever(poll_interval=0.5)
        finally:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    main()
