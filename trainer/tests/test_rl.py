"""`rl`: group-relative advantages, KL estimators, the clipped loss and the length penalty by hand;
then an online loop on the tiny model (sample → score → one `rl` update → chain the adapter) that
raises a verifiable reward while the KL to the base stays under --kl-bound."""

from __future__ import annotations

import contextlib
import io
import json
import math
import string
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from conftest import run_cli
from tenet_trainer import cli, data, rl
from tenet_trainer.models import load_tokenizer

ONE_THREAD = {"TENET_TORCH_THREADS": "1"}
torch.set_num_threads(1)  # two threads on a shared two-core machine are many times slower here


# ---- advantages, estimators, loss ---------------------------------------------------------------


def test_grpo_and_rloo_advantages_on_a_hand_made_group():
    rewards = torch.tensor([1.0, 2.0, 3.0, 6.0, 5.0, 5.0, 7.0])
    groups = ["a", "a", "a", "a", "b", "b", "c"]
    # Group a: mean 3, population std sqrt(14 / 4); group b: all equal; group c: alone (no baseline).
    std = math.sqrt(3.5)
    grpo = rl.group_advantages(rewards, groups, "grpo")
    assert grpo.tolist() == pytest.approx([-2 / (std + 1e-4), -1 / (std + 1e-4), 0.0, 3 / (std + 1e-4), 0.0, 0.0, 0.0], abs=1e-6)
    assert rl.group_advantages(rewards, groups, "grpo", std_scaling=False).tolist() == pytest.approx([-2, -1, 0, 3, 0, 0, 0])
    # RLOO: reward minus the mean of the others: 1 - 11/3, 2 - 10/3, 3 - 9/3, 6 - 6/3.
    rloo = rl.group_advantages(rewards, groups, "rloo")
    assert rloo.tolist() == pytest.approx([1 - 11 / 3, 2 - 10 / 3, 0.0, 4.0, 0.0, 0.0, 0.0], abs=1e-6)


def test_kl_estimators():
    # One token: π = 0.5, π_ref = 0.25.
    k1 = rl.kl_per_token(torch.tensor([math.log(0.5)]), torch.tensor([math.log(0.25)]), "k1")
    k3 = rl.kl_per_token(torch.tensor([math.log(0.5)]), torch.tensor([math.log(0.25)]), "k3")
    assert float(k1) == pytest.approx(math.log(2))
    assert float(k3) == pytest.approx(0.5 + math.log(2) - 1)  # e^{-log 2} - (-log 2) - 1
    # Both are unbiased: their expectation under π is KL(π ‖ π_ref) exactly; k3 is never negative.
    p = torch.tensor([0.6, 0.3, 0.1])
    q = torch.tensor([0.2, 0.5, 0.3])
    exact = float((p * (p / q).log()).sum())
    for estimator in ("k1", "k3"):
        per_outcome = rl.kl_per_token(p.log(), q.log(), estimator)
        assert float((p * per_outcome).sum()) == pytest.approx(exact, abs=1e-6)
    assert bool((rl.kl_per_token(p.log(), q.log(), "k3") >= 0).all())
    assert bool((rl.kl_per_token(p.log(), q.log(), "k1") < 0).any())


def test_clipped_policy_loss_and_length_normalisation():
    logp = torch.log(torch.tensor([[1.5, 0.5, 0.5, 1.0]]))
    old = torch.zeros_like(logp)  # ratios 1.5, 0.5, 0.5, 1
    adv = torch.tensor([[1.0, 1.0, -1.0, 2.0]])
    loss, clipped = rl.ppo_token_loss(logp, old, adv, 0.2)
    # -min(ρA, clip(ρ)A): 1.5·1 → clipped to 1.2; 0.5·1 stays (min); 0.5·-1 → clip 0.8·-1 = -0.8 is the min; 1·2.
    assert loss.tolist()[0] == pytest.approx([-1.2, -0.5, 0.8, -2.0])
    assert clipped.tolist() == [[True, False, True, False]]
    mask = torch.tensor([[True, True, True, False]])
    assert rl.reduce_tokens(loss, mask, "sequence").tolist() == pytest.approx([-0.9])
    assert rl.reduce_tokens(loss, mask, "token").tolist() == pytest.approx([-0.3])


