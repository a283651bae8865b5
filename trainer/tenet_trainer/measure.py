"""`kl`: how far a policy adapter has moved from its reference, measured on completions it wrote.

For each (prompt, completion) row, with log-ratios r_t = log π(y_t | ·) − log π_ref(y_t | ·) over the
completion's tokens (EOS included), reports per sequence
  k1 = Σ_t r_t                              (unbiased for KL(π‖π_ref) when y ~ π)
  k3 = Σ_t (exp(−r_t) − 1 + r_t)             (non-negative, lower variance)
averaged over rows, and the mean completion length in tokens. The reference is the base model with
the adapter disabled, as in training.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from peft import PeftModel

from tenet_trainer import data, logprobs
from tenet_trainer.common import UserError, emit, pick_device, pick_dtype, read_jsonl
from tenet_trainer.config import require
from tenet_trainer.models import load_causal_lm, load_tokenizer


@dataclass
class Config:
    model: str = ""
    """Base model: a local folder or a hub id."""
    adapter: str = ""
    """The policy's LoRA adapter folder."""
    data: str = ""
    """JSONL of {prompt, completion} written by the policy."""
    batch_size: int = 8
    max_length: int = 1024
    device: str = "auto"
    dtype: str = "auto"

    def validate(self) -> None:
        require(self, "model", "adapter", "data")
        if not (Path(self.adapter) / "adapter_config.json").is_file():
            raise UserError(f"--adapter {self.adapter}: no adapter_config.json there")
        if self.batch_size < 1 or self.max_length < 2:
            raise UserError("--batch-size must be at least 1 and --max-length at least 2")


def _row(obj: dict[str, Any], line: int) -> tuple[list[data.Message], str]:
    for key in ("prompt", "completion"):
        if key not in obj:
            raise UserError(f"missing {key!r}")
    example = data.parse_sft({"prompt": obj["prompt"], "completion": obj["completion"]}, line)
    return example.prompt, example.completion


def kl_estimates(policy: list[torch.Tensor], reference: list[torch.Tensor]) -> dict[str, float]:
    """Mean over sequences of the summed per-token k1 and k3 estimators (see the module docstring)."""
    k1 = [float((p - r).sum()) for p, r in zip(policy, reference)]
    k3 = [float((torch.exp(r - p) - 1 - (r - p)).sum()) for p, r in zip(policy, reference)]
    return {"kl_k1": sum(k1) / len(k1), "kl_k3": sum(k3) / len(k3)}


def run(config: Config) -> dict[str, float]:
    device = pick_device(config.device)
    dtype = pick_dtype(device, config.dtype)
    rows = read_jsonl(config.data, _row)
    tokenizer = load_tokenizer(config.model)
    model = PeftModel.from_pretrained(load_causal_lm(config.model, device, dtype), config.adapter)
    model.eval()
    sequences = [logprobs.encode(tokenizer, prompt, completion, config.max_length) for prompt, completion in rows]
    pad = tokenizer.pad_token_id
    policy = logprobs.precompute(model, sequences, pad, device, config.batch_size, "policy")
    reference = logprobs.reference_logprobs(model, None, sequences, pad, device, dtype, config.batch_size)
    metrics = {**kl_estimates(policy, reference), "mean_length": sum(s.completion_tokens for s in sequences) / len(sequences), "rows": len(sequences)}
    emit("done", metrics=metrics)
    return metrics
