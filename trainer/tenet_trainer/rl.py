"""`rl`: ONE online policy update (GRPO / RLOO, with the DAPO, Dr. GRPO and GSPO variants) from scored
rollouts, KL-regularised to the reference.

The caller samples K completions per prompt from the current policy, scores them, writes them as
rollouts (data.parse_rollout) and runs this command; it writes the next policy's adapter. Per update:

1. Reward shaping, before advantages (|y| = the completion's tokens as trained, EOS included):
     r' = r - length_penalty · |y| / max_length            (a completion as long as --max-length costs length_penalty)
          + overlong(|y|)                                   (--overlong-penalty L_cache with --max-completion-tokens L_max)
     overlong(|y|) = 0                          if |y| <= L_max - L_cache
                     (L_max - L_cache - |y|) / L_cache   if L_max - L_cache < |y| <= L_max
                     -1                         if |y| > L_max
   DAPO's soft overlong punishment (arXiv:2503.14476, eq. 13). A completion the sampler cut at its
   budget has L_max text tokens plus the EOS the trainer appends, so it lands in the -1 branch.
2. --dynamic-sampling (DAPO): groups whose shaped rewards are all equal (every advantage in them is 0,
   so they carry no policy-gradient signal) are dropped before any forward pass; the metrics
   groups_dropped / rollouts_dropped say how many. The trainer cannot sample: refilling the batch
   with fresh groups until it is full is the caller's job (the loop's sampler). Every group dropped
   is an error.
3. Group-relative advantages over the rollouts of a group (default group: the prompt):
     grpo:  A_i = (r'_i - mean_g) / (std_g + 1e-4)       (--std population, the default: 1/K Σ (r - mean)²;
                                                          --std sample: 1/(K-1) Σ; --no-std-scaling skips it)
     rloo:  A_i = r'_i - mean_{j≠i} r'_j                 (leave-one-out baseline)
   A group with one rollout has no baseline: its advantage is 0.
4. Old log-probs (the policy at the start of the update) and reference log-probs (the base with
   adapters disabled, or --reference-model) are computed once, before the first step.
5. --ppo-epochs passes over the rollouts in minibatches of --batch-size (× --grad-accum), each token
   of a completion y_i contributing

     ℓ_t = -w_t · min(ρ A_i, clip(ρ, 1 - ε_low, 1 + ε_high) A_i) + kl_coef · KL_t
     KL_t (k1) = log π(y_t) - log π_ref(y_t)
     KL_t (k3) = exp(log π_ref(y_t) - log π(y_t)) - (log π_ref(y_t) - log π(y_t)) - 1     (≥ 0)

   ε_low = --clip-eps, ε_high = --clip-high (DAPO's clip-higher; default ε_low). The ratio ρ is
     --importance-level token (PPO/GRPO):  ρ_t = π(y_t) / π_old(y_t)
     --importance-level sequence (GSPO, arXiv:2507.18071):
                                            ρ = s_i = exp((1/|y_i|) Σ_t (log π(y_t) - log π_old(y_t))),
                                            one ratio per completion, clipped per completion and the
                                            same term on all its tokens (GSPO's ε is ~1e-3, not 0.2)
   w_t = 1, or with --tis-cap C the truncated importance weight of the serving engine's sampling
   (Yao et al. 2025, "Your efficient RL framework secretly brings you off-policy RL training"):
     w_t = min(exp(log π_old(y_t) - log π_server(y_t)), C)
   from the rollout's sampled_logprobs (a constant: no gradient flows through it). It weights the
   policy term only; the KL penalty is about π and π_ref, not about who sampled. Server log-probs are
   matched to the trainer's completion tokens: position by position when sampled_token_ids equal the
   trainer's encoding (or, without ids, when the counts are equal); a final EOS the trainer appends
   and the server did not report gets w = 1; any other mismatch gives the whole rollout w = 1 and is
   counted in tis_unaligned.

   --loss-agg turns the token losses into the minimised loss (micro-batch B, completion lengths |y_i|):
     token (default):  1/B Σ_i (1/|y_i|) Σ_t ℓ_t       per-completion mean (GRPO as published)
     sequence:         1/B Σ_i Σ_t ℓ_t                  per-completion sum
     batch-token:      Σ_i Σ_t ℓ_t / N                  DAPO's token-level loss; N = the completion tokens
                                                        of the whole optimizer step (all --grad-accum
                                                        micro-batches, so accumulating gives the loss of
                                                        one big batch), not of each micro-batch
     constant:         1/B Σ_i Σ_t ℓ_t / C              Dr. GRPO (arXiv:2503.20783): C = --loss-agg-constant,
                                                        default --max-completion-tokens if given, else
                                                        --max-length. Dr. GRPO = --advantage grpo
                                                        --no-std-scaling --loss-agg constant.
   (--length-norm token|sequence is the deprecated name of --loss-agg token|sequence.)
   k1 in the loss has zero expected gradient when the tokens come from π itself, so it barely
   restrains the policy; k3, GRPO's choice, is the default.
6. --kl-bound: after each PPO epoch the mean KL per completion token (the --kl-estimator's) to
   the reference is measured over all rollouts; above the bound, that epoch's steps are undone and
   the update stops there (early_stopped). A chained adapter can start above the bound on fresh
   rollouts (the KL is measured on this update's samples, not the last one's): then an epoch is
   undone only when it ends above both the bound and the KL it started from, so such an update
   may pull the policy back but never pushes it further out. The published policy's measured KL
   is therefore at most max(bound, the starting policy's). After a resume mid-epoch, "undone" goes
   back to the resume point.

Metrics: mean reward (and its components), mean KL (k1, k3) before and after, mean completion
length, clip fraction (share of tokens whose clipped term was active), early_stopped, steps; with
--overlong-penalty overlong_fraction (share of completions it lowered); with --dynamic-sampling
groups_dropped and rollouts_dropped; when rollouts carry sampled_logprobs logprob_mismatch (mean
|log π_server - log π_old| over matched tokens), tis_unaligned (rollouts not matched), and with
--tis-cap tis_clipped_fraction (share of matched tokens whose weight hit C) and tis_weight_mean.
After --dynamic-sampling, the KL, clip and length metrics are over the rollouts trained on; the
reward means are over every rollout read.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from peft import TaskType

from tenet_trainer import distributed, logprobs as lp
from tenet_trainer.common import UserError, emit, finite, pick_device, pick_dtype, read_jsonl, seed_everything
from tenet_trainer.config import TrainConfig, check_train_config
from tenet_trainer.data import Rollout, parse_rollout
from tenet_trainer.loop import BatchSchedule, Job, newest_checkpoint, run as run_loop, total_steps
from tenet_trainer.models import count_parameters, load_causal_lm, load_tokenizer, trainable_parameters, with_lora

STD_EPS = 1e-4
"""Added to a group's reward std before dividing (GRPO), so equal rewards give 0, not NaN."""