def test_length_penalty_lowers_the_advantage_of_long_completions():
    rewards = torch.tensor([1.0, 1.0, 1.0, 0.0])
    tokens = torch.tensor([10, 100, 400, 10])
    groups = ["g"] * 4
    shaped = rl.shaped_rewards(rewards, tokens, length_penalty=0.5, max_length=512)
    assert shaped.tolist() == pytest.approx([1 - 0.5 * 10 / 512, 1 - 0.5 * 100 / 512, 1 - 0.5 * 400 / 512, -0.5 * 10 / 512])
    for method in ("grpo", "rloo"):
        plain = rl.group_advantages(rewards, groups, method)
        penalised = rl.group_advantages(shaped, groups, method)
        assert plain[0] == pytest.approx(plain[1]) and plain[1] == pytest.approx(plain[2])
        assert penalised[0] > penalised[1] > penalised[2]  # same reward, longer → lower advantage
        assert penalised[2] > penalised[3]  # but a correct long answer still beats a wrong short one


# ---- the online loop ----------------------------------------------------------------------------

PROMPTS = [f"Say something about {w}." for w in ("water", "fire", "earth", "people")]
LORA_TARGETS = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj,lm_head"
"""The tiny model's random embeddings bound its logits to about ±1.3, so only an adapter that also
reaches the output layer can move much probability; a real model does not need lm_head."""


def vowel_reward(text: str) -> float:
    """Verifiable reward: the share of the completion's characters that are vowels."""
    return sum(c in "aeiou" for c in text) / len(text) if text else 0.0


class Sampler:
    """Samples completions from the base or base + adapter with HF generate (seeded). Tokens that
    decode to anything but printable ASCII are suppressed, so completions survive the text round
    trip the rollouts file makes (a byte fragment would decode to U+FFFD and re-encode differently)."""

    def __init__(self, model: Path) -> None:
        self.model = model
        self.tokenizer = load_tokenizer(str(model))
        printable = set(string.ascii_letters + string.digits + " .,!?()'")
        tok = self.tokenizer
        self.suppress = [t for t in range(len(tok)) if t != tok.eos_token_id and (t in tok.all_special_ids or not tok.decode([t]) or not set(tok.decode([t])) <= printable)]

    def __call__(self, adapter: Path | None, per_prompt: int, seed: int) -> list[dict]:
        model = AutoModelForCausalLM.from_pretrained(self.model)
        if adapter is not None:
            model = PeftModel.from_pretrained(model, adapter)
        model.eval()
        torch.manual_seed(seed)
        rows = []
        for prompt in PROMPTS:
            text = data.render_prompt(self.tokenizer, [{"role": "user", "content": prompt}])
            ids = self.tokenizer(text, return_tensors="pt", add_special_tokens=False)
            with torch.no_grad():
                out = model.generate(**ids, do_sample=True, top_k=0, top_p=1.0, max_new_tokens=6, num_return_sequences=per_prompt, suppress_tokens=self.suppress, pad_token_id=self.tokenizer.pad_token_id)
            for generated in out[:, ids["input_ids"].shape[1] :]:
                completion = self.tokenizer.decode(generated, skip_special_tokens=True)
                rows.append({"prompt": prompt, "completion": completion, "reward": vowel_reward(completion), "rewards": {"vowels": vowel_reward(completion)}})
        return rows


