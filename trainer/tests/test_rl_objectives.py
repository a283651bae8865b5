"""`rl`'s modern objectives against their papers' closed forms on hand-made tensors, value and
gradient (torch.autograd.grad against the hand-derived one): loss aggregation (token, sequence,
DAPO's batch-token, Dr. GRPO's constant), clip-higher, GSPO's sequence ratio, the overlong penalty,
dynamic sampling, truncated importance sampling with server log-probs, sample or population std;
then the refusals, and short updates on the tiny model for what only the whole command shows."""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path

import pytest
import torch

from conftest import run_cli
from tenet_trainer import cli, data, logprobs as lp, rl
from tenet_trainer.common import UserError, read_jsonl
from tenet_trainer.loop import BatchSchedule
from tenet_trainer.models import load_causal_lm, load_tokenizer

torch.set_num_threads(1)


def grad(value: torch.Tensor, wrt: torch.Tensor) -> torch.Tensor:
    (g,) = torch.autograd.grad(value, wrt)
    return g


# ---- loss aggregation ---------------------------------------------------------------------------

# Two completions of 3 and 1 tokens; padding positions hold values that must not count.
MASK = torch.tensor([[True, True, True, False], [True, False, False, False]])
TOKEN_LOSSES = [[1.0, 2.0, 3.0, 100.0], [4.0, 7.0, 7.0, 7.0]]


@pytest.mark.parametrize(
    ("mode", "normaliser", "value", "weights"),
    [
        # token: 1/B Σ_i (1/|y_i|) Σ_t ℓ = (6/3 + 4/1) / 2; ∂/∂ℓ_t = 1 / (B |y_i|)
        ("token", None, 3.0, [[1 / 6, 1 / 6, 1 / 6, 0], [1 / 2, 0, 0, 0]]),
        # sequence: 1/B Σ_i Σ_t ℓ = (6 + 4) / 2; ∂/∂ℓ_t = 1 / B
        ("sequence", None, 5.0, [[1 / 2, 1 / 2, 1 / 2, 0], [1 / 2, 0, 0, 0]]),
        # batch-token (DAPO eq. 12): Σ_i Σ_t ℓ / Σ_i |y_i| = 10 / 4; ∂/∂ℓ_t = 1 / 4 for every token
        ("batch-token", None, 2.5, [[1 / 4, 1 / 4, 1 / 4, 0], [1 / 4, 0, 0, 0]]),
        # constant (Dr. GRPO), C = 8: 1/B Σ_i Σ_t ℓ / C = (6 + 4) / 16; ∂/∂ℓ_t = 1 / (B C)
        ("constant", 8, 0.625, [[1 / 16, 1 / 16, 1 / 16, 0], [1 / 16, 0, 0, 0]]),
    ],
)
def test_loss_aggregation_value_and_gradient(mode: str, normaliser: int | None, value: float, weights: list[list[float]]):
    losses = torch.tensor(TOKEN_LOSSES, requires_grad=True)
    total = rl.aggregate_loss(losses, MASK, mode, normaliser)
    assert float(total.detach()) == pytest.approx(value)
    torch.testing.assert_close(grad(total, losses), torch.tensor(weights))


def test_batch_token_over_accumulated_micro_batches_is_the_loss_of_the_whole_step():
    """Two micro-batches of one row each, normalised as `rl` does (the step's tokens / --grad-accum),
    then divided by grad_accum and summed as the loop does: DAPO's loss of the two rows together.
    Normalising each micro-batch by its own tokens would give (6/3 + 4/1) / 2 = 3, not 10/4."""
    losses = torch.tensor(TOKEN_LOSSES, requires_grad=True)
    grad_accum, step_tokens = 2, 4
    accumulated = sum(rl.aggregate_loss(losses[i : i + 1], MASK[i : i + 1], "batch-token", step_tokens / grad_accum) / grad_accum for i in range(2))
    assert float(accumulated.detach()) == pytest.approx(2.5)
    torch.testing.assert_close(grad(accumulated, losses), torch.tensor([[1 / 4, 1 / 4, 1 / 4, 0], [1 / 4, 0, 0, 0]]))