LossAgg = Literal["token", "sequence", "batch-token", "constant"]


@dataclass
class Config(TrainConfig):
    advantage: Literal["grpo", "rloo"] = "grpo"
    std_scaling: bool = True
    """GRPO: divide by the group's reward std (--no-std-scaling keeps only the mean baseline, as Dr. GRPO)."""
    std: Literal["population", "sample"] = "population"
    """The group std GRPO divides by: population (1/K, the default) or sample (1/(K-1))."""
    clip_eps: float = 0.2
    """PPO ratio clipping, lower side: ρ is clipped to [1 - ε_low, 1 + ε_high] with ε_low = this."""
    clip_high: float | None = None
    """ε_high, the upper side (DAPO's clip-higher, e.g. 0.28 with --clip-eps 0.2); default --clip-eps."""
    importance_level: Literal["token", "sequence"] = "token"
    """token: one ratio per token (PPO/GRPO); sequence: GSPO's length-normalised ratio per completion."""
    ppo_epochs: int = 1
    """Passes over the rollouts (the old log-probs stay those of the policy at the start)."""
    kl_coef: float = 0.05
    """Weight of the per-token KL to the reference in the loss (0: no penalty)."""
    kl_estimator: Literal["k1", "k3"] = "k3"
    loss_agg: LossAgg | None = None
    """token (default): each completion's mean token loss; sequence: its sum; batch-token (DAPO): the
    sum over the optimizer step's tokens / their count; constant (Dr. GRPO): each sum / --loss-agg-constant."""
    loss_agg_constant: int | None = None
    """Dr. GRPO's constant normaliser (the generation budget); default --max-completion-tokens, else --max-length."""
    length_norm: Literal["token", "sequence"] | None = None
    """Deprecated: the old name of --loss-agg token|sequence."""
    length_penalty: float = 0.0
    """Subtracted from each reward, times completion tokens / max_length, before advantages."""
    overlong_penalty: int | None = None
    """DAPO's soft overlong punishment: L_cache, the last tokens before --max-completion-tokens in which
    the reward falls linearly to -1 (and -1 beyond)."""
    max_completion_tokens: int | None = None
    """L_max: the sampler's generation budget in tokens (what it passed as max_tokens)."""
    dynamic_sampling: bool = False
    """DAPO: drop groups whose rewards are all equal (no signal); refilling is the sampler's job."""
    tis_cap: float | None = None
    """Truncated importance sampling: weight each token's policy term by min(π_old / π_server, C),
    from the rollouts' sampled_logprobs."""
    kl_bound: float | None = None
    """Stop early (undoing the last epoch) when the mean per-token KL to the reference after an epoch exceeds it."""
    reference_model: str | None = None
    """A model folder to use as the reference instead of the base with adapters disabled."""

    def validate(self) -> None:
        check_train_config(self)
        if self.clip_eps <= 0:
            raise UserError("--clip-eps: must be positive")
        if self.clip_high is not None and self.clip_high < self.clip_eps:
            raise UserError(f"--clip-high {self.clip_high} is below --clip-eps {self.clip_eps}: clip-higher widens the upper bound (ε_high >= ε_low)")
        if self.ppo_epochs < 1:
            raise UserError("--ppo-epochs: must be at least 1")
        if self.kl_coef < 0:
            raise UserError("--kl-coef: must be 0 or more")
        if self.length_penalty < 0:
            raise UserError("--length-penalty: must be 0 or more")
        if self.kl_bound is not None and self.kl_bound <= 0:
            raise UserError("--kl-bound: must be positive")
        if self.epochs != 1.0:
            raise UserError("--epochs: not used by rl; set --ppo-epochs")
        if self.eval_fraction:
            raise UserError("--eval-fraction: not used by rl (it trains on every rollout once per PPO epoch)")
        if self.full_finetune and self.adapter:
            raise UserError("--full-finetune and --adapter: pick one (a full fine-tune starts from --model)")
        if self.length_norm is not None:
            if self.loss_agg is not None and self.loss_agg != self.length_norm:
                raise UserError(f"--length-norm {self.length_norm} and --loss-agg {self.loss_agg}: --length-norm is the deprecated name of --loss-agg; give --loss-agg only")
            self.loss_agg = self.length_norm
        if self.loss_agg_constant is not None:
            if self.loss_agg_constant < 1:
                raise UserError("--loss-agg-constant: must be at least 1")
            if self.aggregation != "constant":
                raise UserError(f"--loss-agg-constant: only used with --loss-agg constant (got --loss-agg {self.aggregation})")
        if self.max_completion_tokens is not None and self.max_completion_tokens < 1:
            raise UserError("--max-completion-tokens: must be at least 1")
        if self.overlong_penalty is not None:
            if self.overlong_penalty < 1:
                raise UserError("--overlong-penalty: must be at least 1 (L_cache, in tokens)")
            if self.max_completion_tokens is None:
                raise UserError("--overlong-penalty: needs --max-completion-tokens (L_max, the sampler's generation budget)")
            if self.overlong_penalty >= self.max_completion_tokens:
                raise UserError(f"--overlong-penalty {self.overlong_penalty}: must be below --max-completion-tokens {self.max_completion_tokens} (L_cache < L_max)")
        if self.std == "sample" and (self.advantage != "grpo" or not self.std_scaling):
            raise UserError("--std sample: only used by --advantage grpo with std scaling (it conflicts with " + ("--advantage rloo)" if self.advantage != "grpo" else "--no-std-scaling)"))
        if self.tis_cap is not None:
            if not (self.tis_cap > 0 and math.isfinite(self.tis_cap)):
                raise UserError("--tis-cap: must be a positive number (C, e.g. 2)")
            if self.importance_level == "sequence":
                raise UserError("--importance-level sequence with --tis-cap: contradictory (GSPO's ratio is per completion, the TIS weight per token); drop one")

    @property
    def aggregation(self) -> str:
        """--loss-agg, or its deprecated name --length-norm, or token."""
        return self.loss_agg or self.length_norm or "token"

    @property
    def eps_high(self) -> float:
        return self.clip_eps if self.clip_high is None else self.clip_high

    @property
    def agg_constant(self) -> int:
        """Dr. GRPO's normaliser: --loss-agg-constant, else --max-completion-tokens, else --max-length."""
        return self.loss_agg_constant or self.max_completion_tokens or self.max_length


