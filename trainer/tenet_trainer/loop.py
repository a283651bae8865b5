"""The training loop every command shares: a deterministic batch schedule, gradient accumulation,
checkpoints every N steps (and on SIGTERM), and resume from the newest checkpoint.

Resuming gives the same weights as an uninterrupted run with the same seed: the batch of every step
is a function of (seed, step), and a checkpoint holds the trainable weights, the optimizer, the
learning-rate schedule and every random generator's state.

Under torchrun (or `--nproc N`) the same loop trains data-parallel with FSDP2: every rank takes its
slice of the same global micro-batch, and the loss, gradients and metrics are those of the whole
micro-batch (see `distributed`). Only rank 0 prints progress lines and publishes the artifact.
"""

from __future__ import annotations

import errno
import json
import math
import os
import random
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from tenet_trainer import distributed
from tenet_trainer.common import UserError, emit, finite
from tenet_trainer.config import TrainConfig, as_dict
from tenet_trainer.models import trainable_parameters

CHECKPOINTS = "checkpoints"
FINAL = "model"


class _Preemption:
    """SIGTERM asks for a checkpoint at the next step boundary, then a clean exit 0."""

    def __init__(self) -> None:
        self.requested = False

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, _signum: int, _frame: Any) -> None:
        self.requested = True


@dataclass
class Job:
    config: TrainConfig
    model: torch.nn.Module
    train_items: list[int]
    """Indices of the training rows; micro-batches are lists of these."""
    loss: Callable[[list[int]], tuple[torch.Tensor, dict[str, float]]]
    """Mean loss of one micro-batch and its metrics."""
    save_artifact: Callable[[Path], None]
    """Write the final artifact (adapter or model, tokenizer…) into an empty folder."""
    evaluate: Callable[[], dict[str, float]] | None = None
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    kind: str = "train"
    after_step: Callable[[int], bool] | None = None
    """Called after each optimizer step (after its step event) with the steps done; returning True
    ends training there: the model is evaluated and published as it stands (used by `rl` to stop
    early at its KL bound)."""
    weight_metric: str | None = None
    """The metric of `loss` that counts what its mean is over (e.g. "tokens"), when not rows: in a
    distributed run each rank's slice of a micro-batch weighs in by it (see `distributed`)."""


def total_steps(config: TrainConfig, n_items: int) -> int:
    if config.max_steps is not None:
        return config.max_steps
    per_step = config.batch_size * config.grad_accum
    return max(1, math.ceil(config.epochs * n_items / per_step))