def test_step_tokens_replays_the_loop_schedule_and_resumes_mid_update():
    tokens = [3, 1, 5, 2, 7, 4]
    schedule = BatchSchedule(list(range(6)), batch_size=1, seed=11)
    counter = rl.StepTokens(BatchSchedule(list(range(6)), 1, 11), grad_accum=2, tokens=tokens, first_step=0)
    for step in range(6):  # two epochs: the second permutation differs from the first
        rows = [schedule.micro_batch(2 * step), schedule.micro_batch(2 * step + 1)]
        expected = sum(tokens[r] for micro in rows for r in micro)
        assert counter(rows[0]) == (tokens[rows[0][0]], expected) and counter(rows[1]) == (tokens[rows[1][0]], expected)
    resumed = rl.StepTokens(BatchSchedule(list(range(6)), 1, 11), grad_accum=2, tokens=tokens, first_step=4)
    rows = [schedule.micro_batch(8), schedule.micro_batch(9)]
    assert resumed(rows[0])[1] == sum(tokens[r] for micro in rows for r in micro)
    with pytest.raises(RuntimeError, match="micro-batch 9"):
        resumed([(rows[1][0] + 1) % 6])  # not the row the schedule gives next


# ---- clipping and importance ratios --------------------------------------------------------------


def test_clip_higher_widens_only_the_upper_bound():
    ratios = torch.tensor([1.25, 1.3, 0.75, 0.85, 1.1, 1.5])
    advantages = torch.tensor([1.0, 1.0, -1.0, -1.0, -1.0, -1.0])
    logp = ratios.log().requires_grad_()
    old = torch.zeros(6)
    loss, clipped = rl.ppo_token_loss(logp, old, advantages, clip_eps=0.2, clip_high=0.28)
    # -min(ρA, clip(ρ, 0.8, 1.28)A): 1.25 stays (inside the higher bound); 1.3 → 1.28; 0.75·-1 → clip
    # 0.8·-1 is the min; 0.85, 1.1 inside; 1.5 with A < 0: the unclipped -1.5 is the min.
    assert loss.detach().tolist() == pytest.approx([-1.25, -1.28, 0.8, 0.85, 1.1, 1.5])
    assert clipped.tolist() == [False, True, True, False, False, False]
    # ∂/∂log π of -ρA is -ρA where the unclipped term is active, 0 where the clipped one is.
    torch.testing.assert_close(grad(loss.sum(), logp), torch.tensor([-1.25, 0.0, 0.0, 0.85, 1.1, 1.5]))
    # Symmetric (the default, ε_high = ε_low): 1.25 is clipped at 1.2 and its gradient vanishes.
    symmetric, was = rl.ppo_token_loss(logp, old, advantages, clip_eps=0.2)
    assert float(symmetric[0].detach()) == pytest.approx(-1.2) and bool(was[0])
    assert float(grad(symmetric.sum(), logp)[0]) == 0.0


def test_gspo_sequence_ratio_is_clipped_per_completion():
    mask = torch.tensor([[True, True, True], [True, True, False], [True, True, False]])
    log_ratio = torch.tensor([[0.1, 0.2, 0.0], [0.5, 0.3, 9.0], [0.3, 0.3, 9.0]])  # 9.0: padding
    advantages = torch.tensor([1.0, -1.0, 1.0])
    logp = log_ratio.clone().requires_grad_()
    old = torch.zeros(3, 3)
    s = [math.exp(0.1), math.exp(0.4), math.exp(0.3)]  # exp of each completion's mean log-ratio
    assert rl.sequence_ratio(logp, old, mask).tolist() == pytest.approx(s)
    per_token, clipped = rl.gspo_token_loss(logp, old, advantages, mask, 0.2, 0.2)
    # s_0 inside [0.8, 1.2]: -s_0; s_1 = 1.49 with A < 0: min(-s_1, -1.2) = -s_1, unclipped → loss s_1;
    # s_2 = 1.35 with A > 0: clipped to 1.2.
    losses = [-s[0], s[1], -1.2]
    torch.testing.assert_close(per_token.detach(), torch.tensor([[x] * 3 for x in losses]))
    assert clipped.tolist() == [[False] * 3, [False] * 3, [True] * 3]
    total = rl.aggregate_loss(per_token, mask, "token")
    assert float(total.detach()) == pytest.approx(sum(losses) / 3)  # GSPO: 1/G Σ_i -min(s_i A_i, clip(s_i) A_i)
    # ∂/∂log π(y_t) = -A_i s_i / (G |y_i|) on completion i's tokens, 0 when clipped and on padding.
    expected = torch.tensor([[-s[0] / 9] * 3, [s[1] / 6, s[1] / 6, 0.0], [0.0, 0.0, 0.0]])
    torch.testing.assert_close(grad(total, logp), expected)
    # A higher upper bound (1.4) lets completion 2 through.
    wide, _ = rl.gspo_token_loss(logp, old, advantages, mask, 0.2, 0.4)
    assert float(wide[2, 0].detach()) == pytest.approx(-s[2])


