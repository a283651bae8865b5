"""`dpo`: Direct Preference Optimisation (and IPO, cDPO) on preference pairs.

For a pair (x, y_c, y_r) the policy π and the reference π_ref give the log-ratio margin

    h = [log π(y_c|x) - log π_ref(y_c|x)] - [log π(y_r|x) - log π_ref(y_r|x)]

(log π(y|x) is the sum of the completion's token log-probs, EOS included). The implicit reward of
a completion is β · (log π(y|x) - log π_ref(y|x)); h > 0 means the chosen one is ranked higher.

Each pair carries a target probability p that y_c is the better one: 1 by default, the pair's
`soft_label` with --soft-labels, then smoothed towards ½ by --label-smoothing ε:
p' = (1 - ε)·p + ε·(1 - p). The loss is the expectation over that label of the one-sided loss:

    sigmoid (DPO):  ℓ(h) = -log σ(β h)                loss = p'·ℓ(h) + (1 - p')·ℓ(-h)
    ipo     (IPO):  ℓ(h) = (h - 1/(2β))²              loss = p'·ℓ(h) + (1 - p')·ℓ(-h)

With p = 1 that is plain DPO / IPO; with ε > 0 it is conservative DPO (cDPO):
(1 - ε)·(-log σ(βh)) + ε·(-log σ(-βh)). (IPO here uses summed log-probs like DPO; TRL averages
them per token for IPO, so its β values are not interchangeable with ours.)

The reference is the base model: the policy with its adapters disabled (also when starting from
--adapter, the previous iteration's policy), or --reference-model. Its log-probs are computed once
before the first step, so no second copy of the weights is kept; with --full-finetune that pass
runs on the model before it is trained, which is why no frozen copy is needed there either.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from peft import TaskType

from tenet_trainer import logprobs as lp
from tenet_trainer.common import UserError, pick_device, pick_dtype, read_jsonl, seed_everything
from tenet_trainer.config import TrainConfig, check_train_config
from tenet_trainer.data import PreferencePair, parse_preference
from tenet_trainer.loop import Job, run as run_loop, split_items
from tenet_trainer.models import count_parameters, load_causal_lm, load_tokenizer, with_lora


@dataclass
class Config(TrainConfig):
    beta: float = 0.1
    """β: the strength of the pull towards the reference (DPO temperature; IPO target margin 1/(2β))."""
    loss: Literal["sigmoid", "ipo"] = "sigmoid"
    label_smoothing: float = 0.0
    """ε in [0, 0.5): the share of labels assumed flipped (conservative DPO)."""
    soft_labels: bool = False
    """Use each pair's soft_label as the probability that `chosen` is better."""
    reference_model: str | None = None
    """A model folder to use as the reference instead of the base (e.g. the SFT model when --model is a later full fine-tune)."""
    eval_train_rows: int = 1024
    """Training pairs scored by the final evaluation (a seeded sample; 0: all)."""

    def validate(self) -> None:
        check_train_config(self)
        if self.beta <= 0:
            raise UserError("--beta: must be positive")
        if not 0 <= self.label_smoothing < 0.5:
            raise UserError("--label-smoothing: must be in [0, 0.5)")
        if self.full_finetune and self.adapter:
            raise UserError("--full-finetune and --adapter: pick one (a full fine-tune starts from --model)")
        if self.eval_train_rows < 0:
            raise UserError("--eval-train-rows: must be 0 or more")