@dataclass
class Progress:
    """How far the update got: for its final metrics, and for undoing an epoch that broke --kl-bound."""

    early_stopped: bool = False
    """An epoch ended above --kl-bound and was undone."""
    stopped_at_epoch: int | None = None
    epochs_done: int = 0
    steps_kept: int = 0
    clip_fractions: list[float] = field(default_factory=list)
    kl_now: dict[str, float] | None = None
    """The measured KL of the current weights, when known."""
    kl_kept: dict[str, float] = field(default_factory=dict)
    """The measured KL where the current epoch started (the last kept epoch's end, or the start)."""
    saved: dict[str, torch.Tensor] | None = None
    """Trainable weights at the last kept epoch's end (at first: where this process started training)."""
    saved_step: int | None = None


def overlong_penalty(completion_tokens: torch.Tensor, max_completion_tokens: int, cache: int) -> torch.Tensor:
    """DAPO's soft overlong punishment: 0 up to L_max - L_cache, then linear to -1 at L_max, -1 beyond."""
    over = completion_tokens.float() - (max_completion_tokens - cache)
    return -(over.clamp(min=0) / cache).clamp(max=1)


def shaped_rewards(
    rewards: torch.Tensor,
    completion_tokens: torch.Tensor,
    length_penalty: float,
    max_length: int,
    overlong_cache: int | None = None,
    max_completion_tokens: int | None = None,
) -> torch.Tensor:
    """r' = r - length_penalty · tokens / max_length (+ the overlong penalty when L_cache and L_max are given)."""
    shaped = rewards - length_penalty * completion_tokens.float() / max_length
    if overlong_cache is not None and max_completion_tokens is not None:
        shaped = shaped + overlong_penalty(completion_tokens, max_completion_tokens, overlong_cache)
    return shaped


