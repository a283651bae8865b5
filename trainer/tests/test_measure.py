"""`kl`: zero for an adapter that changes nothing, positive (k3) once it does, an unbiased k1 on
completions it samples itself, one-line errors."""

import json
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

from conftest import run_cli
from tenet_trainer import data


def _adapter(tiny_model: Path, folder: Path, scale: float) -> Path:
    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model), LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn_like(param) * scale)
    model.save_pretrained(folder)
    return folder


def _rows(path: Path) -> Path:
    rows = [{"prompt": f"Say {w}.", "completion": f"{w} {w} {w}"} for w in ("yes", "no", "tea", "stars")]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_kl_is_zero_for_an_unchanged_policy_and_grows_with_the_adapter(tiny_model: Path, tmp_path: Path):
    data = _rows(tmp_path / "rows.jsonl")
    same = run_cli("kl", "--model", str(tiny_model), "--adapter", str(_adapter(tiny_model, tmp_path / "zero", 0.0)), "--data", str(data))
    assert same.returncode == 0, same.stderr
    zero = same.last("done")["metrics"]
    assert abs(zero["kl_k1"]) < 1e-6 and abs(zero["kl_k3"]) < 1e-6
    assert zero["rows"] == 4 and zero["mean_length"] > 1

    moved = run_cli("kl", "--model", str(tiny_model), "--adapter", str(_adapter(tiny_model, tmp_path / "big", 0.5)), "--data", str(data))
    assert moved.returncode == 0, moved.stderr
    metrics = moved.last("done")["metrics"]
    assert metrics["kl_k3"] > 1e-3
    assert metrics["mean_length"] == zero["mean_length"]


def _first_token_kl(tiny_model: Path, adapter: Path, prompts: list[str]) -> float:
    """Exact KL(π‖π_ref) of the first completion token, averaged over prompts (encoded as the job does)."""
    from peft import PeftModel
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), adapter).eval()
    bos = data.bos_ids(tokenizer)
    total = 0.0
    with torch.no_grad():
        for prompt in prompts:
            ids = torch.tensor([bos + tokenizer(data.render_prompt(tokenizer, [{"role": "user", "content": prompt}]), add_special_tokens=False)["input_ids"]])
            policy = model(input_ids=ids).logits[0, -1].float().log_softmax(-1)
            with model.disable_adapter():
                reference = model(input_ids=ids).logits[0, -1].float().log_softmax(-1)
            total += float((policy.exp() * (policy - reference)).sum())
    return total / len(prompts)


def test_sampled_completions_give_k1_and_k3_near_the_exact_kl(tiny_model: Path, tmp_path: Path):
    adapter = _adapter(tiny_model, tmp_path / "moved", 0.3)
    words = ("yes", "no", "tea", "stars")
    prompts = tmp_path / "prompts.jsonl"  # prompts only: the job writes the completions it measures
    prompts.write_text("".join(json.dumps({"prompt": f"Say {w}."}) + "\n" for w in words))
    exact = _first_token_kl(tiny_model, adapter, [f"Say {w}." for w in words])
    assert exact > 0.01

    sampled = run_cli("kl", "--model", str(tiny_model), "--adapter", str(adapter), "--data", str(prompts), "--samples", "1000", "--max-new-tokens", "1", "--seed", "3")
    assert sampled.returncode == 0, sampled.stderr
    metrics = sampled.last("done")["metrics"]
    assert metrics["sampled"] == 1 and metrics["rows"] == 4000 and metrics["mean_length"] == 1
    # 4000 one-token draws: both estimators land near the exact KL. Over seeds 0-4, k1 fell within
    # 0.92-1.21 of it and k3 within 0.94-1.04, so these bands are about 3.5 standard errors wide.
    assert metrics["kl_k1"] == pytest.approx(exact, rel=0.35)
    assert metrics["kl_k3"] == pytest.approx(exact, rel=0.15)
    again = run_cli("kl", "--model", str(tiny_model), "--adapter", str(adapter), "--data", str(prompts), "--samples", "1000", "--max-new-tokens", "1", "--seed", "3")
    assert again.last("done")["metrics"] == metrics  # seeded: a retried job reports the same numbers


def test_missing_adapter_is_a_one_line_error(tiny_model: Path, tmp_path: Path):
    result = run_cli("kl", "--model", str(tiny_model), "--adapter", str(tmp_path / "none"), "--data", str(_rows(tmp_path / "r.jsonl")))
    assert result.returncode == 2
    assert "no adapter_config.json there" in result.stderr


def test_bad_sampling_settings_and_rows_are_one_line_errors(tiny_model: Path, tmp_path: Path):
    adapter = str(_adapter(tiny_model, tmp_path / "zero", 0.0))
    rows = str(_rows(tmp_path / "r.jsonl"))
    crowded = run_cli("kl", "--model", str(tiny_model), "--adapter", adapter, "--data", rows, "--samples", "2", "--max-new-tokens", "64", "--max-length", "64")
    assert crowded.returncode == 2
    assert "--max-new-tokens 64 leaves no room for the prompt within --max-length 64" in crowded.stderr
    prompts_only = tmp_path / "p.jsonl"
    prompts_only.write_text(json.dumps({"prompt": "Say yes."}) + "\n")
    unsampled = run_cli("kl", "--model", str(tiny_model), "--adapter", adapter, "--data", str(prompts_only))
    assert unsampled.returncode == 2
    assert "p.jsonl:1: missing 'completion'" in unsampled.stderr
