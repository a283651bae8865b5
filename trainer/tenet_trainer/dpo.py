"""`dpo`: Direct Preference Optimisation (and IPO, cDPO, length-normalised DPO, RPO, SimPO) on preference pairs.

For a pair (x, y_c, y_r) the policy π and the reference π_ref give the log-ratio margin

    h = [log π(y_c|x) - log π_ref(y_c|x)] - [log π(y_r|x) - log π_ref(y_r|x)]

(log π(y|x) is the sum of the completion's token log-probs, EOS included). The implicit reward of
a completion is β · (log π(y|x) - log π_ref(y|x)); h > 0 means the chosen one is ranked higher.

With --length-normalize each completion's log-ratio is divided by its token count |y| (EOS
included) before the difference, h = r_c/|y_c| - r_r/|y_r| with r = log π - log π_ref: the
per-token mean log-ratio. That is "length-normalized DPO" (Tulu 3, Lambert et al. 2024,
arXiv:2411.15124), the normalisation SimPO argues for (Meng et al. 2024, arXiv:2405.14734, §2:
a summed log-ratio rewards longer completions), and what TRL's IPO does (so `--loss ipo
--length-normalize` is TRL's IPO). β is then on a per-token scale (Tulu 3 used β = 5).

--loss simpo (SimPO, arXiv:2405.14734) is reference-free: h = log π(y_c|x)/|y_c| - log π(y_r|x)/|y_r|
(always length-normalised) and ℓ(h) = -log σ(β h - γ), with γ = --simpo-gamma the paper's target
reward margin, in reward units (not the γ/β ratio some of the paper's tables list: γ = ratio · β).
No reference log-probs are computed; --reference-model is refused.

Each pair carries a target probability p that y_c is the better one: 1 by default, the pair's
`soft_label` with --soft-labels, then smoothed towards ½ by --label-smoothing ε:
p' = (1 - ε)·p + ε·(1 - p). The loss is the expectation over that label of the one-sided loss:

    sigmoid (DPO):  ℓ(h) = -log σ(β h)                loss = p'·ℓ(h) + (1 - p')·ℓ(-h)
    ipo     (IPO):  ℓ(h) = (h - 1/(2β))²              loss = p'·ℓ(h) + (1 - p')·ℓ(-h)
    simpo (SimPO):  ℓ(h) = -log σ(β h - γ)            loss = p'·ℓ(h) + (1 - p')·ℓ(-h)

With p = 1 that is plain DPO / IPO / SimPO; with ε > 0 it is conservative DPO (cDPO):
(1 - ε)·(-log σ(βh)) + ε·(-log σ(-βh)). A flipped label asks for the margin γ the other way.
(Without --length-normalize IPO uses summed log-probs like DPO.)

--rpo-alpha α adds RPO's NLL term (Pang et al. 2024, "Iterative Reasoning Preference
Optimization", arXiv:2404.19733): α · NLL(y|x), NLL(y|x) = -log π(y|x)/|y|, the per-token
negative log-likelihood of the preferred completion, averaged over pairs like the rest of the loss.
With a target p' < 1 it is the same expectation over the label: p'·NLL(y_c) + (1 - p')·NLL(y_r).
It combines with every --loss (with simpo it is CPO-SimPO's extra term); with DPO/IPO it is the
paper's objective. (TRL averages the NLL over all chosen tokens of the batch instead of per pair.)

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

DEFAULT_BETA = 0.1
SIMPO_DEFAULT_BETA = 2.0
"""SimPO's β multiplies a per-token mean log-prob, so it is an order of magnitude larger (the paper: 2–10)."""
SIMPO_DEFAULT_GAMMA = 0.5


