"""Data-parallel training over several processes: FSDP2 (`torch.distributed.fsdp.fully_shard`) on
one node, launched by `torchrun` or by `--nproc N` (see `launch`).

A process is distributed when the launcher set WORLD_SIZE (torchrun's environment: RANK, LOCAL_RANK,
WORLD_SIZE, MASTER_ADDR, MASTER_PORT); without it every function here is a no-op and training runs
exactly as before. Backends: NCCL for CUDA tensors and gloo for CPU tensors, so the same code runs
on a CPU-only machine.

Every rank computes the same global micro-batch (`loop.BatchSchedule`) and takes a contiguous slice
of it (`rank_slice`). With w_r the weight of rank r's slice (its row count, or a count the loss is a
mean over, such as completion tokens) and L_r the slice's mean loss, the micro-batch's loss is

    L = Σ_r w_r L_r / W,   W = Σ_r w_r,

which is the loss one process computes on the whole micro-batch. FSDP averages gradients over the
N ranks (divides their sum by N), so rank r back-propagates L_r · N · w_r / W (`slice_scale`), and the
averaged gradient is ∇L. Parameters, gradients and AdamW's moments are sharded over the ranks.

Checkpoints of a distributed run are written with torch.distributed.checkpoint (DCP) through
`get_state_dict`/`set_state_dict`: each rank writes its shards, and loading reshards them, so a
checkpoint resumes on any number of processes, one included.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

# torch.distributed.checkpoint and .fsdp are imported where used: importing them costs seconds of
# CPU, and every trainer command (one process per job) would pay it, distributed or not.

from tenet_trainer.common import UserError

DCP_FOLDER = "dcp"
"""The sharded weights and optimizer state inside a checkpoint of a distributed run."""


def active() -> bool:
    """True in a process started by torchrun or `--nproc` (WORLD_SIZE is set)."""
    return bool(os.environ.get("WORLD_SIZE"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def init() -> None:
    """Join the process group (once). CUDA processes use the GPU numbered LOCAL_RANK among the visible ones."""
    if not active() or dist.is_initialized():
        return
    for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        if not os.environ.get(name):
            raise UserError(f"WORLD_SIZE is set but {name} is not: launch with torchrun or `--nproc N`")
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if local >= torch.cuda.device_count():
            raise UserError(f"LOCAL_RANK {local}: only {torch.cuda.device_count()} GPUs visible")
        torch.cuda.set_device(local)
        dist.init_process_group("cpu:gloo,cuda:nccl", device_id=torch.device("cuda", local))
    else:
        dist.init_process_group("gloo")


def finish() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def _reduce_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")


def rank_slice(batch: list[int]) -> list[int]:
    """This rank's contiguous share of a global micro-batch; sizes differ by at most one row."""
    n, r = world_size(), rank()
    if len(batch) < n:
        raise UserError(f"--batch-size {len(batch)} is smaller than the {n} processes: every process needs at least one row")
    base, extra = divmod(len(batch), n)
    start = r * base + min(r, extra)
    return batch[start : start + base + (1 if r < extra else 0)]


def all_sum(values: list[float]) -> list[float]:
    """Element-wise sum over the ranks, in float64 (so the sum's order does not change the result's float32 value)."""
    t = torch.tensor(values, dtype=torch.float64, device=_reduce_device())
    dist.all_reduce(t)
    return t.tolist()


def any_rank(flag: bool) -> bool:
    """True on every rank when it is true on any: decisions that end a step loop must agree."""
    return all_sum([1.0 if flag else 0.0])[0] > 0


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def slice_scale(weight: float, total: float) -> float:
    """The factor N · w_r / W that makes FSDP's mean over ranks the global micro-batch's gradient."""
    return world_size() * weight / total


def combine_metrics(metrics: dict[str, float], weight: float, total: float, weight_metric: str | None) -> dict[str, float]:
    """One micro-batch's metrics from every rank's: the weight metric (a count) is summed, the rest
    are weighted means Σ_r w_r m_r / W (exact for per-row means when the weight is the row count)."""
    gathered: list[Any] = [None] * world_size()
    dist.all_gather_object(gathered, (metrics, weight))
    keys = sorted({k for part, _ in gathered for k in part})
    out: dict[str, float] = {}
    for key in keys:
        if key == weight_metric:
            out[key] = float(sum(part[key] for part, _ in gathered if key in part))
        else:
            have = [(part[key], w) for part, w in gathered if key in part]
            out[key] = float(sum(v * w for v, w in have) / max(sum(w for _, w in have), 1e-300))
    return out