def run_rl(config: rl.Config) -> tuple[dict, list[dict]]:
    """One `rl` update in this process: its final metrics and its progress lines."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        metrics = rl.run(config)
    return metrics, [json.loads(line) for line in out.getvalue().splitlines()]


def token_k3(model: Path, adapter: Path, tokenizer, rows: list[dict], max_length: int) -> float:
    """Mean per completion token of exp(ref - π) - (ref - π) - 1, from plain forward passes."""
    base = AutoModelForCausalLM.from_pretrained(model).eval()
    policy = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model), adapter).eval()
    values = []
    for r in rows:
        ids, start = data.encode_prompt_completion(tokenizer, data.render_prompt(tokenizer, [{"role": "user", "content": r["prompt"]}]), r["completion"], max_length)
        x = torch.tensor([ids])
        with torch.no_grad():
            logp = torch.log_softmax(policy(input_ids=x).logits[0].double(), -1)
            ref = torch.log_softmax(base(input_ids=x).logits[0].double(), -1)
        for t in range(start, len(ids)):
            d = float(ref[t - 1, ids[t]] - logp[t - 1, ids[t]])
            values.append(math.exp(d) - d - 1)
    return sum(values) / len(values)


KL_BOUND = 0.5


def online_loop(tiny_model: Path, tmp_path: Path, seed: int = 0, updates: int = 16) -> dict:
    """`updates` chained online updates on the vowel reward, each checked as it lands; returns the
    mean reward of 256 samples (64 per prompt) before and after, and each update's metrics."""
    sample = Sampler(tiny_model)
    before = sample(None, per_prompt=64, seed=1234 + seed)
    adapter: Path | None = None
    history = []
    for iteration in range(updates):
        rows = sample(adapter, per_prompt=8, seed=1000 * seed + iteration)
        rollouts = tmp_path / f"rollouts-{seed}-{iteration}.jsonl"
        rollouts.write_text("".join(json.dumps(r) + "\n" for r in rows))
        output = tmp_path / f"update-{seed}-{iteration}"
        config = rl.Config(
            model=str(tiny_model), data=str(rollouts), output=str(output), adapter=str(adapter) if adapter else None,
            lr=5e-3, batch_size=8, ppo_epochs=2, lora_r=8, lora_target_modules=LORA_TARGETS, kl_coef=0.05, kl_bound=KL_BOUND,
            max_length=128, seed=1000 * seed + iteration, log_every=100,
        )  # fmt: skip
        config.validate()
        metrics, events = run_rl(config)
        # An epoch is kept when it ends within the bound, or no further out than it started (a chained
        # adapter can start above the bound on fresh samples); the first epoch that breaks this is
        # undone and the update stops there.
        measured = [e["metrics"]["kl_k3"] for e in events if e["event"] == "eval" and "kl_bound" in e["metrics"]]
        assert measured
        kept = metrics["kl_k3_before"]
        for i, kl in enumerate(measured):
            broke = kl > max(KL_BOUND, kept)
            assert broke == (metrics["early_stopped"] and i == len(measured) - 1), (iteration, measured, kept)
            kept = kept if broke else kl
        assert metrics["kl_k3"] == pytest.approx(kept, abs=1e-6)
        assert metrics["kl_k3"] <= max(KL_BOUND, metrics["kl_k3_before"]) + 1e-9
        assert metrics["reward_mean"] == pytest.approx(sum(r["reward"] for r in rows) / len(rows))
        assert metrics["reward_mean/vowels"] == pytest.approx(metrics["reward_mean"])
        history.append(metrics)
        adapter = output / "model"
    after = sample(adapter, per_prompt=64, seed=1234 + seed)
    return {
        "before": sum(r["reward"] for r in before) / len(before),
        "after": sum(r["reward"] for r in after) / len(after),
        "history": history,
        "adapter": adapter,
        "rows": rows,
        "tokenizer": sample.tokenizer,
    }


def test_online_updates_raise_a_verifiable_reward_within_the_kl_bound(tiny_model: Path, tmp_path: Path):
    run = online_loop(tiny_model, tmp_path)
    history = run["history"]
    print(f"mean reward {run['before']:.3f} -> {run['after']:.3f}; per update: " + ", ".join(f"r={m['reward_mean']:.3f} kl_k3={m['kl_k3']:.3f}{' (stopped)' if m['early_stopped'] else ''}" for m in history))
    # The KL the trainer reports for the published adapter is the one plain forward passes give.
    assert token_k3(tiny_model, run["adapter"], run["tokenizer"], run["rows"], 128) == pytest.approx(history[-1]["kl_k3"], abs=1e-4)
    # The trajectory turns on float rounding, which differs between CPUs (and kernel paths): another
    # CPU is in effect another seed. SEED SPREAD, measured with trainer/tests/rl_seed_spread.py over
    # seeds 0-7 under ATEN_CPU_CAPABILITY=default, avx2 and avx512 (24 trajectories, one AMD EPYC):
    #   gain (after - before)  mean 0.132, sd 0.019, min 0.093 (per path: 0.132 / 0.122 / 0.143);
    #   final kl_k3            min 0.40.
    # The gain threshold, 0.04, sits 4.8 sd under that mean, so a CPU whose rounding sends the run
    # down another trajectory still passes, while a trainer that stops learning fails: with no
    # learning the gain is 0 ± 0.008 (one standard error of the difference of two 256-sample means
    # of a reward whose per-sample sd is 0.092 at the base), five of which stay under 0.04.
    assert run["after"] - run["before"] > 0.04
    assert history[-1]["kl_k3"] > 0.05  # the policy did move away from the base


