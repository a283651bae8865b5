"""Causal-LM training steps under FSDP2, the trainer's multi-GPU path (`tenet_trainer.distributed`),
in every process of a torchrun launch: tokens/s over all processes and model-FLOPs utilisation

    MFU = 6 · P · (tokens/s over all processes) / Σ_ranks (bf16 matmul rate measured on the rank's GPU),

with P the model's parameters (forward + backward ≈ 6 FLOPs per parameter per token), the same
convention as bench/gpu.py. Each process trains on its own batch of `--batch` × `--seq` tokens (the
global batch grows with the processes), so MFU on N GPUs against MFU on 1 shows what sharding and
the gradient reduce-scatter cost. On a CPU (`--tiny`, gloo) it runs a tiny fp32 model to check the path.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from transformers import Qwen2ForCausalLM

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu import config, matmul_rate, timed  # noqa: E402

from tenet_trainer import distributed  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tiny", action="store_true", help="a tiny fp32 model (a CPU check of the path)")
    parser.add_argument("--batch", type=int, default=8, help="sequences per process and step")
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    if not distributed.active():
        sys.exit("bench/gpu_fsdp.py: launch it with torchrun --standalone --nproc-per-node N")
    distributed.init()
    rank, world = distributed.rank(), distributed.world_size()
    cuda = torch.cuda.is_available()
    tiny = args.tiny or not cuda
    device = torch.device("cuda", torch.cuda.current_device()) if cuda else torch.device("cpu")
    dtype = torch.bfloat16 if cuda and not tiny else torch.float32
    batch, seq, steps = (args.batch, args.seq, args.steps) if not tiny else (min(args.batch, 4), min(args.seq, 64), min(args.steps, 3))

    peak = distributed.all_sum([matmul_rate(device, dtype, 8192 if cuda else 512, 50 if cuda else 5)])[0]
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config(tiny)).to(device, dtype)
    params = sum(p.numel() for p in model.parameters())
    distributed.shard(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    ids = torch.randint(1, model.config.vocab_size, (batch, seq), device=device, generator=torch.Generator(device).manual_seed(rank))

    def step() -> None:
        logits = model(input_ids=ids).logits[:, :-1].float()
        F.cross_entropy(logits.reshape(-1, logits.size(-1)), ids[:, 1:].reshape(-1)).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    seconds = timed(device, steps, step)
    slowest = torch.tensor([seconds], dtype=torch.float64, device=device)
    dist.all_reduce(slowest, op=dist.ReduceOp.MAX)
    tokens = world * batch * seq / float(slowest)
    mfu = 6 * params * tokens / peak
    if rank == 0:
        what = ("GPU" if cuda else "process") if world == 1 else ("GPUs" if cuda else "processes")
        print(f"fsdp on {world} {what}: {params / 1e6:.1f}M params, {tokens:,.0f} tokens/s, MFU {100 * mfu:.1f}%", flush=True)
    distributed.finish()


if __name__ == "__main__":
    main()
