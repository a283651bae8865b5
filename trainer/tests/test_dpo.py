"""`dpo` on the tiny model: it learns a prompt-conditional preference, its first-step loss equals the
closed-form DPO / IPO / cDPO loss computed here from independent forward passes, the reference is
the base with adapters disabled even when starting from --adapter, and bad data exits 2."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, PeftModel, TaskType, get_peft_model
from transformers import AutoModelForCausalLM

from conftest import run_cli
from tenet_trainer import cli, data
from tenet_trainer.models import load_tokenizer

# Two threads on a shared two-core machine are many times slower than one for a model this small.
ONE_THREAD = {"TENET_TORCH_THREADS": "1"}
torch.set_num_threads(1)

THINGS = "water fire earth people code story poem number".split()


def write_pairs(path: Path, n: int, soft: bool = False) -> list[dict]:
    """Prompts that ask for yes or no; the chosen answer follows the prompt, the rejected one does not."""
    rows = []
    for i in range(n):
        yes = i % 2 == 0
        prompt = f"Is {THINGS[i % len(THINGS)]} {['good', 'safe', 'kind'][i % 3]}? Answer {'yes' if yes else 'no'}."
        chosen, rejected = ("yes, it is.", "no, it is not.") if yes else ("no, it is not.", "yes, it is.")
        row = {"prompt": prompt, "chosen": chosen, "rejected": rejected}
        if soft:
            row["soft_label"] = round(0.55 + 0.45 * (i % 5) / 4, 3)
        rows.append(row)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


def completion_logprob(model: torch.nn.Module, tokenizer, prompt: str, completion: str) -> float:
    """Sum of log p(completion token | prefix) over the completion (EOS included), one unpadded sequence."""
    ids, start = data.encode_prompt_completion(tokenizer, data.render_prompt(tokenizer, [{"role": "user", "content": prompt}]), completion, 512)
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0].double()
    logp = torch.log_softmax(logits, dim=-1)
    return sum(float(logp[t - 1, ids[t]]) for t in range(start, len(ids)))


@pytest.fixture(scope="module")
def random_adapter(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA adapter whose A and B are both random, so policy != reference from the first step."""
    torch.manual_seed(7)
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    config = LoraConfig(task_type=TaskType.CAUSAL_LM, r=4, lora_alpha=16, target_modules=["q_proj", "v_proj", "o_proj", "down_proj"], init_lora_weights=False)
    folder = tmp_path_factory.mktemp("adapter") / "start"
    get_peft_model(base, config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def pair_logprobs(tiny_model: Path, random_adapter: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict], list[tuple[float, float, float, float]]]:
    """Pairs with soft labels, and for each (π chosen, π rejected, ref chosen, ref rejected) computed here."""
    path = tmp_path_factory.mktemp("pairs") / "pairs.jsonl"
    rows = write_pairs(path, 12, soft=True)
    tokenizer = load_tokenizer(str(tiny_model))
    reference = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    policy = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), random_adapter).eval()
    values = [
        (
            completion_logprob(policy, tokenizer, r["prompt"], r["chosen"]),
            completion_logprob(policy, tokenizer, r["prompt"], r["rejected"]),
            completion_logprob(reference, tokenizer, r["prompt"], r["chosen"]),
            completion_logprob(reference, tokenizer, r["prompt"], r["rejected"]),
        )
        for r in rows
    ]
    return path, rows, values


def log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


def closed_form(variant: str, h: float, beta: float, soft_label: float) -> float:
    """The published losses, written out from the papers' formulas."""
    if variant == "dpo":  # Rafailov et al.: -log σ(β h)
        return -log_sigmoid(beta * h)
    if variant == "ipo":  # Azar et al.: (h - 1/(2β))²
        return (h - 1 / (2 * beta)) ** 2
    if variant == "cdpo":  # conservative DPO, ε = 0.2: (1-ε)(-log σ(βh)) + ε(-log σ(-βh))
        return 0.8 * -log_sigmoid(beta * h) + 0.2 * -log_sigmoid(-beta * h)
    if variant == "soft":  # soft label p: p(-log σ(βh)) + (1-p)(-log σ(-βh))
        return soft_label * -log_sigmoid(beta * h) + (1 - soft_label) * -log_sigmoid(-beta * h)
    raise ValueError(variant)


FLAGS = {
    "dpo": ["--loss", "sigmoid"],
    "ipo": ["--loss", "ipo"],
    "cdpo": ["--loss", "sigmoid", "--label-smoothing", "0.2"],
    "soft": ["--loss", "sigmoid", "--soft-labels"],
}