class BatchSchedule:
    """The stream of training rows is the concatenation of per-epoch permutations seeded by (seed, epoch)."""

    def __init__(self, items: list[int], batch_size: int, seed: int) -> None:
        if not items:
            raise UserError("no training rows left after holding out the evaluation share")
        self.items = items
        self.batch_size = batch_size
        self.seed = seed
        self._orders: dict[int, list[int]] = {}

    def _order(self, epoch: int) -> list[int]:
        if epoch not in self._orders:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._orders[epoch] = [self.items[i] for i in torch.randperm(len(self.items), generator=g).tolist()]
        return self._orders[epoch]

    def micro_batch(self, index: int) -> list[int]:
        n = len(self.items)
        start = index * self.batch_size
        return [self._order(pos // n)[pos % n] for pos in range(start, start + self.batch_size)]


def split_items(n: int, eval_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train, held-out) row indices, chosen by seed."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    n_eval = int(round(n * eval_fraction))
    if eval_fraction > 0 and n_eval == 0 and n > 1:
        n_eval = 1
    return sorted(order[n_eval:]), sorted(order[:n_eval])


def _checkpoint_dirs(output: Path) -> list[Path]:
    root = output / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-") and (p / "state.json").is_file()]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def newest_checkpoint(output: Path) -> Path | None:
    dirs = _checkpoint_dirs(output)
    return dirs[-1] if dirs else None


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        # A checkpoint of N processes (each seeing N GPUs) may resume in one that sees fewer.
        for index, cuda_state in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state, index)


class CheckpointWriteError(RuntimeError):
    """A checkpoint could not be written (a full disk, most often); the earlier ones are kept."""


# Less free space than this when a checkpoint write fails counts as a full disk.
_DISK_FULL_BYTES = 1 << 20


def _write_failed(output: Path, final: Path, tmp: Path, err: BaseException) -> CheckpointWriteError:
    # torch reports a full disk as "unexpected pos ..."; say what failed and why, free the partial
    # files, and keep the earlier checkpoints so a rerun resumes from the newest of them.
    free = shutil.disk_usage(tmp.parent).free
    shutil.rmtree(tmp, ignore_errors=True)
    cause = "the disk is full" if free < _DISK_FULL_BYTES or getattr(err, "errno", None) == errno.ENOSPC else "the write failed"
    previous = newest_checkpoint(output)
    resume = f"a rerun resumes from {previous}" if previous else "no earlier checkpoint to resume from"
    return CheckpointWriteError(f"checkpoint {final} could not be written: {cause} ({free} bytes free on its disk): {err}; {resume}")


def _save_distributed(output: Path, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, keep: int) -> Path:
    """Every rank writes its shards (DCP) into one folder; rank 0 adds the schedule, its random
    generators and state.json, then moves the folder into place. A collective: all ranks call it."""
    root = output / CHECKPOINTS
    final = root / f"step-{step:06d}"
    tmp = root / f".tmp-step-{step:06d}-distributed"
    lead = distributed.rank() == 0
    if lead:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    distributed.barrier()
    try:
        distributed.save_sharded(tmp, model, optimizer)
        if lead:
            torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
            torch.save(_rng_state(), tmp / "rng.pt")
            (tmp / "state.json").write_text(json.dumps({"step": step, "world_size": distributed.world_size()}))
    except (OSError, RuntimeError) as err:
        raise _write_failed(output, final, tmp, err) from err
    if lead:
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        for old in _checkpoint_dirs(output)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    distributed.barrier()
    return final


def save_checkpoint(output: Path, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, keep: int) -> Path:
    if distributed.active():
        return _save_distributed(output, step, model, optimizer, scheduler, keep)
    root = output / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:06d}"
    tmp = root / f".tmp-step-{step:06d}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        torch.save({k: v.detach().cpu() for k, v in trainable_parameters(model).items()}, tmp / "trainable.pt")
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        torch.save(_rng_state(), tmp / "rng.pt")
        (tmp / "state.json").write_text(json.dumps({"step": step}))
    except (OSError, RuntimeError) as err:
        raise _write_failed(output, final, tmp, err) from err
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in _checkpoint_dirs(output)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any) -> int:
    """Load either format into this process's model: a distributed run's DCP shards (resharded to
    this run's number of processes, one included) or a one-process run's whole tensors."""
    if not (path / "state.json").is_file():
        raise UserError(f"--resume-from {path}: not a checkpoint (no state.json)")
    if (path / distributed.DCP_FOLDER).is_dir():
        distributed.load_sharded(path, model, optimizer)
    else:
        params = trainable_parameters(model)
        saved = torch.load(path / "trainable.pt", map_location="cpu", weights_only=True)
        if set(saved) != set(params):
            raise UserError(f"checkpoint {path}: its weights do not match this model and adapter configuration")
        optimizer_state = torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True)
        if distributed.active():
            distributed.load_whole({name: saved[name] for name in params}, optimizer_state, model, optimizer)
        else:
            with torch.no_grad():
                for name, tensor in saved.items():
                    params[name].copy_(tensor.to(params[name].device, params[name].dtype))
            optimizer.load_state_dict(optimizer_state)
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", map_location="cpu", weights_only=True))
    _set_rng_state(torch.load(path / "rng.pt", map_location="cpu", weights_only=False))
    return int(json.loads((path / "state.json").read_text())["step"])


def _mean_metrics(parts: list[dict[str, float]]) -> dict[str, float]:
    keys = {k for part in parts for k in part}
    return {k: float(np.mean([p[k] for p in parts if k in p])) for k in sorted(keys)}


def publish(output: Path, write: Callable[[Path], None], name: str = FINAL) -> Path:
    """Write an artifact into a fresh folder, then move it into place: readers never see half of one."""
    final = output / name
    tmp = output / f".tmp-{name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        write(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    return final


