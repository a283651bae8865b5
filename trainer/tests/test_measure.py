"""`kl`: zero for an adapter that changes nothing, positive (k3) once it does, one-line errors."""

import json
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

from conftest import run_cli


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


def test_missing_adapter_is_a_one_line_error(tiny_model: Path, tmp_path: Path):
    result = run_cli("kl", "--model", str(tiny_model), "--adapter", str(tmp_path / "none"), "--data", str(_rows(tmp_path / "r.jsonl")))
    assert result.returncode == 2
    assert "no adapter_config.json there" in result.stderr