def _layer_classes(model: torch.nn.Module) -> set[str]:
    """Class names of the transformer blocks: HF models list them in `_no_split_modules`."""
    names: set[str] = set()
    for module in model.modules():
        names.update(getattr(module, "_no_split_modules", None) or [])
    return names


def shard(model: torch.nn.Module) -> torch.nn.Module:
    """FSDP2 in place: each transformer block is one unit (gathered for its forward and backward,
    freed after), the rest (embeddings, head, norms) the root unit. Frozen base weights are sharded
    too; only trainable ones get gradients and optimizer state."""
    from torch.distributed.fsdp import fully_shard

    blocks = _layer_classes(model)
    for module in model.modules():
        if type(module).__name__ in blocks:
            fully_shard(module)
    fully_shard(model)
    return model


def full_tensor(value: Any) -> Any:
    """A DTensor's whole value (a collective); anything else as it is."""
    from torch.distributed.tensor import DTensor

    return value.full_tensor() if isinstance(value, DTensor) else value


def unwrap(model: torch.nn.Module) -> bool:
    """Undo `shard` for the artifact: every rank takes part in gathering the whole weights; rank 0
    then turns its model back into the plain module it was (FSDP's class, hooks and DTensors
    removed, whole parameters in place, ties kept), so the command's own `save_artifact` (peft
    `save_pretrained`, an ONNX export's forward) runs unchanged. Returns True on rank 0. Training
    cannot continue afterwards."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    from torch.distributed.fsdp import FSDPModule

    whole = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if rank() != 0:
        return False
    for module in model.modules():
        if not isinstance(module, FSDPModule):
            continue
        state = module._get_fsdp_state()
        for handle in (state._pre_forward_hook_handle, state._post_forward_hook_handle):
            if handle is not None:
                handle.remove()
        group = state._fsdp_param_group
        if group is not None:
            for handles in (group._module_to_pre_save_state_dict_hook_handle, group._module_to_pre_load_state_dict_hook_handle):
                for handle in handles.values():
                    handle.remove()
                handles.clear()
        module.__class__ = next(base for base in type(module).__bases__ if base is not FSDPModule)
    replaced: dict[int, torch.nn.Parameter] = {}
    for name, param in list(model.named_parameters(remove_duplicate=False)):
        if id(param) not in replaced:
            local = param.to_local() if hasattr(param, "to_local") else param
            replaced[id(param)] = torch.nn.Parameter(whole[name].to(local.device, local.dtype), requires_grad=param.requires_grad)
        owner, _, leaf = name.rpartition(".")
        model.get_submodule(owner)._parameters[leaf] = replaced[id(param)]
    return True


# --- checkpoints -----------------------------------------------------------------------------------


def _options(full: bool = False) -> Any:
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=full, strict=False)


def _trainable_names(model: torch.nn.Module) -> set[str]:
    return {name for name, p in model.named_parameters() if p.requires_grad}


def _state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    from torch.distributed.checkpoint.state_dict import get_state_dict

    model_sd, optim_sd = get_state_dict(model, optimizer, options=_options())
    trainable = _trainable_names(model)
    # The frozen base weights are not saved: the base model on disk is their checkpoint.
    return {"model": {k: v for k, v in model_sd.items() if k in trainable}, "optim": optim_sd}


def save_sharded(folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Every rank writes its shards of the trainable weights and of the optimizer state (a collective)."""
    import torch.distributed.checkpoint as dcp

    dcp.save(_state(model, optimizer), checkpoint_id=str(folder / DCP_FOLDER))