@pytest.mark.parametrize("variant", list(FLAGS))
def test_first_step_loss_matches_the_closed_form(variant: str, tiny_model: Path, random_adapter: Path, pair_logprobs, tmp_path: Path):
    path, rows, values = pair_logprobs
    beta = 0.5
    margins = [(pc - rc) - (pr - rr) for pc, pr, rc, rr in values]
    # The adapter really moves the policy away from the base, and not uniformly across pairs.
    assert max(abs(h) for h in margins) > 0.5 and len({round(h, 3) for h in margins}) > 6
    expected = sum(closed_form(variant, h, beta, r["soft_label"]) for h, r in zip(margins, rows)) / len(rows)
    expected_accuracy = sum(h > 0 for h in margins) / len(rows)

    # batch size = all pairs: the first step's loss is the mean over every pair, whatever the order.
    result = run_cli(
        "dpo", "--model", str(tiny_model), "--data", str(path), "--output", str(tmp_path / "out"), "--adapter", str(random_adapter),
        "--beta", str(beta), "--batch-size", str(len(rows)), "--max-steps", "1", "--lr", "1e-3", *FLAGS[variant],
        env=ONE_THREAD,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    first = next(e for e in result.events if e["event"] == "step")
    assert first["step"] == 1
    print(f"{variant}: first-step loss {first['loss']:.7f}, closed form {expected:.7f}, margins {[round(h, 3) for h in margins]}")
    assert first["loss"] == pytest.approx(expected, abs=1e-5)
    assert first["metrics"]["accuracy"] == pytest.approx(expected_accuracy)
    assert first["metrics"]["margin"] == pytest.approx(beta * sum(margins) / len(rows), abs=1e-5)
    assert first["metrics"]["chosen_reward"] == pytest.approx(beta * sum(pc - rc for pc, _, rc, _ in values) / len(rows), abs=1e-5)
    assert (tmp_path / "out" / "model" / "adapter_config.json").is_file()


def test_dpo_learns_the_preference(tiny_model: Path, tmp_path: Path):
    path = tmp_path / "pairs.jsonl"
    rows = write_pairs(path, 32)
    out = tmp_path / "out"
    result = run_cli(
        "dpo", "--model", str(tiny_model), "--data", str(path), "--output", str(out),
        "--batch-size", "8", "--max-steps", "60", "--lr", "1e-2", "--lora-r", "8", "--beta", "0.1",
        "--eval-fraction", "0.25", "--log-every", "10",
        env=ONE_THREAD,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    steps = [e for e in result.events if e["event"] == "step"]
    assert steps[0]["metrics"]["accuracy"] < 0.9  # it starts out not knowing
    metrics = result.last("done")["metrics"]
    print(f"train accuracy {metrics['train_accuracy']}, held-out accuracy {metrics['eval_accuracy']}, margin {metrics['train_margin']:.4f}")
    assert metrics["train_pairs"] == 24 and metrics["eval_pairs"] == 8
    assert metrics["train_accuracy"] >= 0.95
    assert metrics["train_loss"] < math.log(2) < steps[0]["loss"] + 1e-6

    # The artifact is a peft adapter plus tokenizer; loaded on the base, it ranks the pairs as reported.
    artifact = out / "model"
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "tenet-metrics.json"):
        assert (artifact / name).is_file(), name
    tokenizer = load_tokenizer(str(artifact))
    reference = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    policy = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), artifact).eval()
    right = 0
    for r in rows:
        chosen = completion_logprob(policy, tokenizer, r["prompt"], r["chosen"]) - completion_logprob(reference, tokenizer, r["prompt"], r["chosen"])
        rejected = completion_logprob(policy, tokenizer, r["prompt"], r["rejected"]) - completion_logprob(reference, tokenizer, r["prompt"], r["rejected"])
        right += chosen > rejected
    assert right / len(rows) >= 0.95


def test_bad_data_names_file_and_line(tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps({"prompt": "p", "chosen": "a", "rejected": "b"}) + "\n" + json.dumps({"prompt": "p", "chosen": "a", "rejected": "b", "soft_label": 1.5}) + "\n")
    result = run_cli("dpo", "--model", str(tiny_model), "--data", str(path), "--output", str(tmp_path / "out"), env=ONE_THREAD)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: {path}:2: soft_label: expected a probability in [0, 1], got 1.5"]

    # The same entry point in this process (no interpreter start-up): one line, exit status 2.
    path.write_text(json.dumps({"prompt": "p", "chosen": "a"}) + "\n")
    assert cli.main(["dpo", "--model", str(tiny_model), "--data", str(path), "--output", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"error: {path}:1: missing 'rejected'"]
    assert cli.main(["dpo", "--model", str(tiny_model), "--data", str(path), "--output", str(tmp_path / "out"), "--label-smoothing", "0.5"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == ["error: --label-smoothing: must be in [0, 0.5)"]