def _members(groups: list[str]) -> dict[str, list[int]]:
    members: dict[str, list[int]] = {}
    for index, group in enumerate(groups):
        members.setdefault(group, []).append(index)
    return members


def group_advantages(rewards: torch.Tensor, groups: list[str], method: str, std_scaling: bool = True, std: str = "population") -> torch.Tensor:
    """Each rollout's reward against its group's: GRPO (mean, optionally / std) or RLOO (leave-one-out mean)."""
    advantages = torch.zeros_like(rewards, dtype=torch.float32)
    for index in _members(groups).values():
        r = rewards[index].float()
        k = len(index)
        if k == 1:
            continue  # no baseline: no signal
        if method == "grpo":
            a = r - r.mean()
            if std_scaling:
                a = a / (r.std(unbiased=std == "sample") + STD_EPS)
        elif method == "rloo":
            a = r - (r.sum() - r) / (k - 1)
        else:
            raise ValueError(method)
        advantages[index] = a
    return advantages


def informative_rollouts(rewards: torch.Tensor, groups: list[str]) -> tuple[list[int], int]:
    """DAPO's dynamic sampling filter: the rollouts of groups whose rewards are not all equal, and the
    number of groups dropped (a group of one is dropped too: it has no baseline)."""
    kept: list[int] = []
    dropped = 0
    for index in _members(groups).values():
        r = rewards[index]
        if bool(r.max() > r.min()):
            kept += index
        else:
            dropped += 1
    return sorted(kept), dropped


def kl_per_token(logp: torch.Tensor, ref_logp: torch.Tensor, estimator: str) -> torch.Tensor:
    """Estimates of KL(π ‖ π_ref) from tokens sampled by the policy: k1 = log π - log π_ref,
    k3 = exp(log π_ref - log π) - (log π_ref - log π) - 1 (unbiased, never negative)."""
    if estimator == "k1":
        return logp - ref_logp
    if estimator == "k3":
        log_ratio = ref_logp - logp
        return torch.exp(log_ratio) - log_ratio - 1
    raise ValueError(estimator)


def clipped_objective(ratio: torch.Tensor, advantages: torch.Tensor, eps_low: float, eps_high: float) -> tuple[torch.Tensor, torch.Tensor]:
    """-min(ρA, clip(ρ, 1-ε_low, 1+ε_high)A), and where the clipped term was the active one."""
    unclipped = ratio * advantages
    clipped = ratio.clamp(1 - eps_low, 1 + eps_high) * advantages
    was_clipped = ((ratio > 1 + eps_high) & (advantages > 0)) | ((ratio < 1 - eps_low) & (advantages < 0))
    return -torch.minimum(unclipped, clipped), was_clipped