def run(job: Job) -> dict[str, Any]:
    """Train to the end (or to SIGTERM), publish the artifact, and return its metrics."""
    config = job.config
    output = Path(config.output)
    output.mkdir(parents=True, exist_ok=True)
    preemption = _Preemption()
    preemption.install()

    spread = distributed.active()
    if spread:
        distributed.shard(job.model)
    params = list(trainable_parameters(job.model).values())
    if not params:
        raise UserError("nothing to train: the model has no trainable weights")
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    steps = total_steps(config, len(job.train_items))
    warmup = config.warmup_steps
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup) if warmup > 0 else 1.0)

    start = 0
    resume = Path(config.resume_from) if config.resume_from else newest_checkpoint(output)
    if resume is not None:
        start = load_checkpoint(resume, job.model, optimizer, scheduler)
        emit("resumed", step=start, checkpoint=str(resume))
    schedule = BatchSchedule(job.train_items, config.batch_size, config.seed)
    emit("start", kind=job.kind, step=start, total_steps=steps, train_rows=len(job.train_items), hyperparameters=job.hyperparameters)

    job.model.train()
    last_saved = start
    started = time.monotonic()
    for step in range(start, steps):
        optimizer.zero_grad(set_to_none=True)
        parts: list[dict[str, float]] = []
        losses: list[float] = []
        for micro in range(config.grad_accum):
            batch = schedule.micro_batch(step * config.grad_accum + micro)
            if spread:
                # This rank's slice, weighted so the ranks' mean gradient is the whole micro-batch's.
                part = distributed.rank_slice(batch)
                loss, metrics = job.loss(part)
                weight = float(metrics[job.weight_metric]) if job.weight_metric else float(len(part))
                total, weighted = distributed.all_sum([weight, weight * float(loss.detach())])
                (loss * distributed.slice_scale(weight, total) / config.grad_accum).backward()
                losses.append(weighted / total)
                parts.append(distributed.combine_metrics(metrics, weight, total, job.weight_metric))
                continue
            loss, metrics = job.loss(batch)
            (loss / config.grad_accum).backward()
            losses.append(float(loss.detach()))
            parts.append(metrics)
        grad_norm = distributed.full_tensor(torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm))
        optimizer.step()
        scheduler.step()
        done = step + 1
        if done == steps or done % config.log_every == 0 or done == start + 1:
            emit(
                "step",
                step=done,
                total_steps=steps,
                loss=finite(float(np.mean(losses))),
                grad_norm=finite(float(grad_norm)),
                lr=scheduler.get_last_lr()[0],
                metrics=_mean_metrics(parts),
                elapsed_s=round(time.monotonic() - started, 3),
            )
        stop = job.after_step is not None and job.after_step(done)
        if spread:
            stop = distributed.any_rank(stop)
        if stop:
            steps = done
            break
        if config.checkpoint_every and done % config.checkpoint_every == 0 and done < steps:
            path = save_checkpoint(output, done, job.model, optimizer, scheduler, config.keep_checkpoints)
            last_saved = done
            emit("checkpoint", step=done, checkpoint=str(path))
        # Every rank checkpoints at the same step when any of them was asked to stop.
        requested = distributed.any_rank(preemption.requested) if spread else preemption.requested
        if requested and done < steps:
            path = save_checkpoint(output, done, job.model, optimizer, scheduler, config.keep_checkpoints) if last_saved != done else _checkpoint_dirs(output)[-1]
            emit("preempted", step=done, checkpoint=str(path))
            sys.exit(0)

    job.model.eval()
    metrics: dict[str, Any] = {}
    if job.evaluate is not None:
        with torch.no_grad():
            metrics = job.evaluate()
        emit("eval", step=steps, metrics=metrics)
    if spread:
        # Every rank helps gather the whole weights; rank 0's model becomes a plain module again and it alone publishes.
        if not distributed.unwrap(job.model):
            distributed.barrier()
            return metrics
    artifact = publish(output, job.save_artifact)
    summary = {"metrics": metrics, "steps": steps, "hyperparameters": job.hyperparameters, "config": as_dict(config)}
    (artifact / "tenet-metrics.json").write_text(json.dumps(summary, indent=2, default=str))
    emit("done", step=steps, output=str(artifact), metrics=metrics)
    if spread:
        distributed.barrier()
    return metrics