def target_probability(soft_label: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    """p' = (1 - ε)·p + ε·(1 - p): the label p smoothed towards ½."""
    return (1 - label_smoothing) * soft_label + label_smoothing * (1 - soft_label)


def preference_loss(margin: torch.Tensor, target: torch.Tensor, beta: float, kind: str) -> torch.Tensor:
    """Per-pair loss from h (the log-ratio margin) and p' (probability that chosen is better)."""
    if kind == "sigmoid":
        # DPO: -log σ(β h) if chosen is better, -log σ(-β h) if the label is flipped.
        chosen_better = -F.logsigmoid(beta * margin)
        rejected_better = -F.logsigmoid(-beta * margin)
    elif kind == "ipo":
        # IPO: regress h onto the target margin 1/(2β); a flipped label targets -1/(2β).
        chosen_better = (margin - 1 / (2 * beta)) ** 2
        rejected_better = (margin + 1 / (2 * beta)) ** 2
    else:
        raise ValueError(kind)
    return target * chosen_better + (1 - target) * rejected_better


def reward_metrics(chosen_ratio: torch.Tensor, rejected_ratio: torch.Tensor, beta: float) -> dict[str, float]:
    """Implicit rewards β·(log π - log π_ref) of chosen and rejected, their margin and ranking accuracy."""
    chosen = beta * chosen_ratio.detach()
    rejected = beta * rejected_ratio.detach()
    return {
        "accuracy": float((chosen > rejected).float().mean()),
        "margin": float((chosen - rejected).mean()),
        "chosen_reward": float(chosen.mean()),
        "rejected_reward": float(rejected.mean()),
    }


def run(config: Config) -> dict[str, Any]:
    seed_everything(config.seed)
    device = pick_device(config.device)
    dtype = pick_dtype(device, config.dtype)
    pairs: list[PreferencePair] = read_jsonl(config.data, parse_preference)
    tokenizer = load_tokenizer(config.model)
    model = with_lora(load_causal_lm(config.model, device, dtype), config, TaskType.CAUSAL_LM)
    lp.disable_dropout(model)
    pad_id = int(tokenizer.pad_token_id)

    # Row i's chosen sequence is sequences[2i], its rejected one sequences[2i + 1].
    sequences = [s for pair in pairs for s in (lp.encode(tokenizer, pair.prompt, pair.chosen, config.max_length), lp.encode(tokenizer, pair.prompt, pair.rejected, config.max_length))]
    reference = torch.tensor([float(r.sum()) for r in lp.reference_logprobs(model, config.reference_model, sequences, pad_id, device, dtype, config.batch_size)])
    labels = torch.tensor([pair.soft_label if config.soft_labels else 1.0 for pair in pairs])
    train_rows, eval_rows = split_items(len(pairs), config.eval_fraction, config.seed)

    def log_ratios(rows: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """log π - log π_ref of each row's chosen and rejected completion (one forward pass)."""
        batch = lp.collate([sequences[2 * i + k] for k in (0, 1) for i in rows], pad_id, device)
        policy = lp.sequence_logprobs(model, batch)
        ratio = policy - reference[[2 * i + k for k in (0, 1) for i in rows]].to(device)
        return ratio[: len(rows)], ratio[len(rows) :]

    def loss(rows: list[int]) -> tuple[torch.Tensor, dict[str, float]]:
        chosen, rejected = log_ratios(rows)
        target = target_probability(labels[rows].to(device), config.label_smoothing)
        per_pair = preference_loss(chosen - rejected, target, config.beta, config.loss)
        return per_pair.mean(), reward_metrics(chosen, rejected, config.beta)

    def score(rows: list[int], prefix: str) -> dict[str, float]:
        """Mean loss and implicit-reward metrics over `rows`, in batches."""
        parts: list[tuple[torch.Tensor, torch.Tensor]] = []
        for start in range(0, len(rows), config.batch_size):
            parts.append(log_ratios(rows[start : start + config.batch_size]))
        chosen = torch.cat([c for c, _ in parts])
        rejected = torch.cat([r for _, r in parts])
        target = target_probability(labels[rows].to(device), config.label_smoothing)
        metrics = {"loss": float(preference_loss(chosen - rejected, target, config.beta, config.loss).mean()), **reward_metrics(chosen, rejected, config.beta)}
        return {f"{prefix}_{k}": v for k, v in metrics.items()} | {f"{prefix}_pairs": float(len(rows))}

    def evaluate() -> dict[str, float]:
        sample = train_rows
        if config.eval_train_rows and len(train_rows) > config.eval_train_rows:
            order = torch.randperm(len(train_rows), generator=torch.Generator().manual_seed(config.seed + 1))
            sample = sorted(train_rows[i] for i in order[: config.eval_train_rows].tolist())
        metrics = score(sample, "train")
        if eval_rows:
            metrics |= score(eval_rows, "eval")
        return metrics

    hyperparameters = {
        "loss": config.loss,
        "beta": config.beta,
        "label_smoothing": config.label_smoothing,
        "soft_labels": config.soft_labels,
        "reference": config.reference_model or "base (adapters disabled)",
        "pairs": len(pairs),
        "eval_pairs": len(eval_rows),
        "parameters": count_parameters(model),
    }
    return run_loop(Job(config=config, model=model, train_items=train_rows, loss=loss, save_artifact=lp.save_policy(model, tokenizer), evaluate=evaluate, hyperparameters=hyperparameters, kind="dpo"))


__all__ = ["Config", "run", "preference_loss", "target_probability", "reward_metrics"]
