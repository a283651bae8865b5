"""What every command shares: user errors, progress lines, JSONL input, device/dtype choice, seeding."""

from __future__ import annotations

import json
import os
import random
import sys
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import numpy as np
import torch

T = TypeVar("T")


class UserError(Exception):
    """A bad config, flag or data set: printed as one line (no traceback) and the process exits 2."""


def emit(event: str, **fields: Any) -> None:
    """One JSON object per line on stdout: the supervising activity heartbeats on each of them.

    Events: start, step, eval, checkpoint, preempted, done (and ready/adapter for `serve`). In a
    distributed run (torchrun sets RANK) only rank 0 prints them.
    """
    if os.environ.get("RANK", "0") != "0":
        return
    line = json.dumps({"event": event, **fields}, default=_json_default, allow_nan=False)
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def finite(value: float) -> float | None:
    """JSON has no NaN/inf: such metrics are reported as null."""
    return value if np.isfinite(value) else None


def read_jsonl(path: str | Path, parse: Callable[[dict[str, Any], int], T]) -> list[T]:
    """Read a JSONL file; every bad line raises a UserError naming `file:line`."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: no such file")
    rows: list[T] = []
    with p.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise UserError(f"{p}:{number}: not valid JSON ({err.msg} at column {err.colno})") from None
            if not isinstance(obj, dict):
                raise UserError(f"{p}:{number}: expected a JSON object, got {type(obj).__name__}")
            try:
                rows.append(parse(obj, number))
            except UserError as err:
                raise UserError(f"{p}:{number}: {err}") from None
    if not rows:
        raise UserError(f"{p}: no rows")
    return rows


def write_jsonl(path: str | Path, rows: Iterator[dict[str, Any]] | list[dict[str, Any]]) -> None:
    with Path(path).open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, default=_json_default) + "\n")


def pick_device(requested: str = "auto") -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {requested!r} asked for, but CUDA is not available here")
    return torch.device(requested)


def pick_dtype(device: torch.device, requested: str = "auto") -> torch.dtype:
    """bf16 on CUDA, fp32 on CPU, unless asked otherwise."""
    if requested == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    table = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}
    if requested not in table:
        raise UserError(f"dtype {requested!r}: expected auto, fp32, bf16 or fp16")
    return table[requested]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def limit_cpu_threads() -> None:
    """Honour TENET_TORCH_THREADS (tests on small machines set it)."""
    threads = os.environ.get("TENET_TORCH_THREADS", "").strip()
    if threads:
        if not threads.isdigit() or int(threads) < 1:
            raise UserError(f"TENET_TORCH_THREADS: expected a whole number of threads, 1 or more, got {threads!r}")
        torch.set_num_threads(int(threads))
