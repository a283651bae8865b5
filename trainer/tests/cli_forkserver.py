"""A pre-imported interpreter that runs `python -m tenet_trainer ARGS` in forked children, for the tests.

A trainer command started as a fresh process spends about 8 CPU-seconds importing torch, transformers
and peft before it does anything (measured on the 2-core CI machine, `python -X importtime`), and the
trainer tests run the CLI about 40 times. This server imports those once; each run is a fork of it: a
process of its own, with its own stdout and stderr (files the caller names), environment, exit status and
signals, in which `cli.main(args)` runs as `python -m tenet_trainer` runs it (`__main__` makes the same
call). The server itself runs no tensor operation, so no thread pool exists when it forks, and it forks
from its one thread.

Protocol, over a Unix socket, one run per connection: the caller sends one JSON line
`{"args": [...], "env": {...}, "cwd": "...", "stdout": path, "stderr": path}`; the server answers with
the child's pid on one line, then its exit status on another (negative: killed by that signal, as
`subprocess` reports it). The caller (conftest `run_cli`) falls back to a fresh process when a run needs
an environment variable that takes effect at import time (conftest `IMPORT_TIME_ENV`).

    python cli_forkserver.py SOCKET_PATH    (prints "ready" once it listens)
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import random
import signal
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


def _run_child(request: dict) -> None:
    """In the forked child: become the command's process, run it, exit with its status."""
    out = os.open(request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    err = os.open(request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(err, 2)
    for fd in (null, out, err):
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    signal.signal(signal.SIGINT, signal.SIG_DFL)
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


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        # Already in a child of the server (ForkingMixIn): fork the command's process and report on it.
        request = json.loads(self.rfile.readline())
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            self.connection.close()
            _run_child(request)
        self.wfile.write(f"{pid}\n".encode())
        self.wfile.flush()
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        self.wfile.write(f"{code}\n".encode())
        self.wfile.flush()


class _Server(socketserver.ForkingMixIn, socketserver.UnixStreamServer):
    block_on_close = False


def main() -> None:
    path = sys.argv[1]
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    with _Server(path, _Handler) as server:
        os.chmod(path, 0o600)
        print("ready", flush=True)
        try:
            server.serve_forever()
        finally:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    main()