# ---- rewards and groups ------------------------------------------------------------------------


def test_overlong_penalty_is_dapos_soft_punishment():
    lengths = torch.tensor([10, 12, 13, 14, 16, 17, 40])
    # L_max 16, L_cache 4: 0 up to 12, (12 - |y|) / 4 from 12 to 16, -1 beyond.
    assert rl.overlong_penalty(lengths, 16, 4).tolist() == pytest.approx([0, 0, -0.25, -0.5, -1, -1, -1])
    rewards = torch.ones(7)
    shaped = rl.shaped_rewards(rewards, lengths, 0.0, 512, overlong_cache=4, max_completion_tokens=16)
    assert shaped.tolist() == pytest.approx([1, 1, 0.75, 0.5, 0, 0, 0])
    assert rl.shaped_rewards(rewards, lengths, 0.0, 512).tolist() == pytest.approx([1] * 7)  # off by default
    # Added before advantages: equal rewards, the longer answers now lose.
    advantages = rl.group_advantages(shaped, ["g"] * 7, "grpo")
    assert advantages[0] == advantages[1] and advantages[1] > advantages[2] > advantages[3] > advantages[4]


def test_sample_and_population_std():
    rewards = torch.tensor([1.0, 2.0, 3.0, 6.0])
    population, sample = math.sqrt(14 / 4), math.sqrt(14 / 3)
    centred = [-2.0, -1.0, 0.0, 3.0]
    assert rl.group_advantages(rewards, ["g"] * 4, "grpo").tolist() == pytest.approx([a / (population + 1e-4) for a in centred])
    assert rl.group_advantages(rewards, ["g"] * 4, "grpo", std="sample").tolist() == pytest.approx([a / (sample + 1e-4) for a in centred])


def test_dynamic_sampling_keeps_only_groups_with_reward_variance():
    rewards = torch.tensor([1.0, 1.0, 1.0, 0.0, 1.0, 0.5, 0.0, 0.0, 0.2, 0.3])
    groups = ["a", "a", "a", "b", "b", "c", "d", "d", "e", "e"]
    kept, dropped = rl.informative_rollouts(rewards, groups)
    assert kept == [3, 4, 8, 9] and dropped == 3  # a (all equal), c (alone), d (all equal)


# ---- truncated importance sampling -------------------------------------------------------------


def test_tis_weights_truncate_and_scale_the_policy_gradient():
    old = torch.tensor([-1.0, -2.0, -0.5])
    server = torch.tensor([-1.5, -1.0, -0.5])
    weights, capped = rl.tis_weights(old, server, cap=1.5)
    # min(exp(log π_old - log π_server), C): e^0.5 = 1.65 → 1.5; e^-1; e^0 = 1.
    assert weights.tolist() == pytest.approx([1.5, math.exp(-1), 1.0])
    assert capped.tolist() == [True, False, False]
    logp = torch.log(torch.tensor([1.1, 0.9, 1.0])).requires_grad_()
    advantages = torch.tensor([1.0, -1.0, 2.0])
    loss, _ = rl.ppo_token_loss(logp, torch.zeros(3), advantages, 0.2)
    weighted = (loss * weights).sum()
    # ∂/∂log π of -w ρ A is -w ρ A: the weight is a constant, no gradient flows through it.
    torch.testing.assert_close(grad(weighted, logp), torch.tensor([-1.5 * 1.1, math.exp(-1) * 0.9, -2.0]))


