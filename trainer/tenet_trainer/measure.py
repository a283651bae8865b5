"""`kl`: how far a policy adapter has moved from its reference.

For each (prompt, completion), with log-ratios r_t = log π(y_t | ·) − log π_ref(y_t | ·) over the
completion's tokens (EOS included), reports per sequence
  k1 = Σ_t r_t                              (unbiased for KL(π‖π_ref) when y ~ π)
  k3 = Σ_t (exp(−r_t) − 1 + r_t)             (non-negative, lower variance; also needs y ~ π)
averaged over sequences, and the mean completion length in tokens. The reference is the base model
with the adapter disabled, as in training.

Both estimators assume completions sampled from the policy itself at temperature 1. Greedy or
low-temperature completions (an evaluation's usual setting) bias them: k1 then measures how much
more likely the policy finds its own favourite answer, not the divergence. With `--samples N` the
job therefore draws N completions per prompt from the policy here (temperature 1, no top-p or top-k,
seeded), and measures on those; without it, it measures on the data's completions as given.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from peft import PeftModel

from tenet_trainer import data, logprobs
from tenet_trainer import generation as gen
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
    """JSONL of {prompt, completion} written by the policy; with --samples, {prompt} is enough."""
    samples: int = 0
    """Completions to sample per distinct prompt from the policy (temperature 1) and measure on; 0: the data's completions."""
    max_new_tokens: int = 128
    """Token limit of each sampled completion (with --samples)."""
    seed: int = 0
    """Seed of the sampled completions (with --samples)."""
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
        if self.samples < 0 or self.max_new_tokens < 1:
            raise UserError("--samples must be 0 or more and --max-new-tokens at least 1")
        if self.samples and self.max_new_tokens >= self.max_length:
            raise UserError(f"--max-new-tokens {self.max_new_tokens} leaves no room for the prompt within --max-length {self.max_length}")


def _reader(need_completion: bool):
    def row(obj: dict[str, Any], line: int) -> tuple[list[data.Message], str]:
        for key in ("prompt", "completion") if need_completion else ("prompt",):
            if key not in obj:
                raise UserError(f"missing {key!r}")
        example = data.parse_sft({"prompt": obj["prompt"], "completion": obj.get("completion", "")}, line)
        return example.prompt, example.completion

    return row


def sampled_sequences(model: Any, tokenizer: Any, prompts: list[list[data.Message]], config: Config) -> list[logprobs.Sequence]:
    """`config.samples` completions of each distinct prompt drawn from `model` at temperature 1, as
    prompt + completion token ids (the prompt encoded as in training: template, BOS, cut from the left)."""
    end_ids = gen.end_token_ids(tokenizer, model)
    bos = data.bos_ids(tokenizer)
    room = config.max_length - config.max_new_tokens - len(bos)
    distinct = list({json.dumps(p, sort_keys=True): p for p in prompts}.values())
    sequences: list[logprobs.Sequence] = []
    for index, prompt in enumerate(distinct):
        ids = tokenizer(data.render_prompt(tokenizer, prompt), add_special_tokens=False)["input_ids"]
        prefix = bos + (ids[-room:] if room > 0 else [])
        if not prefix:
            raise UserError(f"--max-length {config.max_length}: no room for any prompt token besides --max-new-tokens {config.max_new_tokens}")
        params = gen.SamplingParams(max_tokens=config.max_new_tokens, temperature=1.0, top_p=1.0, top_k=0, seed=gen.choice_seed(config.seed, index), n=config.samples)
        result = gen.generate(model, tokenizer, prefix, params, end_ids)
        sequences += [logprobs.Sequence(prefix + choice.token_ids, len(prefix)) for choice in result.choices if choice.token_ids]
        emit("sample", done=index + 1, total=len(distinct))
    if not sequences:
        raise UserError("the policy sampled no completion token for any prompt")
    return sequences


def kl_estimates(policy: list[torch.Tensor], reference: list[torch.Tensor]) -> dict[str, float]:
    """Mean over sequences of the summed per-token k1 and k3 estimators (see the module docstring)."""
    k1 = [float((p - r).sum()) for p, r in zip(policy, reference)]
    k3 = [float((torch.exp(r - p) - 1 - (r - p)).sum()) for p, r in zip(policy, reference)]
    return {"kl_k1": sum(k1) / len(k1), "kl_k3": sum(k3) / len(k3)}


def run(config: Config) -> dict[str, float]:
    device = pick_device(config.device)
    dtype = pick_dtype(device, config.dtype)
    rows = read_jsonl(config.data, _reader(need_completion=config.samples == 0))
    if not rows:
        raise UserError(f"{config.data}: no rows")
    tokenizer = load_tokenizer(config.model)
    model = PeftModel.from_pretrained(load_causal_lm(config.model, device, dtype), config.adapter)
    model.eval()
    if config.samples:
        sequences = sampled_sequences(model, tokenizer, [prompt for prompt, _ in rows], config)
    else:
        sequences = [logprobs.encode(tokenizer, prompt, completion, config.max_length) for prompt, completion in rows]
    pad = tokenizer.pad_token_id
    policy = logprobs.precompute(model, sequences, pad, device, config.batch_size, "policy")
    reference = logprobs.reference_logprobs(model, None, sequences, pad, device, dtype, config.batch_size)
    metrics = {
        **kl_estimates(policy, reference),
        "mean_length": sum(s.completion_tokens for s in sequences) / len(sequences),
        "rows": len(sequences),
        "sampled": 1 if config.samples else 0,
    }
    emit("done", metrics=metrics)
    return metrics
