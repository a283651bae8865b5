"""`rl`: ONE online policy update (GRPO / RLOO) from scored rollouts, KL-regularised to the reference.

The caller samples K completions per prompt from the current policy, scores them, writes them as
rollouts (data.parse_rollout) and runs this command; it writes the next policy's adapter. Per update:

1. Reward shaping: r' = reward - length_penalty · completion_tokens / max_length (a completion as
   long as --max-length costs `length_penalty`; tokens counted as trained, EOS included).
2. Group-relative advantages over the rollouts of a group (default group: the prompt):
     grpo:  A_i = (r'_i - mean_g) / (std_g + 1e-4)       (std: population std; --no-std-scaling skips it)
     rloo:  A_i = r'_i - mean_{j≠i} r'_j                 (leave-one-out baseline)
   A group with one rollout has no baseline: its advantage is 0.
3. Old log-probs (the policy at the start of the update) and reference log-probs (the base with
   adapters disabled, or --reference-model) are computed once, before the first step.
4. --ppo-epochs passes over the rollouts in minibatches of --batch-size (× --grad-accum), each token
   of a completion y_i with ratio ρ_t = π(y_t) / π_old(y_t) contributing

     ℓ_t = -min(ρ_t A_i, clip(ρ_t, 1 - ε, 1 + ε) A_i) + kl_coef · KL_t
     KL_t (k1) = log π(y_t) - log π_ref(y_t)
     KL_t (k3) = exp(log π_ref(y_t) - log π(y_t)) - (log π_ref(y_t) - log π(y_t)) - 1     (≥ 0)

   summed over the completion's tokens (--length-norm sequence) or averaged over them (token), then
   averaged over the minibatch. (k1 in the loss has zero expected gradient when the tokens come
   from π itself, so it barely restrains the policy; k3, GRPO's choice, is the default.)
5. --kl-bound: after each PPO epoch the mean KL per completion token (the --kl-estimator's) to
   the reference is measured over all rollouts; above the bound, that epoch's steps are undone and
   the update stops there (early_stopped). A chained adapter can start above the bound on fresh
   rollouts (the KL is measured on this update's samples, not the last one's): then an epoch is
   undone only when it ends above both the bound and the KL it started from, so such an update
   may pull the policy back but never pushes it further out. The published policy's measured KL
   is therefore at most max(bound, the starting policy's). After a resume mid-epoch, "undone" goes
   back to the resume point.

Metrics: mean reward (and its components), mean KL (k1, k3) before and after, mean completion
length, clip fraction (share of tokens whose clipped term was active), early_stopped, steps.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from peft import TaskType

from tenet_trainer import logprobs as lp
from tenet_trainer.common import UserError, emit, pick_device, pick_dtype, read_jsonl, seed_everything
from tenet_trainer.config import TrainConfig, check_train_config
from tenet_trainer.data import Rollout, parse_rollout
from tenet_trainer.loop import Job, run as run_loop, total_steps
from tenet_trainer.models import count_parameters, load_causal_lm, load_tokenizer, trainable_parameters, with_lora

STD_EPS = 1e-4
"""Added to a group's reward std before dividing (GRPO), so equal rewards give 0, not NaN."""


@dataclass
class Config(TrainConfig):
    advantage: Literal["grpo", "rloo"] = "grpo"
    std_scaling: bool = True
    """GRPO: divide by the group's reward std (--no-std-scaling keeps only the mean baseline, as Dr. GRPO)."""
    clip_eps: float = 0.2
    """PPO ratio clipping: ρ is clipped to [1 - ε, 1 + ε]."""
    ppo_epochs: int = 1
    """Passes over the rollouts (the old log-probs stay those of the policy at the start)."""
    kl_coef: float = 0.05
    """Weight of the per-token KL to the reference in the loss (0: no penalty)."""
    kl_estimator: Literal["k1", "k3"] = "k3"
    length_norm: Literal["token", "sequence"] = "token"
    """token: average each completion's token losses; sequence: sum them."""
    length_penalty: float = 0.0
    """Subtracted from each reward, times completion tokens / max_length, before advantages."""
    kl_bound: float | None = None
    """Stop early (undoing the last epoch) when the mean per-token KL to the reference after an epoch exceeds it."""
    reference_model: str | None = None
    """A model folder to use as the reference instead of the base with adapters disabled."""

    def validate(self) -> None:
        check_train_config(self)
        if self.clip_eps <= 0:
            raise UserError("--clip-eps: must be positive")
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


def shaped_rewards(rewards: torch.Tensor, completion_tokens: torch.Tensor, length_penalty: float, max_length: int) -> torch.Tensor:
    """r' = r - length_penalty · tokens / max_length."""
    return rewards - length_penalty * completion_tokens.float() / max_length


def group_advantages(rewards: torch.Tensor, groups: list[str], method: str, std_scaling: bool = True) -> torch.Tensor:
    """Each rollout's reward against its group's: GRPO (mean, optionally / std) or RLOO (leave-one-out mean)."""
    advantages = torch.zeros_like(rewards, dtype=torch.float32)
    members: dict[str, list[int]] = {}
    for index, group in enumerate(groups):
        members.setdefault(group, []).append(index)
    for index in members.values():
        r = rewards[index].float()
        k = len(index)
        if k == 1:
            continue  # no baseline: no signal
        if method == "grpo":
            a = r - r.mean()
            if std_scaling:
                a = a / (r.std(unbiased=False) + STD_EPS)
        elif method == "rloo":
            a = r - (r.sum() - r) / (k - 1)
        else:
            raise ValueError(method)
        advantages[index] = a
    return advantages