def test_server_logprobs_align_with_the_trainers_tokens():
    ids, eos = [5, 6, 7, 2], 2
    four, three = (-0.1, -0.2, -0.3, -0.4), (-0.1, -0.2, -0.3)
    assert rl.align_server_logprobs(ids, eos, four, (5, 6, 7, 2)).tolist() == pytest.approx(list(four))
    with_eos = rl.align_server_logprobs(ids, eos, three, (5, 6, 7))  # the server did not report the EOS
    assert with_eos[:3].tolist() == pytest.approx(list(three)) and math.isnan(with_eos[3])
    assert rl.align_server_logprobs(ids, eos, four, (5, 9, 7, 2)) is None  # another tokenization
    assert rl.align_server_logprobs([5, 6, 7, 8], eos, three, (5, 6, 7)) is None  # extra token, not EOS
    assert rl.align_server_logprobs(ids, eos, four, None) is not None  # without ids: by count
    assert math.isnan(rl.align_server_logprobs(ids, eos, three, None)[3])
    assert rl.align_server_logprobs(ids, eos, three[:2], None) is None


def test_server_correction_weights_and_metrics():
    sequence = lp.Sequence(ids=[1, 5, 6, 7, 2], completion_start=1)  # completion 5 6 7 EOS
    old = [torch.tensor([-1.0, -1.0, -1.0, -0.1])] * 4

    def rollout(logprobs, token_ids=None) -> data.Rollout:
        return data.Rollout(prompt=[], completion="", reward=0.0, rewards={}, group="g", sampled_logprobs=logprobs, sampled_token_ids=token_ids)

    rollouts = [
        rollout((-1.5, -1.5, -1.5, -0.6), (5, 6, 7, 2)),  # π_old / π_server = e^0.5 on every token
        rollout((-3.0, -3.0, -3.0), (5, 6, 7)),  # e^2, capped at 2; the EOS weighs 1
        rollout((-1.0, -1.0, -1.0, -0.1), (5, 6, 8, 2)),  # misaligned: weighs 1
        rollout(None),  # no server log-probs: weighs 1
    ]
    result = rl.server_correction(rollouts, [sequence] * 4, old, eos_id=2, cap=2.0)
    e = math.exp(0.5)
    assert result.weights is not None
    assert [w.tolist() for w in result.weights] == [pytest.approx([e] * 4), pytest.approx([2, 2, 2, 1]), [1] * 4, [1] * 4]
    metrics = result.metrics
    assert metrics["logprob_mismatch"] == pytest.approx((4 * 0.5 + 3 * 2.0) / 7)  # over the 7 matched tokens
    assert metrics["tis_unaligned"] == 1 and metrics["rollouts_without_logprobs"] == 1
    assert metrics["tis_clipped_fraction"] == pytest.approx(3 / 7)
    # Without a cap: the mismatch is still reported, and nothing is weighted.
    plain = rl.server_correction(rollouts, [sequence] * 4, old, eos_id=2, cap=None)
    assert plain.weights is None and plain.metrics["logprob_mismatch"] == metrics["logprob_mismatch"]
    assert "tis_clipped_fraction" not in plain.metrics


# ---- rollouts with server log-probs ------------------------------------------------------------


def test_parse_rollout_reads_and_checks_sampled_logprobs(tmp_path: Path):
    row = {"prompt": "p", "completion": "c", "reward": 1, "sampled_logprobs": [-0.5, 0, -2], "sampled_token_ids": [3, 4, 5]}
    parsed = data.parse_rollout(row, 1)
    assert parsed.sampled_logprobs == (-0.5, 0.0, -2.0) and parsed.sampled_token_ids == (3, 4, 5)
    absent = data.parse_rollout({**row, "sampled_logprobs": None, "sampled_token_ids": None}, 1)
    assert absent.sampled_logprobs is None and absent.sampled_token_ids is None
    bad = [
        ({"sampled_logprobs": "x"}, "sampled_logprobs: expected a list of numbers, got str"),
        ({"sampled_logprobs": [-0.5, 0.5, -2]}, "sampled_logprobs[1]: expected a finite log-probability (<= 0), got 0.5"),
        ({"sampled_logprobs": [-0.5, True, -2]}, "sampled_logprobs[1]: expected a finite log-probability (<= 0), got True"),
        ({"sampled_token_ids": [3, -4, 5]}, "sampled_token_ids[1]: expected a token id (an integer >= 0), got -4"),
        ({"sampled_token_ids": [3, 4]}, "sampled_token_ids (2) and sampled_logprobs (3): expected one log-prob per token"),
        ({"sampled_logprobs": None}, "sampled_token_ids: given without sampled_logprobs (the log-probs are what the trainer uses)"),
    ]
    for change, message in bad:
        path = tmp_path / "rollouts.jsonl"
        path.write_text(json.dumps(row) + "\n" + json.dumps({**row, **change}) + "\n")
        with pytest.raises(UserError) as err:
            read_jsonl(path, data.parse_rollout)
        assert str(err.value) == f"{path}:2: {message}"