@dataclass
class Config(TrainConfig):
    beta: float | None = None
    """β: the strength of the pull towards the reference (DPO temperature; IPO target margin 1/(2β)); default 0.1, 2.0 with --loss simpo."""
    loss: Literal["sigmoid", "ipo", "simpo"] = "sigmoid"
    length_normalize: bool = False
    """Use each completion's per-token mean log-ratio instead of its sum (length-normalised DPO / IPO; SimPO always does)."""
    rpo_alpha: float = 0.0
    """α ≥ 0: add α · the per-token NLL of the chosen completion (RPO, arXiv:2404.19733); 0: off."""
    simpo_gamma: float | None = None
    """γ ≥ 0, --loss simpo only: SimPO's target reward margin (γ itself, not γ/β); default 0.5."""
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
        if self.beta is None:
            self.beta = SIMPO_DEFAULT_BETA if self.loss == "simpo" else DEFAULT_BETA
        if self.beta <= 0:
            raise UserError("--beta: must be positive")
        if not 0 <= self.label_smoothing < 0.5:
            raise UserError("--label-smoothing: must be in [0, 0.5)")
        if self.rpo_alpha < 0:
            raise UserError("--rpo-alpha: must be 0 or more")
        if self.loss == "simpo":
            if self.reference_model:
                raise UserError("--loss simpo and --reference-model: SimPO is reference-free, drop --reference-model")
            if self.simpo_gamma is None:
                self.simpo_gamma = SIMPO_DEFAULT_GAMMA
            if self.simpo_gamma < 0:
                raise UserError("--simpo-gamma: must be 0 or more")
        elif self.simpo_gamma is not None:
            raise UserError(f"--simpo-gamma with --loss {self.loss}: it is SimPO's margin, only used with --loss simpo")
        if self.full_finetune and self.adapter:
            raise UserError("--full-finetune and --adapter: pick one (a full fine-tune starts from --model)")
        if self.eval_train_rows < 0:
            raise UserError("--eval-train-rows: must be 0 or more")