def load_sharded(folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Load a DCP checkpoint written by any number of processes into this one's (sharded or whole) model."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import set_state_dict

    state = _state(model, optimizer)
    try:
        with warnings.catch_warnings():
            # A one-process resume loads without a process group, which DCP supports but warns about.
            warnings.filterwarnings("ignore", message="torch.distributed is disabled")
            dcp.load(state, checkpoint_id=str(folder / DCP_FOLDER))
    except (RuntimeError, ValueError, KeyError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"checkpoint {folder}: its weights do not match this model and adapter configuration ({first})") from None
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"], options=_options())


def load_whole(trainable: dict[str, torch.Tensor], optimizer_state: dict[str, Any], model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Load a one-process checkpoint (whole tensors; optimizer state keyed by parameter index in
    `trainable`'s order) into a sharded model: `set_state_dict` scatters each rank's shard."""
    from torch.distributed.checkpoint.state_dict import set_state_dict

    names = list(trainable)
    index_to_name = dict(enumerate(names))
    by_name = {
        "state": {index_to_name[int(i)]: s for i, s in optimizer_state["state"].items()},
        "param_groups": [{**g, "params": [index_to_name[int(i)] for i in g["params"]]} for g in optimizer_state["param_groups"]],
    }
    set_state_dict(model, optimizer, model_state_dict=trainable, optim_state_dict=by_name, options=_options(full=True))


# --- the launcher ----------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    """A worker gets SIGKILL when the launcher dies (Linux prctl PR_SET_PDEATHSIG), never orphaned."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)
    except OSError:
        pass


def check_nproc(nproc: int, device: str, batch_size: int) -> None:
    """Refuse, before any work, more processes than GPUs (on CUDA) or than rows in a micro-batch, or fewer than one."""
    if nproc < 1:
        raise UserError(f"--nproc {nproc}: must be at least 1")
    if batch_size < nproc:
        raise UserError(f"--nproc {nproc}: more processes than --batch-size {batch_size}; every process needs at least one row of each micro-batch")
    if active():
        raise UserError("--nproc: this process was already launched by torchrun (WORLD_SIZE is set); use one or the other")
    on_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if on_cuda:
        have = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if nproc > have:
            visible = os.environ.get("CUDA_VISIBLE_DEVICES")
            where = f" (CUDA_VISIBLE_DEVICES={visible})" if visible is not None else ""
            raise UserError(f"--nproc {nproc}: only {have} GPUs visible here{where}")


def launch(argv: list[str], nproc: int, grace_s: float = 30.0) -> int:
    """Run `python -m tenet_trainer ARGV` in `nproc` processes with torchrun's environment; return
    0 when all succeed, else the first failure's exit code (2 when a rank failed on a user error).

    SIGTERM is passed on to every worker (they checkpoint at the same step and exit 0). When a worker
    fails the others are stopped (SIGTERM, then SIGKILL after `grace_s`): a rank waiting in a
    collective for the failed one would otherwise wait for the backend's timeout.
    """
    port = _free_port()
    base = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}
    if not torch.cuda.is_available() and "OMP_NUM_THREADS" not in base:
        base["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // nproc))
    children: list[subprocess.Popen[bytes]] = []
    for r in range(nproc):
        env = {**base, "RANK": str(r), "LOCAL_RANK": str(r), "WORLD_SIZE": str(nproc), "LOCAL_WORLD_SIZE": str(nproc), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
        children.append(subprocess.Popen([sys.executable, "-m", "tenet_trainer", *argv], env=env, preexec_fn=_die_with_parent))

    def forward(signum: int, _frame: Any) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    failed: int | None = None
    stop_at: float | None = None
    try:
        while None in [c.poll() for c in children]:  # polls every child, so each returncode is current
            codes = [_exit_code(c.returncode) for c in children if c.returncode not in (None, 0)]
            if codes and failed is None:
                # Ranks that fail together (one's error breaks the others' collectives): a user error wins.
                failed = 2 if 2 in codes else codes[0]
                stop_at = time.monotonic() + grace_s
                forward(signal.SIGTERM, None)
            if stop_at is not None and time.monotonic() > stop_at:
                forward(signal.SIGKILL, None)
            time.sleep(0.05)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if failed is None:
        codes = [_exit_code(c.returncode) for c in children if c.returncode != 0]
        failed = (2 if 2 in codes else codes[0]) if codes else 0
    return failed


def _exit_code(returncode: int) -> int:
    """A shell's exit code: 128 + N for a process killed by signal N."""
    return returncode if returncode >= 0 else 128 - returncode
