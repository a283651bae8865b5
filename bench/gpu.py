"""Reward-model and DPO training steps on a random-initialised causal LM: tokens/s and model-FLOPs
utilisation against the device's bf16 matmul rate measured in the same run.

On a GPU: a ~0.5B-parameter Qwen2-shaped model in bf16. On a CPU (`--tiny`, or no GPU): a tiny
model in fp32, so CI can check that the script works. Last line: `ratio=<achieved/measured matmul>`.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from transformers import Qwen2Config, Qwen2ForCausalLM, Qwen2ForSequenceClassification


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_rate(device: torch.device, dtype: torch.dtype, n: int, repeats: int) -> float:
    """FLOP/s of a square matmul: the baseline the utilisation is measured against."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync(device)
    return 2 * n**3 * repeats / (time.perf_counter() - start)


def config(tiny: bool) -> Qwen2Config:
    if tiny:
        return Qwen2Config(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024, pad_token_id=0)
    # Qwen2.5-0.5B's shape: ~0.49B parameters.
    return Qwen2Config(vocab_size=151_936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=4096, tie_word_embeddings=True, pad_token_id=0)


def timed(device: torch.device, steps: int, step) -> float:
    step()  # warm-up
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tiny", action="store_true", help="a tiny fp32 model (what CI runs on CPU)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    tiny = args.tiny or not cuda
    device = torch.device("cuda" if cuda else "cpu")
    dtype = torch.bfloat16 if cuda and not tiny else torch.float32
    batch, seq, steps = (args.batch, args.seq, args.steps) if not tiny else (min(args.batch, 4), min(args.seq, 64), min(args.steps, 3))
    torch.manual_seed(0)

    peak = matmul_rate(device, dtype, 8192 if cuda else 512, 50 if cuda else 5)
    cfg = config(tiny)
    name = torch.cuda.get_device_name(0) if cuda else "cpu"
    print(f"device={name} dtype={str(dtype).removeprefix('torch.')} measured matmul rate={peak / 1e12:.2f} TFLOP/s")

    # Reward model: chosen and rejected through a scalar head, Bradley–Terry loss, AdamW step.
    rm = Qwen2ForSequenceClassification(cfg).to(device, dtype)
    rm.config.num_labels = 1
    rm.score = torch.nn.Linear(cfg.hidden_size, 1, bias=False).to(device, dtype)
    params = sum(p.numel() for p in rm.parameters())
    optimizer = torch.optim.AdamW(rm.parameters(), lr=1e-5)
    ids = torch.randint(1, cfg.vocab_size, (2 * batch, seq), device=device)

    def rm_step() -> None:
        scores = rm(input_ids=ids).logits.squeeze(-1).float()
        loss = -F.logsigmoid(scores[:batch] - scores[batch:]).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    rm_time = timed(device, steps, rm_step)
    rm_tokens = 2 * batch * seq / rm_time
    rm_mfu = 6 * params * rm_tokens / peak
    print(f"reward model: {params / 1e6:.1f}M params, {rm_tokens:,.0f} tokens/s, MFU {100 * rm_mfu:.1f}%")
    del rm, optimizer
    if cuda:
        torch.cuda.empty_cache()

    # DPO: policy forward+backward on chosen and rejected, reference forward without grad.
    policy = Qwen2ForCausalLM(cfg).to(device, dtype)
    reference = Qwen2ForCausalLM(cfg).to(device, dtype).eval()
    reference.load_state_dict(policy.state_dict())
    optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-6)
    params = sum(p.numel() for p in policy.parameters())

    def logps(model: torch.nn.Module) -> torch.Tensor:
        logits = model(input_ids=ids).logits[:, :-1].float()
        return torch.gather(logits.log_softmax(-1), 2, ids[:, 1:].unsqueeze(-1)).squeeze(-1).sum(-1)

    def dpo_step() -> None:
        with torch.no_grad():
            ref = logps(reference)
        pol = logps(policy)
        h = (pol[:batch] - ref[:batch]) - (pol[batch:] - ref[batch:])
        loss = -F.logsigmoid(0.1 * h).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    dpo_time = timed(device, steps, dpo_step)
    dpo_tokens = 2 * batch * seq / dpo_time
    dpo_mfu = (6 + 2) * params * dpo_tokens / peak  # policy fwd+bwd, reference fwd
    print(f"dpo: {params / 1e6:.1f}M params, {dpo_tokens:,.0f} tokens/s, MFU {100 * dpo_mfu:.1f}%")
    print(f"ratio={min(rm_mfu, dpo_mfu):.3f}")


if __name__ == "__main__":
    main()
