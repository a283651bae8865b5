"""`sft`: supervised fine-tuning on (prompt, completion) rows, e.g. SL-CAI revisions.

The loss is the causal-LM cross-entropy on the completion's tokens only (and its EOS), averaged over
those tokens; the prompt is rendered with the model's chat template when it has one. LoRA by default.
The artifact, OUTPUT/model/, is the adapter (peft `save_pretrained`) or, with --full-finetune, the
whole model, with the tokenizer in both cases.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from peft import TaskType

from tenet_trainer import loop
from tenet_trainer.common import UserError, pick_device, pick_dtype, read_jsonl, seed_everything
from tenet_trainer.config import TrainConfig, check_train_config
from tenet_trainer.data import SftExample, encode_prompt_completion, parse_sft, render_prompt
from tenet_trainer.models import count_parameters, load_causal_lm, load_tokenizer, with_lora

IGNORE = -100
"""Label of positions that do not count in the loss (prompt and padding)."""

Encoded = tuple[list[int], int]
"""Token ids of prompt + completion + EOS, and the index where the completion starts."""


@dataclass
class Config(TrainConfig):
    eval_data: str | None = None
    """Held-out rows (JSONL) to evaluate on instead of an --eval-fraction share of --data."""

    def validate(self) -> None:
        check_train_config(self)


def collate(rows: list[Encoded], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded (input_ids, attention_mask, labels); labels are IGNORE outside the completions."""
    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    for row, (ids, start) in enumerate(rows):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        attention_mask[row, : len(ids)] = 1
        labels[row, start : len(ids)] = torch.tensor(ids[start:])
    return input_ids, attention_mask, labels


def completion_loss(model: torch.nn.Module, rows: list[Encoded], pad_id: int, device: torch.device) -> tuple[torch.Tensor, int]:
    """(sum of the completion tokens' negative log-likelihoods, how many tokens): token t is predicted at t − 1."""
    input_ids, attention_mask, labels = (t.to(device) for t in collate(rows, pad_id))
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1].float()
    targets = labels[:, 1:]
    total = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=IGNORE, reduction="sum")
    return total, int((targets != IGNORE).sum())


def encode_rows(tokenizer: Any, rows: list[SftExample], max_length: int) -> list[Encoded]:
    return [encode_prompt_completion(tokenizer, render_prompt(tokenizer, r.prompt), r.completion, max_length) for r in rows]


def run(config: Config) -> dict[str, Any]:
    rows = read_jsonl(config.data, parse_sft)
    eval_rows = read_jsonl(config.eval_data, parse_sft) if config.eval_data else None
    seed_everything(config.seed)
    device = pick_device(config.device)
    dtype = pick_dtype(device, config.dtype)

    tokenizer = load_tokenizer(config.model)
    model = with_lora(load_causal_lm(config.model, device, dtype), config, TaskType.CAUSAL_LM)
    encoded = encode_rows(tokenizer, rows, config.max_length)
    if eval_rows is None:
        train_items, held_items = loop.split_items(len(rows), config.eval_fraction, config.seed)
        held_out = [encoded[i] for i in held_items]
    else:
        train_items, held_out = list(range(len(rows))), encode_rows(tokenizer, eval_rows, config.max_length)
    pad_id = int(tokenizer.pad_token_id)
    recent_losses: deque[float] = deque(maxlen=config.grad_accum)

    def batch_loss(batch: list[int]) -> tuple[torch.Tensor, dict[str, float]]:
        total, tokens = completion_loss(model, [encoded[i] for i in batch], pad_id, device)
        if tokens == 0:
            raise UserError("a training batch has no completion tokens (is --max-length too small?)")
        loss = total / tokens
        recent_losses.append(float(loss.detach()))
        return loss, {"tokens": float(tokens)}

    def evaluate() -> dict[str, float]:
        metrics: dict[str, float] = {"train_loss": float(np.mean(recent_losses))} if recent_losses else {}
        if held_out:
            total, tokens = 0.0, 0
            for start in range(0, len(held_out), config.batch_size):
                part_total, part_tokens = completion_loss(model, held_out[start : start + config.batch_size], pad_id, device)
                total, tokens = total + float(part_total), tokens + part_tokens
            metrics.update(eval_loss=total / max(tokens, 1), eval_rows=len(held_out), eval_tokens=tokens)
        return metrics

    def save_artifact(folder: Path) -> None:
        model.save_pretrained(folder)  # a PeftModel writes only the adapter
        tokenizer.save_pretrained(folder)

    hyperparameters = {
        "full_finetune": config.full_finetune,
        "parameters": count_parameters(model),
        "max_length": config.max_length,
        "eval_rows": len(held_out),
    }
    job = loop.Job(config=config, model=model, train_items=train_items, loss=batch_loss, save_artifact=save_artifact, evaluate=evaluate, hyperparameters=hyperparameters, kind="sft", weight_metric="tokens")
    return loop.run(job)