def ppo_token_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, clip_eps: float, clip_high: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per token, ρ_t = π/π_old: -min(ρA, clip(ρ, 1-ε, 1+ε_high)A) (ε_high defaults to ε), and where
    the clipped term was the active one."""
    return clipped_objective(torch.exp(logp - old_logp), advantages, clip_eps, clip_eps if clip_high is None else clip_high)


def sequence_ratio(logp: torch.Tensor, old_logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """GSPO's s_i = exp((1/|y_i|) Σ_t (log π(y_t) - log π_old(y_t))), (B,)."""
    log_ratio = ((logp - old_logp) * mask).sum(-1) / mask.sum(-1).clamp(min=1)
    return torch.exp(log_ratio)


def gspo_token_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, eps_low: float, eps_high: float) -> tuple[torch.Tensor, torch.Tensor]:
    """GSPO: each completion's clipped objective with its sequence ratio s_i (advantages: (B,)),
    repeated on every token of the completion, (B, T); and whether it was clipped, per token."""
    loss, was_clipped = clipped_objective(sequence_ratio(logp, old_logp, mask), advantages, eps_low, eps_high)
    return loss.unsqueeze(-1).expand_as(logp), was_clipped.unsqueeze(-1).expand_as(mask)


def reduce_tokens(per_token: torch.Tensor, mask: torch.Tensor, length_norm: str) -> torch.Tensor:
    """Per-sequence loss: the mean (token) or the sum (sequence) of its completion tokens' losses."""
    total = (per_token * mask).sum(-1)
    if length_norm == "token":
        return total / mask.sum(-1).clamp(min=1)
    return total


def aggregate_loss(per_token: torch.Tensor, mask: torch.Tensor, mode: str, normaliser: float | None = None) -> torch.Tensor:
    """The loss of a micro-batch (--loss-agg): token and sequence average reduce_tokens over the rows;
    batch-token divides the sum of every token loss by `normaliser` (default: this batch's tokens);
    constant averages each row's sum / `normaliser` (Dr. GRPO's C) over the rows."""
    if mode in ("token", "sequence"):
        return reduce_tokens(per_token, mask, mode).mean()
    if mode == "batch-token":
        return (per_token * mask).sum() / (normaliser if normaliser is not None else mask.sum().clamp(min=1))
    if mode == "constant":
        if normaliser is None:
            raise ValueError("constant aggregation needs its normaliser")
        return ((per_token * mask).sum(-1) / normaliser).mean()
    raise ValueError(mode)


class StepTokens:
    """Completion tokens of the global micro-batch and of the optimizer step that `loss` is handed a
    part of (--loss-agg batch-token).

    The loop hands `loss` one micro-batch at a time (under torchrun, this process's slice of it), but
    DAPO's normaliser is the tokens of the whole step. The loop's batches are a function of (seed,
    micro-batch index), so this replays the same schedule from the step the loop starts at and checks
    every micro-batch against it."""

    def __init__(self, schedule: BatchSchedule, grad_accum: int, tokens: list[int], first_step: int) -> None:
        self.schedule, self.grad_accum, self.tokens = schedule, grad_accum, tokens
        self.next = first_step * grad_accum

    def __call__(self, rows: list[int]) -> tuple[int, int]:
        index, self.next = self.next, self.next + 1
        micro = self.schedule.micro_batch(index)
        if distributed.rank_slice(micro) != rows:
            raise RuntimeError(f"batch-token: micro-batch {index} is not the one the loop's schedule gives; the step's token count would be wrong")
        first = index - index % self.grad_accum
        step = sum(self.tokens[r] for m in range(first, first + self.grad_accum) for r in self.schedule.micro_batch(m))
        return sum(self.tokens[r] for r in micro), step


def starting_step(config: TrainConfig) -> int:
    """The step the loop will start at: that of --resume-from, else of the newest checkpoint, else 0."""
    path = Path(config.resume_from) if config.resume_from else newest_checkpoint(Path(config.output))
    if path is None or not (path / "state.json").is_file():
        return 0  # a bad --resume-from is the loop's error to report
    return int(json.loads((path / "state.json").read_text())["step"])


