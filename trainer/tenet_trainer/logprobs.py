"""Completion log-probabilities under a policy and under its reference, shared by `dpo` and `rl`.

A sequence is prompt + completion + EOS (data.encode_prompt_completion); only the completion's
tokens (EOS included) are scored. Batches are right-padded, so padding never shifts a position.

The reference policy is the base model: a LoRA policy runs it by disabling its adapters
(`with model.disable_adapter()`), so no second copy of the weights is held. Both commands compute
what they need from the reference once, before the first optimizer step, which also makes
`--full-finetune` work without a frozen copy (the model is still the base then) and lets
`--reference-model` name another model that is loaded, used and freed before training starts.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from peft import PeftModel
from transformers import PreTrainedTokenizerBase

from tenet_trainer import data
from tenet_trainer.common import UserError, emit
from tenet_trainer.models import load_causal_lm


@dataclass(frozen=True)
class Sequence:
    """Token ids of prompt + completion + EOS, and the index of the first completion token (>= 1)."""

    ids: list[int]
    completion_start: int

    @property
    def completion_tokens(self) -> int:
        return len(self.ids) - self.completion_start


def encode(tokenizer: PreTrainedTokenizerBase, prompt: list[data.Message], completion: str, max_length: int) -> Sequence:
    """The prompt as the model sees it (its chat template) followed by the completion and EOS."""
    ids, start = data.encode_prompt_completion(tokenizer, data.render_prompt(tokenizer, prompt), completion, max_length)
    if start < 1:
        raise UserError(f"--max-length {max_length}: too short to keep any prompt token before the completion")
    return Sequence(ids, start)


@dataclass
class Batch:
    """Right-padded ids; `mask[b, t]` is 1 where target token ids[b, t + 1] belongs to the completion."""

    ids: torch.Tensor
    attention: torch.Tensor
    mask: torch.Tensor


def collate(sequences: list[Sequence], pad_id: int, device: torch.device) -> Batch:
    width = max(len(s.ids) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(sequences), width), dtype=torch.long)
    mask = torch.zeros((len(sequences), width - 1), dtype=torch.bool)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq.ids)] = torch.tensor(seq.ids)
        attention[row, : len(seq.ids)] = 1
        # Target t is token t + 1: the completion's tokens are targets completion_start - 1 … len - 2.
        mask[row, seq.completion_start - 1 : len(seq.ids) - 1] = True
    return Batch(ids.to(device), attention.to(device), mask.to(device))


def token_logprobs(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    """log π(token t + 1 | tokens ≤ t) for every target position, zero outside the completion: (B, T - 1), fp32."""
    logits = model(input_ids=batch.ids, attention_mask=batch.attention).logits[:, :-1].float()
    targets = batch.ids[:, 1:]
    chosen = torch.gather(logits.log_softmax(-1), 2, targets.unsqueeze(-1)).squeeze(-1)
    return chosen * batch.mask


def sequence_logprobs(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    """log π(completion | prompt): the sum of the completion tokens' log-probabilities, (B,)."""
    return token_logprobs(model, batch).sum(-1)


def split_rows(values: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
    """Per-row 1-D tensors of the masked entries (the completion tokens), on the CPU."""
    return [row[m].detach().cpu() for row, m in zip(values, mask)]


def join_rows(rows: list[torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
    """Inverse of split_rows: a (B, T - 1) tensor holding each row's values at its completion positions."""
    out = torch.zeros(mask.shape, dtype=torch.float32, device=mask.device)
    return out.masked_scatter(mask, torch.cat(rows).to(mask.device, torch.float32))


@contextlib.contextmanager
def base_model(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """The reference: the base with every adapter disabled (a plain model is its own base), under no_grad."""
    with torch.no_grad():
        if isinstance(model, PeftModel):
            with model.disable_adapter():
                yield model
        else:
            yield model


def disable_dropout(model: torch.nn.Module) -> None:
    """Old/reference log-probs are computed without dropout, so training must be too (as TRL does)."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0


def chunks(n: int, size: int) -> Iterator[list[int]]:
    for start in range(0, n, size):
        yield list(range(start, min(n, start + size)))


def precompute(
    model: torch.nn.Module,
    sequences: list[Sequence],
    pad_id: int,
    device: torch.device,
    batch_size: int,
    what: str,
) -> list[torch.Tensor]:
    """Per-sequence completion-token log-probs under `model` (no grad, eval mode), in batches.

    Emits a `precompute` progress line per batch, so the supervisor's heartbeat keeps beating.
    """
    was_training = model.training
    model.eval()
    rows: list[torch.Tensor] = []
    with torch.no_grad():
        for index in chunks(len(sequences), batch_size):
            batch = collate([sequences[i] for i in index], pad_id, device)
            rows += split_rows(token_logprobs(model, batch), batch.mask)
            emit("precompute", what=what, rows=len(rows), total=len(sequences))
    model.train(was_training)
    return rows


def reference_logprobs(
    model: torch.nn.Module,
    reference_model: str | None,
    sequences: list[Sequence],
    pad_id: int,
    device: torch.device,
    dtype: torch.dtype,
    batch_size: int,
) -> list[torch.Tensor]:
    """Completion-token log-probs under the reference: `reference_model` when given (loaded, used,
    freed), else the policy's base with adapters disabled. Call before any optimizer step."""
    if reference_model:
        if not Path(reference_model).exists():
            raise UserError(f"--reference-model {reference_model}: no such folder")
        reference = load_causal_lm(reference_model, device, dtype)
        disable_dropout(reference)
        own = getattr(model, "config", None)
        if own is not None and reference.config.vocab_size != own.vocab_size:
            raise UserError(f"--reference-model {reference_model}: its vocabulary ({reference.config.vocab_size}) differs from --model's ({own.vocab_size})")
        rows = precompute(reference, sequences, pad_id, device, batch_size, "reference")
        del reference
        if device.type == "cuda":
            torch.cuda.empty_cache()
        return rows
    with base_model(model) as base:
        return precompute(base, sequences, pad_id, device, batch_size, "reference")


def save_policy(model: Any, tokenizer: PreTrainedTokenizerBase) -> Callable[[Path], None]:
    """The artifact writer: the LoRA adapter (peft format, loadable by `serve` and PeftModel), or the
    whole model with --full-finetune; the tokenizer files either way."""

    def write(folder: Path) -> None:
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)

    return write