# ---- refusals ----------------------------------------------------------------------------------


def rl_error(capsys: pytest.CaptureFixture[str], *flags: str, model: str = "no-model", data_path: str = "no-data.jsonl") -> str:
    """The one stderr line `trainer rl` exits 2 with."""
    assert cli.main(["rl", "--model", model, "--data", data_path, "--output", "out", *flags]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--importance-level", "sequence", "--tis-cap", "2"], "--importance-level sequence with --tis-cap: contradictory"),
        (["--clip-high", "0.1"], "--clip-high 0.1 is below --clip-eps 0.2"),
        (["--overlong-penalty", "16", "--max-completion-tokens", "16"], "--overlong-penalty 16: must be below --max-completion-tokens 16"),
        (["--overlong-penalty", "4"], "--overlong-penalty: needs --max-completion-tokens"),
        (["--overlong-penalty", "-1", "--max-completion-tokens", "16"], "--overlong-penalty: must be at least 1"),
        (["--max-completion-tokens", "0"], "--max-completion-tokens: must be at least 1"),
        (["--tis-cap", "-1"], "--tis-cap: must be a positive number"),
        (["--loss-agg-constant", "0", "--loss-agg", "constant"], "--loss-agg-constant: must be at least 1"),
        (["--loss-agg-constant", "64"], "--loss-agg-constant: only used with --loss-agg constant"),
        (["--length-norm", "sequence", "--loss-agg", "batch-token"], "--length-norm sequence and --loss-agg batch-token"),
        (["--std", "sample", "--advantage", "rloo"], "--std sample: only used by --advantage grpo with std scaling (it conflicts with --advantage rloo)"),
        (["--std", "sample", "--no-std-scaling"], "--std sample: only used by --advantage grpo with std scaling (it conflicts with --no-std-scaling)"),
    ],
)
def test_contradictory_or_bad_options_are_refused_before_any_work(capsys: pytest.CaptureFixture[str], flags: list[str], message: str):
    assert rl_error(capsys, *flags).startswith("error: " + message)


def test_config_resolves_the_deprecated_name_and_dr_grpos_constant():
    def config(**extra) -> rl.Config:
        c = rl.Config(model="m", data="d", output="o", **extra)
        c.validate()
        return c

    assert config().aggregation == "token"
    assert config(length_norm="sequence").aggregation == "sequence"
    assert config(length_norm="sequence", loss_agg="sequence").aggregation == "sequence"
    assert config(loss_agg="constant").agg_constant == 512  # --max-length
    assert config(loss_agg="constant", max_completion_tokens=256).agg_constant == 256  # the generation budget
    assert config(loss_agg="constant", max_completion_tokens=256, loss_agg_constant=100).agg_constant == 100
    assert config().eps_high == 0.2 and config(clip_high=0.28).eps_high == 0.28