def kl_per_token(logp: torch.Tensor, ref_logp: torch.Tensor, estimator: str) -> torch.Tensor:
    """Estimates of KL(π ‖ π_ref) from tokens sampled by the policy: k1 = log π - log π_ref,
    k3 = exp(log π_ref - log π) - (log π_ref - log π) - 1 (unbiased, never negative)."""
    if estimator == "k1":
        return logp - ref_logp
    if estimator == "k3":
        log_ratio = ref_logp - logp
        return torch.exp(log_ratio) - log_ratio - 1
    raise ValueError(estimator)


def ppo_token_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, clip_eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """-min(ρA, clip(ρ, 1-ε, 1+ε)A) per token, and where the clipped term was the active one."""
    ratio = torch.exp(logp - old_logp)
    unclipped = ratio * advantages
    clipped = ratio.clamp(1 - clip_eps, 1 + clip_eps) * advantages
    was_clipped = ((ratio > 1 + clip_eps) & (advantages > 0)) | ((ratio < 1 - clip_eps) & (advantages < 0))
    return -torch.minimum(unclipped, clipped), was_clipped


def reduce_tokens(per_token: torch.Tensor, mask: torch.Tensor, length_norm: str) -> torch.Tensor:
    """Per-sequence loss: the mean (token) or the sum (sequence) of its completion tokens' losses."""
    total = (per_token * mask).sum(-1)
    if length_norm == "token":
        return total / mask.sum(-1).clamp(min=1)
    return total


def mean_kl(policy: list[torch.Tensor], reference: list[torch.Tensor]) -> dict[str, float]:
    """Mean per completion token (over all rollouts) of the k1 and k3 estimates."""
    logp, ref = torch.cat(policy), torch.cat(reference)
    return {"kl_k1": float(kl_per_token(logp, ref, "k1").mean()), "kl_k3": float(kl_per_token(logp, ref, "k3").mean())}


def run(config: Config) -> dict[str, Any]:
    seed_everything(config.seed)
    device = pick_device(config.device)
    dtype = pick_dtype(device, config.dtype)
    rollouts: list[Rollout] = read_jsonl(config.data, parse_rollout)
    groups = [r.group for r in rollouts]
    if len(set(groups)) == len(groups):
        raise UserError(f"{config.data}: every group has one rollout, so every group-relative advantage is 0 (sample several completions per prompt)")
    tokenizer = load_tokenizer(config.model)
    model = with_lora(load_causal_lm(config.model, device, dtype), config, TaskType.CAUSAL_LM)
    lp.disable_dropout(model)
    pad_id = int(tokenizer.pad_token_id)

    sequences = [lp.encode(tokenizer, r.prompt, r.completion, config.max_length) for r in rollouts]
    lengths = torch.tensor([s.completion_tokens for s in sequences])
    raw_rewards = torch.tensor([r.reward for r in rollouts])
    rewards = shaped_rewards(raw_rewards, lengths, config.length_penalty, config.max_length)
    advantages = group_advantages(rewards, groups, config.advantage, config.std_scaling)

    # Both are fixed for the whole update: the policy as it starts, and the reference.
    old = lp.precompute(model, sequences, pad_id, device, config.batch_size, "old policy")
    ref = lp.reference_logprobs(model, config.reference_model, sequences, pad_id, device, dtype, config.batch_size)
    kl_before = mean_kl(old, ref)

    loop_config = dataclasses.replace(config, epochs=float(config.ppo_epochs))
    n = len(rollouts)
    rows_per_step = config.batch_size * config.grad_accum
    steps_planned = total_steps(loop_config, n)
    params = trainable_parameters(model)

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
        adv = advantages[rows].to(device).unsqueeze(-1)
        policy_loss, was_clipped = ppo_token_loss(logp, old_logp, adv, config.clip_eps)
        kl = kl_per_token(logp, ref_logp, config.kl_estimator)
        per_sequence = reduce_tokens(policy_loss + config.kl_coef * kl, batch.mask, config.length_norm)
        tokens = batch.mask.sum().clamp(min=1)
        clip_fraction = float((was_clipped & batch.mask).sum() / tokens)
        progress.clip_fractions.append(clip_fraction)
        return per_sequence.mean(), {
            "policy_loss": float(reduce_tokens(policy_loss.detach(), batch.mask, config.length_norm).mean()),
            "kl": float((kl.detach() * batch.mask).sum() / tokens),
            "clip_fraction": clip_fraction,
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
        components = sorted({k for r in rollouts for k in r.rewards})
        return {
            "reward_mean": float(raw_rewards.mean()),
            **{f"reward_mean/{k}": float(np.mean([r.rewards[k] for r in rollouts if k in r.rewards])) for k in components},
            "shaped_reward_mean": float(rewards.mean()),
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
            "rollouts": n,
            "groups": len(set(groups)),
        }

    hyperparameters = {
        "advantage": config.advantage,
        "std_scaling": config.std_scaling,
        "clip_eps": config.clip_eps,
        "ppo_epochs": config.ppo_epochs,
        "kl_coef": config.kl_coef,
        "kl_estimator": config.kl_estimator,
        "kl_bound": config.kl_bound,
        "length_norm": config.length_norm,
        "length_penalty": config.length_penalty,
        "reference": config.reference_model or "base (adapters disabled)",
        "rollouts": n,
        "parameters": count_parameters(model),
    }
    job = Job(config=loop_config, model=model, train_items=list(range(n)), loss=loss, save_artifact=lp.save_policy(model, tokenizer), evaluate=evaluate, hyperparameters=hyperparameters, kind="rl", after_step=after_step)
    return run_loop(job)


__all__ = ["Config", "run", "group_advantages", "kl_per_token", "ppo_token_loss", "reduce_tokens", "shaped_rewards", "mean_kl"]
