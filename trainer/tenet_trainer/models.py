"""Loading base models (local folder or hub id), tokenizers and LoRA adapters."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, PeftModel, TaskType, get_peft_model
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from tenet_trainer.common import UserError
from tenet_trainer.config import TrainConfig


def _describe_load_error(name: str, err: Exception) -> UserError:
    local = Path(name).exists()
    if not local and os.environ.get("HF_HUB_OFFLINE") == "1":
        return UserError(f"model {name!r}: not a local folder, and the hub is offline (HF_HUB_OFFLINE=1)")
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return UserError(f"model {name!r}: cannot load ({first})")


def load_tokenizer(name: str) -> PreTrainedTokenizerBase:
    """A tokenizer from a local folder or the hub; pad token falls back to EOS."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as err:
        raise _describe_load_error(name, err) from None
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise UserError(f"model {name!r}: its tokenizer has neither a pad nor an EOS token")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_lm(name: str, device: torch.device, dtype: torch.dtype) -> PreTrainedModel:
    try:
        model = AutoModelForCausalLM.from_pretrained(name, dtype=dtype)
    except (OSError, ValueError) as err:
        raise _describe_load_error(name, err) from None
    return model.to(device)


def load_sequence_scorer(name: str, device: torch.device, dtype: torch.dtype, pad_token_id: int | None) -> PreTrainedModel:
    """A scalar head on an HF backbone: encoders use their pooled output, causal LMs the last token."""
    try:
        model = AutoModelForSequenceClassification.from_pretrained(name, num_labels=1, dtype=dtype)
    except (OSError, ValueError) as err:
        raise _describe_load_error(name, err) from None
    if model.config.pad_token_id is None and pad_token_id is not None:
        model.config.pad_token_id = pad_token_id
    return model.to(device)


def _targets(config: TrainConfig) -> str | list[str]:
    spec = config.lora_target_modules.strip()
    return "all-linear" if spec == "all-linear" else [s.strip() for s in spec.split(",") if s.strip()]


def with_lora(model: PreTrainedModel, config: TrainConfig, task: TaskType) -> Any:
    """Wrap in a trainable LoRA adapter: a fresh one, or `config.adapter` when given. Full fine-tune returns the model."""
    if config.adapter:
        if not (Path(config.adapter) / "adapter_config.json").is_file():
            raise UserError(f"--adapter {config.adapter}: no adapter_config.json there")
        return PeftModel.from_pretrained(model, config.adapter, is_trainable=True)
    if config.full_finetune:
        return model
    lora = LoraConfig(
        task_type=task,
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=_targets(config),
    )
    try:
        return get_peft_model(model, lora)
    except ValueError as err:
        raise UserError(f"--lora-target-modules: {str(err).splitlines()[0]}") from None


def trainable_parameters(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def count_parameters(model: torch.nn.Module) -> dict[str, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"total": total, "trainable": trainable}