# ---- the command ---------------------------------------------------------------------------------


def write_rollouts(path: Path, n_groups: int = 2, per_group: int = 4) -> None:
    rows = []
    for g in range(n_groups):
        for i in range(per_group):
            completion = "yes " * (i + 1)
            rows.append({"prompt": f"question {g}", "completion": completion.strip(), "reward": float(i % 2), "rewards": {"judge": float(i % 2)}})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_kl_bound_stops_early_and_undoes_the_epoch(tiny_model: Path, tmp_path: Path):
    rollouts = tmp_path / "rollouts.jsonl"
    write_rollouts(rollouts)
    out = tmp_path / "out"
    result = run_cli(
        "rl", "--model", str(tiny_model), "--data", str(rollouts), "--output", str(out), "--lr", "5e-2", "--batch-size", "4",
        "--ppo-epochs", "3", "--kl-bound", "1e-6", "--advantage", "rloo", "--length-penalty", "0.5", "--length-norm", "sequence",
        env=ONE_THREAD,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    metrics = result.last("done")["metrics"]
    assert metrics["early_stopped"] is True and metrics["stopped_at_epoch"] == 1
    assert metrics["steps"] == 0 and metrics["epochs_done"] == 0
    # Undone: the published adapter is the fresh one (B = 0), so its KL to the base is 0.
    assert metrics["kl_k1"] == pytest.approx(0.0, abs=1e-7) and metrics["kl_k3"] == pytest.approx(0.0, abs=1e-7)
    weights = load_file(str(out / "model" / "adapter_model.safetensors"))
    assert all(float(w.abs().max()) == 0.0 for name, w in weights.items() if "lora_B" in name)
    eval_event = next(e for e in result.events if e["event"] == "eval" and "kl_bound" in e["metrics"])
    assert eval_event["metrics"]["kl_k3"] > 1e-6
    assert metrics["shaped_reward_mean"] < metrics["reward_mean"]  # the length penalty applied
    assert metrics["reward_mean/judge"] == pytest.approx(0.5)


def test_resuming_mid_update_gives_the_uninterrupted_adapter(tiny_model: Path, tmp_path: Path):
    """Old log-probs are those of the policy the update started from, not of the checkpoint resumed."""
    rollouts = tmp_path / "rollouts.jsonl"
    write_rollouts(rollouts)

    def config(output: Path, **extra) -> rl.Config:
        return rl.Config(model=str(tiny_model), data=str(rollouts), output=str(output), lr=2e-2, batch_size=4, ppo_epochs=2, checkpoint_every=2, log_every=100, **extra)

    whole, _ = run_rl(config(tmp_path / "whole"))
    checkpoint = tmp_path / "whole" / "checkpoints" / "step-000002"
    assert checkpoint.is_dir() and whole["steps"] == 4
    resumed, events = run_rl(config(tmp_path / "resumed", resume_from=str(checkpoint)))
    assert [e["step"] for e in events if e["event"] == "step"] == [3, 4]
    a = load_file(str(tmp_path / "whole" / "model" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "model" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and any(float(w.abs().max()) > 0 for name, w in a.items() if "lora_B" in name)
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-6)
    assert resumed["kl_k3"] == pytest.approx(whole["kl_k3"], abs=1e-6)


def test_bad_rollouts_exit_2_naming_file_and_line(tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    rollouts = tmp_path / "rollouts.jsonl"
    rollouts.write_text(json.dumps({"prompt": "p", "completion": "c", "reward": 1}) + "\n" + json.dumps({"prompt": "p", "completion": "c", "reward": "high"}) + "\n")
    result = run_cli("rl", "--model", str(tiny_model), "--data", str(rollouts), "--output", str(tmp_path / "out"), env=ONE_THREAD)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: {rollouts}:2: reward: expected a number, got 'high'"]

    # The same entry point in this process (no interpreter start-up): one line, exit status 2.
    rollouts.write_text("".join(json.dumps({"prompt": f"p{i}", "completion": "c", "reward": 1}) + "\n" for i in range(3)))
    assert cli.main(["rl", "--model", str(tiny_model), "--data", str(rollouts), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "every group has one rollout" in err[0]
    assert cli.main(["rl", "--model", str(tiny_model), "--data", str(rollouts), "--output", str(tmp_path / "out"), "--epochs", "2"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == ["error: --epochs: not used by rl; set --ppo-epochs"]