def write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_data_dependent_refusals(tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    singles = write(tmp_path / "singles.jsonl", [{"prompt": f"p{i}", "completion": "c", "reward": i} for i in range(3)])
    assert "--dynamic-sampling: " in rl_error(capsys, "--dynamic-sampling", model=str(tiny_model), data_path=str(singles))
    flat = write(tmp_path / "flat.jsonl", [{"prompt": f"p{g}", "completion": "c" * i, "reward": g} for g in range(2) for i in range(1, 4)])
    message = rl_error(capsys, "--dynamic-sampling", model=str(tiny_model), data_path=str(flat))
    assert message == f"error: --dynamic-sampling: every group in {flat} has rewards of zero variance, nothing to train on (the sampler must refill with fresh groups)"
    assert rl_error(capsys, "--tis-cap", "2", model=str(tiny_model), data_path=str(flat)).startswith(f"error: --tis-cap: no rollout in {flat} has sampled_logprobs")


# ---- the whole command on the tiny model ---------------------------------------------------------


def run_rl(config: rl.Config) -> tuple[dict, list[dict]]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        metrics = rl.run(config)
    return metrics, [json.loads(line) for line in out.getvalue().splitlines()]


def rollout_rows(groups: int = 2, per_group: int = 4) -> list[dict]:
    """Completions of different lengths, rewards 0/1 alternating within each group."""
    return [{"prompt": f"question {g}", "completion": ("yes " * (1 + i + 2 * g)).strip(), "reward": float(i % 2)} for g in range(groups) for i in range(per_group)]


def test_batch_token_normalises_by_the_whole_steps_tokens_under_grad_accum(tiny_model: Path, tmp_path: Path):
    """At the first step π = π_old = π_ref (a fresh adapter), so ρ = 1, KL = 0 and the loss is
    -Σ_i A_i |y_i| / Σ_i |y_i| over the step's rollouts — all 8 here, whether in one micro-batch of 8
    or two of 4 (normalising each micro-batch by its own tokens would average two ratios instead)."""
    # Two long right answers (rows 3 and 7) that the seed-0 schedule puts in the same micro-batch.
    words = [1, 1, 1, 30, 1, 1, 1, 30]
    rows = [{"prompt": f"question {i // 4}", "completion": " ".join(["yes"] * words[i]), "reward": float(i % 2)} for i in range(8)]
    path = write(tmp_path / "rollouts.jsonl", rows)
    tokenizer = load_tokenizer(str(tiny_model))
    lengths = torch.tensor([lp.encode(tokenizer, [{"role": "user", "content": r["prompt"]}], r["completion"], 512).completion_tokens for r in rows])
    advantages = rl.group_advantages(torch.tensor([r["reward"] for r in rows]), [r["prompt"] for r in rows], "grpo")
    expected = float(-(advantages * lengths).sum() / lengths.sum())
    schedule = BatchSchedule(list(range(8)), 4, seed=0)  # the micro-batches the loop gives with --seed 0
    per_micro = sum(float(-(advantages[m] * lengths[m]).sum() / lengths[m].sum()) for m in (schedule.micro_batch(0), schedule.micro_batch(1))) / 2
    assert abs(expected - per_micro) > 0.1, (expected, per_micro)  # the data tells the two apart
    losses = []
    for batch_size, grad_accum in ((8, 1), (4, 2)):
        config = rl.Config(model=str(tiny_model), data=str(path), output=str(tmp_path / f"out-{grad_accum}"), loss_agg="batch-token", batch_size=batch_size, grad_accum=grad_accum, max_steps=1, log_every=1)
        _, events = run_rl(config)
        losses.append(next(e for e in events if e["event"] == "step")["loss"])
    assert losses == pytest.approx([expected, expected], abs=1e-5)


def test_batch_token_resumes_mid_update(tiny_model: Path, tmp_path: Path):
    path = write(tmp_path / "rollouts.jsonl", rollout_rows())

    def config(output: Path, **extra) -> rl.Config:
        return rl.Config(model=str(tiny_model), data=str(path), output=str(output), lr=2e-2, batch_size=2, grad_accum=2, ppo_epochs=2, checkpoint_every=2, log_every=1, loss_agg="batch-token", clip_high=0.28, **extra)

    whole, whole_events = run_rl(config(tmp_path / "whole"))
    resumed, events = run_rl(config(tmp_path / "resumed", resume_from=str(tmp_path / "whole" / "checkpoints" / "step-000002")))
    steps = {e["step"]: e["loss"] for e in whole_events if e["event"] == "step"}
    assert [e["step"] for e in events if e["event"] == "step"] == [3, 4]
    for e in events:
        if e["event"] == "step":
            assert e["loss"] == pytest.approx(steps[e["step"]], abs=1e-6)
    assert resumed["kl_k3"] == pytest.approx(whole["kl_k3"], abs=1e-6) and whole["kl_k3"] > 0


def test_dynamic_sampling_and_tis_metrics_from_a_whole_update(tiny_model: Path, tmp_path: Path):
    rows = rollout_rows(groups=3)
    for row in rows[8:]:
        row["reward"] = 1.0  # group 2: no variance, dropped
    tokenizer = load_tokenizer(str(tiny_model))
    sequences = [lp.encode(tokenizer, [{"role": "user", "content": r["prompt"]}], r["completion"], 512) for r in rows]
    old = lp.precompute(load_causal_lm(str(tiny_model), torch.device("cpu"), torch.float32), sequences, int(tokenizer.pad_token_id), torch.device("cpu"), 8, "test")
    offsets = {0: 0.5, 1: 1.0, 2: 0.25, 4: 0.5, 5: 0.5, 6: 0.5, 7: 0.5, 8: 3.0}  # server = old - offset
    matched = tokens_capped = 0
    gap = 0.0
    for i, (row, seq, logprobs) in enumerate(zip(rows, sequences, old)):
        ids = seq.ids[seq.completion_start :]
        if i in offsets:
            row["sampled_logprobs"] = (logprobs - offsets[i]).tolist()
            row["sampled_token_ids"] = ids
        if i == 2:  # without ids, and without the final EOS the trainer appends
            row["sampled_logprobs"], row["sampled_token_ids"] = row["sampled_logprobs"][:-1], None
        if i == 3:  # another tokenization
            row["sampled_logprobs"], row["sampled_token_ids"] = [-1.0] * len(ids), [ids[0] + 1, *ids[1:]]
        if i in offsets and i < 8:
            n = len(ids) - (i == 2)
            matched, gap = matched + n, gap + n * offsets[i]
            tokens_capped += n if math.exp(offsets[i]) > 2 else 0
    path = write(tmp_path / "rollouts.jsonl", rows)
    config = rl.Config(model=str(tiny_model), data=str(path), output=str(tmp_path / "out"), dynamic_sampling=True, tis_cap=2.0, batch_size=8, log_every=1, overlong_penalty=2, max_completion_tokens=5)
    metrics, events = run_rl(config)
    assert metrics["groups_dropped"] == 1 and metrics["rollouts_dropped"] == 4
    assert metrics["rollouts"] == 12 and metrics["groups"] == 3
    assert metrics["tis_unaligned"] == 1  # rollout 3; rollout 8 was dropped with its group
    assert metrics["logprob_mismatch"] == pytest.approx(gap / matched, abs=1e-5)
    assert metrics["tis_clipped_fraction"] == pytest.approx(tokens_capped / matched)
    overlong = float(rl.overlong_penalty(torch.tensor([s.completion_tokens for s in sequences]), 5, 2).mean())
    assert overlong < 0 and metrics["shaped_reward_mean"] == pytest.approx(sum(r["reward"] for r in rows) / 12 + overlong, abs=1e-6)
    assert metrics["overlong_fraction"] > 0
    start = next(e for e in events if e["event"] == "start")
    assert start["train_rows"] == 8 and start["hyperparameters"]["tis_cap"] == 2.0


def test_batch_token_under_two_processes_matches_one(tiny_model: Path, tmp_path: Path):
    """Under `--nproc 2` each process trains on half of every micro-batch; weighted by its share of
    the micro-batch's tokens, the ranks' summed gradient is still DAPO's loss of the whole step.
    Float32 rounding differs between the two runs by ~1e-7 relative (see test_distributed.py);
    weighting the slices by rows instead of tokens gives a first loss of ~0 instead of -0.71."""
    words = [1, 1, 1, 30, 1, 1, 1, 30]
    rows = [{"prompt": f"question {i // 4}", "completion": " ".join(["yes"] * words[i]), "reward": float(i % 2)} for i in range(8)]
    path = write(tmp_path / "rollouts.jsonl", rows)
    flags = ["--model", str(tiny_model), "--data", str(path), "--loss-agg", "batch-token", "--batch-size", "4", "--grad-accum", "2", "--max-steps", "2", "--lr", "1e-2"]
    _, one = run_rl(rl.Config(model=str(tiny_model), data=str(path), output=str(tmp_path / "one"), loss_agg="batch-token", batch_size=4, grad_accum=2, max_steps=2, lr=1e-2))
    two = run_cli("rl", *flags, "--output", str(tmp_path / "two"), "--nproc", "2", env={"TENET_TORCH_THREADS": "1", "OMP_NUM_THREADS": "1"})
    assert two.returncode == 0, two.stderr
    steps = [[(e["loss"], e["grad_norm"]) for e in events if e["event"] == "step"] for events in (one, two.events)]
    assert len(steps[0]) == len(steps[1]) == 2
    for (loss_one, norm_one), (loss_two, norm_two) in zip(*steps):
        assert loss_two == pytest.approx(loss_one, rel=1e-5) and norm_two == pytest.approx(norm_one, rel=1e-5)