def align_server_logprobs(trainer_ids: list[int], eos_id: int | None, logprobs: tuple[float, ...], token_ids: tuple[int, ...] | None) -> torch.Tensor | None:
    """The server's log-prob of each of the trainer's completion tokens, NaN for a final EOS the
    trainer appended and the server did not report; None when the two do not line up.

    With token ids, they must equal the trainer's (or its tokens but the final EOS); without, only
    the counts can be compared."""
    n = len(trainer_ids)
    served = torch.tensor(logprobs, dtype=torch.float32)
    extra_eos = n == len(logprobs) + 1 and eos_id is not None and trainer_ids[-1] == eos_id
    if token_ids is not None:
        if list(token_ids) == trainer_ids:
            return served
        if extra_eos and list(token_ids) == trainer_ids[:-1]:
            return torch.cat([served, torch.tensor([math.nan])])
        return None
    if len(logprobs) == n:
        return served
    if extra_eos:
        return torch.cat([served, torch.tensor([math.nan])])
    return None


def tis_weights(old_logp: torch.Tensor, server_logp: torch.Tensor, cap: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Truncated importance weights min(π_old / π_server, C) = min(exp(log π_old - log π_server), C),
    and where the cap applied."""
    raw = torch.exp(old_logp - server_logp)
    return raw.clamp(max=cap), raw > cap


@dataclass
class ServerCorrection:
    """What the rollouts' sampled_logprobs give: per-rollout TIS weights (with --tis-cap) and the metrics."""

    weights: list[torch.Tensor] | None
    metrics: dict[str, Any]


def server_correction(rollouts: list[Rollout], sequences: list[lp.Sequence], old: list[torch.Tensor], eos_id: int | None, cap: float | None) -> ServerCorrection:
    """Match each rollout's server log-probs to the trainer's tokens, measure the mismatch to π_old,
    and (with a cap) weigh each matched token by min(π_old / π_server, C); everything else weighs 1."""
    if not any(r.sampled_logprobs is not None for r in rollouts):
        return ServerCorrection(None, {})
    weights: list[torch.Tensor] = []
    gaps: list[torch.Tensor] = []
    clipped = matched = unaligned = missing = 0
    for rollout, sequence, old_row in zip(rollouts, sequences, old):
        weight = torch.ones_like(old_row)
        if rollout.sampled_logprobs is None:
            missing += 1
        else:
            served = align_server_logprobs(sequence.ids[sequence.completion_start :], eos_id, rollout.sampled_logprobs, rollout.sampled_token_ids)
            if served is None:
                unaligned += 1
            else:
                known = ~torch.isnan(served)
                gaps.append((served[known] - old_row[known]).abs())
                matched += int(known.sum())
                if cap is not None:
                    w, hit = tis_weights(old_row[known], served[known], cap)
                    weight[known] = w
                    clipped += int(hit.sum())
        weights.append(weight)
    metrics: dict[str, Any] = {
        "logprob_mismatch": finite(float(torch.cat(gaps).mean())) if matched else None,
        "tis_unaligned": unaligned,
    }
    if missing:
        metrics["rollouts_without_logprobs"] = missing
    if cap is None:
        return ServerCorrection(None, metrics)
    metrics["tis_clipped_fraction"] = clipped / matched if matched else 0.0
    metrics["tis_weight_mean"] = float(torch.cat(weights).mean())
    return ServerCorrection(weights, metrics)


def mean_kl(policy: list[torch.Tensor], reference: list[torch.Tensor]) -> dict[str, float]:
    """Mean per completion token (over all rollouts) of the k1 and k3 estimates."""
    logp, ref = torch.cat(policy), torch.cat(reference)
    return {"kl_k1": float(kl_per_token(logp, ref, "k1").mean()), "kl_k3": float(kl_per_token(logp, ref, "k3").mean())}


def run(config: Config) -> dict[str, Any]:
    config.validate()
    seed_everything(config.seed)
    device = pick_device(config.device)
    dtype = pick_dtype(device, config.dtype)
    read: list[Rollout] = read_jsonl(config.data, parse_rollout)
    read_groups = [r.group for r in read]
    if len(set(read_groups)) == len(read_groups):
        flag = "--dynamic-sampling: " if config.dynamic_sampling else ""
        raise UserError(f"{flag}{config.data}: every group has one rollout, so every group-relative advantage is 0 (sample several completions per prompt)")
    if config.tis_cap is not None and not any(r.sampled_logprobs is not None for r in read):
        raise UserError(f"--tis-cap: no rollout in {config.data} has sampled_logprobs (the server's log-probs of the sampled tokens)")
    tokenizer = load_tokenizer(config.model)
    pad_id = int(tokenizer.pad_token_id)

    all_sequences = [lp.encode(tokenizer, r.prompt, r.completion, config.max_length, r.turns, r.tools) for r in read]
    all_lengths = torch.tensor([s.completion_tokens for s in all_sequences])
    raw_rewards = torch.tensor([r.reward for r in read])
    all_rewards = shaped_rewards(raw_rewards, all_lengths, config.length_penalty, config.max_length, config.overlong_penalty, config.max_completion_tokens)
    kept = list(range(len(read)))
    dropped_groups = 0
    if config.dynamic_sampling:
        kept, dropped_groups = informative_rollouts(all_rewards, read_groups)
        if not kept:
            raise UserError(f"--dynamic-sampling: every group in {config.data} has rewards of zero variance, nothing to train on (the sampler must refill with fresh groups)")
    rollouts = [read[i] for i in kept]
    groups = [read_groups[i] for i in kept]
    sequences = [all_sequences[i] for i in kept]
    lengths = all_lengths[kept]
    rewards = all_rewards[kept]
    advantages = group_advantages(rewards, groups, config.advantage, config.std_scaling, config.std)

    model = with_lora(load_causal_lm(config.model, device, dtype), config, TaskType.CAUSAL_LM)
    lp.disable_dropout(model)

    # Both are fixed for the whole update: the policy as it starts, and the reference.
    old = lp.precompute(model, sequences, pad_id, device, config.batch_size, "old policy")
    ref = lp.reference_logprobs(model, config.reference_model, sequences, pad_id, device, dtype, config.batch_size)
    kl_before = mean_kl(old, ref)
    correction = server_correction(rollouts, sequences, old, tokenizer.eos_token_id, config.tis_cap)

    loop_config = dataclasses.replace(config, epochs=float(config.ppo_epochs))
    n = len(rollouts)
    rows_per_step = config.batch_size * config.grad_accum
    steps_planned = total_steps(loop_config, n)
    params = trainable_parameters(model)
    aggregation = config.aggregation
    step_tokens = StepTokens(BatchSchedule(list(range(n)), config.batch_size, config.seed), config.grad_accum, lengths.tolist(), starting_step(config)) if aggregation == "batch-token" else None

    def snapshot() -> dict[str, torch.Tensor]:
        return {name: p.detach().to("cpu", copy=True) for name, p in params.items()}

    progress = Progress(kl_now=kl_before, kl_kept=kl_before)

    def measure() -> dict[str, float]:
        return mean_kl(lp.precompute(model, sequences, pad_id, device, config.batch_size, "kl"), ref)

    def loss(rows: list[int]) -> tuple[torch.Tensor, dict[str, float]]:
        if progress.saved is None:
            progress.saved = snapshot()
        batch = lp.collate([sequences[i] for i in rows], pad_id, device)
        logp = lp.token_logprobs(model, batch)
        old_logp = lp.join_rows([old[i] for i in rows], batch.mask)
        ref_logp = lp.join_rows([ref[i] for i in rows], batch.mask)
        if config.importance_level == "sequence":
            policy_loss, was_clipped = gspo_token_loss(logp, old_logp, advantages[rows].to(device), batch.mask, config.clip_eps, config.eps_high)
        else:
            policy_loss, was_clipped = ppo_token_loss(logp, old_logp, advantages[rows].to(device).unsqueeze(-1), config.clip_eps, config.clip_high)
        if correction.weights is not None:
            policy_loss = policy_loss * lp.join_rows([correction.weights[i] for i in rows], batch.mask)
        kl = kl_per_token(logp, ref_logp, config.kl_estimator)
        tokens = batch.mask.sum().clamp(min=1)
        extra: dict[str, float] = {}
        if step_tokens is not None:
            # The loop divides each micro-batch's loss by --grad-accum and sums their gradients (under
            # torchrun it first weighs each process's slice by its share of the micro-batch's tokens,
            # the "tokens" metric); this normaliser leaves Σ (the step's token losses) / (the step's
            # tokens): DAPO's loss of the whole step, however it is split.
            micro_tokens, total = step_tokens(rows)
            normaliser: float | None = total * float(tokens) / (config.grad_accum * micro_tokens)
            extra["tokens"] = float(tokens)
        else:
            normaliser = config.agg_constant if aggregation == "constant" else None
        clip_fraction = float((was_clipped & batch.mask).sum() / tokens)
        progress.clip_fractions.append(clip_fraction)
        return aggregate_loss(policy_loss + config.kl_coef * kl, batch.mask, aggregation, normaliser), {
            "policy_loss": float(aggregate_loss(policy_loss.detach(), batch.mask, aggregation, normaliser)),
            "kl": float((kl.detach() * batch.mask).sum() / tokens),
            "clip_fraction": clip_fraction,
            **extra,
        }

    def after_step(done: int) -> bool:
        """At each PPO epoch's end: measure the KL to the reference; above --kl-bound, undo the epoch and stop."""
        if progress.saved_step is None:
            progress.saved_step = done - 1  # where this process started: 0, or the resumed checkpoint
        progress.kl_now, progress.steps_kept = None, done
        epoch = done * rows_per_step // n
        if epoch == (done - 1) * rows_per_step // n and done < steps_planned:
            return False  # not the end of an epoch
        if config.kl_bound is not None:
            kl = measure()
            emit("eval", step=done, metrics={"epoch": epoch, **kl, "kl_bound": config.kl_bound})
            estimator = "kl_" + config.kl_estimator
            if kl[estimator] > max(config.kl_bound, progress.kl_kept[estimator]):
                with torch.no_grad():
                    for name, tensor in (progress.saved or {}).items():
                        params[name].copy_(tensor.to(params[name].device, params[name].dtype))
                progress.early_stopped, progress.stopped_at_epoch, progress.steps_kept = True, epoch, progress.saved_step
                return True
            progress.saved, progress.saved_step, progress.kl_now, progress.kl_kept = snapshot(), done, kl, kl
        progress.epochs_done = min(epoch, config.ppo_epochs)
        return False

    def evaluate() -> dict[str, Any]:
        kl_after = progress.kl_now or measure()
        components = sorted({k for r in read for k in r.rewards})
        metrics: dict[str, Any] = {
            "reward_mean": float(raw_rewards.mean()),
            **{f"reward_mean/{k}": float(np.mean([r.rewards[k] for r in read if k in r.rewards])) for k in components},
            "shaped_reward_mean": float(all_rewards.mean()),
            "advantage_abs_mean": float(advantages.abs().mean()),
            "completion_tokens_mean": float(lengths.float().mean()),
            "kl_k1_before": kl_before["kl_k1"],
            "kl_k3_before": kl_before["kl_k3"],
            "kl_k1": kl_after["kl_k1"],
            "kl_k3": kl_after["kl_k3"],
            "clip_fraction": float(np.mean(progress.clip_fractions)) if progress.clip_fractions else 0.0,
            "early_stopped": progress.early_stopped,
            "stopped_at_epoch": progress.stopped_at_epoch,
            "epochs_done": progress.epochs_done,
            "steps": progress.steps_kept,
            "rollouts": len(read),
            "groups": len(set(read_groups)),
        }
        if config.overlong_penalty is not None and config.max_completion_tokens is not None:
            metrics["overlong_fraction"] = float((all_lengths > config.max_completion_tokens - config.overlong_penalty).float().mean())
        if config.dynamic_sampling:
            metrics["groups_dropped"] = dropped_groups
            metrics["rollouts_dropped"] = len(read) - n
        return {**metrics, **correction.metrics}

    hyperparameters = {
        "advantage": config.advantage,
        "std_scaling": config.std_scaling,
        "std": config.std,
        "clip_eps": config.clip_eps,
        "clip_high": config.eps_high,
        "importance_level": config.importance_level,
        "ppo_epochs": config.ppo_epochs,
        "kl_coef": config.kl_coef,
        "kl_estimator": config.kl_estimator,
        "kl_bound": config.kl_bound,
        "loss_agg": aggregation,
        **({"loss_agg_constant": config.agg_constant} if aggregation == "constant" else {}),
        "length_penalty": config.length_penalty,
        "overlong_penalty": config.overlong_penalty,
        "max_completion_tokens": config.max_completion_tokens,
        "dynamic_sampling": config.dynamic_sampling,
        "tis_cap": config.tis_cap,
        "reference": config.reference_model or "base (adapters disabled)",
        "rollouts": n,
        "parameters": count_parameters(model),
    }
    job = Job(config=loop_config, model=model, train_items=list(range(n)), loss=loss, save_artifact=lp.save_policy(model, tokenizer), evaluate=evaluate, hyperparameters=hyperparameters, kind="rl", after_step=after_step, weight_metric="tokens" if step_tokens is not None else None)
    return run_loop(job)


__all__ = [
    "Config", "run", "group_advantages", "informative_rollouts", "kl_per_token", "ppo_token_loss", "gspo_token_loss", "sequence_ratio",
    "clipped_objective", "reduce_tokens", "aggregate_loss", "shaped_rewards", "overlong_penalty", "align_server_logprobs", "tis_weights",
    "server_correction", "StepTokens", "mean_kl",
]  # fmt: skip