@dataclass(frozen=True)
class Objective:
    """The per-pair loss, from log-probs and token counts (what `run` computes from the models)."""

    loss: str = "sigmoid"
    beta: float = DEFAULT_BETA
    length_normalize: bool = False
    rpo_alpha: float = 0.0
    simpo_gamma: float = 0.0

    @classmethod
    def from_config(cls, config: Config) -> "Objective":
        assert config.beta is not None, "Config.validate() sets beta"
        return cls(config.loss, config.beta, config.length_normalize, config.rpo_alpha, config.simpo_gamma or 0.0)

    @property
    def uses_reference(self) -> bool:
        return self.loss != "simpo"

    @property
    def normalized(self) -> bool:
        return self.length_normalize or self.loss == "simpo"

    def log_ratio(self, policy: torch.Tensor, reference: torch.Tensor | None, tokens: torch.Tensor) -> torch.Tensor:
        """A completion's log π - log π_ref (log π alone for SimPO), divided by |y| when length-normalised."""
        if self.uses_reference and reference is None:
            raise ValueError(f"--loss {self.loss} needs reference log-probs")
        ratio = policy - reference if self.uses_reference and reference is not None else policy
        return ratio / tokens if self.normalized else ratio

    def pair_loss(
        self,
        policy: tuple[torch.Tensor, torch.Tensor],
        reference: tuple[torch.Tensor, torch.Tensor] | None,
        tokens: tuple[torch.Tensor, torch.Tensor],
        target: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(per-pair loss, chosen log-ratio, rejected log-ratio, per-pair NLL term) from summed
        log-probs (chosen, rejected) under the policy and the reference, and completion token counts."""
        chosen = self.log_ratio(policy[0], reference[0] if reference else None, tokens[0])
        rejected = self.log_ratio(policy[1], reference[1] if reference else None, tokens[1])
        per_pair = preference_loss(chosen - rejected, target, self.beta, self.loss, self.simpo_gamma)
        # RPO: the per-token NLL of the preferred completion, in expectation over the label.
        nll = target * (-policy[0] / tokens[0]) + (1 - target) * (-policy[1] / tokens[1])
        if self.rpo_alpha:
            per_pair = per_pair + self.rpo_alpha * nll
        return per_pair, chosen, rejected, nll


def target_probability(soft_label: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    """p' = (1 - ε)·p + ε·(1 - p): the label p smoothed towards ½."""
    return (1 - label_smoothing) * soft_label + label_smoothing * (1 - soft_label)


def preference_loss(margin: torch.Tensor, target: torch.Tensor, beta: float, kind: str, gamma: float = 0.0) -> torch.Tensor:
    """Per-pair loss from h (the log-ratio margin) and p' (probability that chosen is better)."""
    if kind == "sigmoid":
        # DPO: -log σ(β h) if chosen is better, -log σ(-β h) if the label is flipped.
        chosen_better = -F.logsigmoid(beta * margin)
        rejected_better = -F.logsigmoid(-beta * margin)
    elif kind == "ipo":
        # IPO: regress h onto the target margin 1/(2β); a flipped label targets -1/(2β).
        chosen_better = (margin - 1 / (2 * beta)) ** 2
        rejected_better = (margin + 1 / (2 * beta)) ** 2
    elif kind == "simpo":
        # SimPO: -log σ(β h - γ); a flipped label asks for the margin γ the other way.
        chosen_better = -F.logsigmoid(beta * margin - gamma)
        rejected_better = -F.logsigmoid(-beta * margin - gamma)
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
    objective = Objective.from_config(config)
    pairs: list[PreferencePair] = read_jsonl(config.data, parse_preference)
    tokenizer = load_tokenizer(config.model)
    model = with_lora(load_causal_lm(config.model, device, dtype), config, TaskType.CAUSAL_LM)
    lp.disable_dropout(model)
    pad_id = int(tokenizer.pad_token_id)

    # Row i's chosen sequence is sequences[2i], its rejected one sequences[2i + 1].
    sequences = [s for pair in pairs for s in (lp.encode(tokenizer, pair.prompt, pair.chosen, config.max_length), lp.encode(tokenizer, pair.prompt, pair.rejected, config.max_length))]
    tokens = torch.tensor([float(max(1, s.completion_tokens)) for s in sequences])  # |y|, EOS included
    reference = None
    if objective.uses_reference:  # SimPO: no reference pass at all
        reference = torch.tensor([float(r.sum()) for r in lp.reference_logprobs(model, config.reference_model, sequences, pad_id, device, dtype, config.batch_size)])
    labels = torch.tensor([pair.soft_label if config.soft_labels else 1.0 for pair in pairs])
    train_rows, eval_rows = split_items(len(pairs), config.eval_fraction, config.seed)

    def forward(rows: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """(log π of each row's chosen, of its rejected completion), one forward pass."""
        batch = lp.collate([sequences[2 * i + k] for k in (0, 1) for i in rows], pad_id, device)
        policy = lp.sequence_logprobs(model, batch)
        return policy[: len(rows)], policy[len(rows) :]

    def pieces(rows: list[int]) -> tuple[tuple[torch.Tensor, torch.Tensor] | None, tuple[torch.Tensor, torch.Tensor], torch.Tensor]:
        """(reference log-probs, token counts, targets) of the rows' chosen and rejected completions, on the device."""
        chosen_index, rejected_index = [2 * i for i in rows], [2 * i + 1 for i in rows]
        ref = None if reference is None else (reference[chosen_index].to(device), reference[rejected_index].to(device))
        return ref, (tokens[chosen_index].to(device), tokens[rejected_index].to(device)), target_probability(labels[rows].to(device), config.label_smoothing)

    def metrics_of(chosen: torch.Tensor, rejected: torch.Tensor, nll: torch.Tensor) -> dict[str, float]:
        metrics = reward_metrics(chosen, rejected, objective.beta)
        if objective.rpo_alpha:
            metrics["nll"] = float(nll.detach().mean())
        return metrics

    def loss(rows: list[int]) -> tuple[torch.Tensor, dict[str, float]]:
        ref, counts, target = pieces(rows)
        per_pair, chosen, rejected, nll = objective.pair_loss(forward(rows), ref, counts, target)
        return per_pair.mean(), metrics_of(chosen, rejected, nll)

    def score(rows: list[int], prefix: str) -> dict[str, float]:
        """Mean loss and implicit-reward metrics over `rows`, in batches."""
        parts = [forward(rows[start : start + config.batch_size]) for start in range(0, len(rows), config.batch_size)]
        policy = (torch.cat([c for c, _ in parts]), torch.cat([r for _, r in parts]))
        ref, counts, target = pieces(rows)
        per_pair, chosen, rejected, nll = objective.pair_loss(policy, ref, counts, target)
        metrics = {"loss": float(per_pair.mean()), **metrics_of(chosen, rejected, nll)}
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

    hyperparameters: dict[str, Any] = {
        "loss": config.loss,
        "beta": config.beta,
        "length_normalize": objective.normalized,
        "rpo_alpha": config.rpo_alpha,
        "label_smoothing": config.label_smoothing,
        "soft_labels": config.soft_labels,
        "reference": "none (SimPO is reference-free)" if not objective.uses_reference else config.reference_model or "base (adapters disabled)",
        "pairs": len(pairs),
        "eval_pairs": len(eval_rows),
        "parameters": count_parameters(model),
    }
    if config.loss == "simpo":
        hyperparameters["simpo_gamma"] = config.simpo_gamma
    return run_loop(Job(config=config, model=model, train_items=train_rows, loss=loss, save_artifact=lp.save_policy(model, tokenizer), evaluate=evaluate, hyperparameters=hyperparameters, kind="dpo"))


__all__ = ["Config", "Objective", "run", "preference_loss", "target_probability", "reward_metrics"]
