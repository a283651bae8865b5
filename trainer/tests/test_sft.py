"""`sft`: completion-only causal-LM loss, LoRA adapter (or full model) artifacts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from conftest import run_cli
from tenet_trainer import cli
from tenet_trainer.data import SftExample
from tenet_trainer.sft import IGNORE, collate, completion_loss, encode_rows


def sft_rows(n: int) -> list[dict]:
    rows = []
    for i in range(n):
        if i % 2:
            rows.append({"prompt": f"What is {i} plus {i}?", "completion": f"The answer is {2 * i}. Happy to help!"})
        else:
            rows.append({"messages": [{"role": "system", "content": "Be kind."}, {"role": "user", "content": f"Say thank you {i} times."}, {"role": "assistant", "content": "Thank you! Thank you! Happy to help!"}]})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def mean_completion_loss(model: torch.nn.Module, tokenizer, rows: list[dict]) -> float:
    """Token-weighted completion loss over `rows`, computed here from the artifact, not from the CLI."""
    examples = []
    for row in rows:
        if "messages" in row:
            examples.append(SftExample(prompt=row["messages"][:-1], completion=row["messages"][-1]["content"]))
        else:
            examples.append(SftExample(prompt=[{"role": "user", "content": row["prompt"]}], completion=row["completion"]))
    with torch.no_grad():
        total, tokens = completion_loss(model.eval(), encode_rows(tokenizer, examples, 512), tokenizer.pad_token_id, torch.device("cpu"))
    return float(total) / tokens


def test_collate_counts_only_completion_tokens():
    input_ids, attention_mask, labels = collate([([5, 6, 7, 8], 2), ([9, 10], 1)], pad_id=0)
    assert input_ids.tolist() == [[5, 6, 7, 8], [9, 10, 0, 0]]
    assert attention_mask.tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert labels.tolist() == [[IGNORE, IGNORE, 7, 8], [IGNORE, 10, IGNORE, IGNORE]]


def test_completion_loss_ignores_the_prompt(tiny_model: Path):
    """Changing the prompt's tokens changes the loss only through the context, never by counting them."""
    model = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    with torch.no_grad():
        total, tokens = completion_loss(model, [([10, 11, 12, 13, 14], 3)], pad_id=0, device=torch.device("cpu"))
        logits = model(input_ids=torch.tensor([[10, 11, 12, 13, 14]])).logits[0]
    assert tokens == 2
    by_hand = -(torch.log_softmax(logits[2], -1)[13] + torch.log_softmax(logits[3], -1)[14])
    assert float(total) == pytest.approx(float(by_hand), rel=1e-5)


def test_lora_sft_lowers_the_training_loss_and_writes_a_loadable_adapter(tiny_model: Path, tmp_path: Path):
    rows = sft_rows(24)
    data = write_jsonl(tmp_path / "sft.jsonl", rows)
    out = tmp_path / "out"
    result = run_cli("sft", "--model", str(tiny_model), "--data", str(data), "--output", str(out), "--max-steps", "40", "--batch-size", "4", "--lr", "1e-2", "--eval-fraction", "0.25", "--log-every", "10")
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = result.last("done")["metrics"]
    assert set(metrics) >= {"train_loss", "eval_loss", "eval_rows"} and metrics["eval_rows"] == 6
    steps = [e for e in result.events if e["event"] == "step"]
    assert steps[-1]["loss"] < steps[0]["loss"]

    artifact = out / "model"
    assert (artifact / "adapter_config.json").is_file() and (artifact / "adapter_model.safetensors").is_file()
    assert not (artifact / "model.safetensors").exists()  # an adapter, not a full copy
    adapter_config = json.loads((artifact / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == str(tiny_model) and adapter_config["task_type"] == "CAUSAL_LM"
    assert any("lora_B" in k and v.abs().max() > 0 for k, v in load_file(artifact / "adapter_model.safetensors").items())

    tokenizer = AutoTokenizer.from_pretrained(artifact)
    base_loss = mean_completion_loss(AutoModelForCausalLM.from_pretrained(tiny_model), tokenizer, rows)
    tuned = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), artifact)
    tuned_loss = mean_completion_loss(tuned, tokenizer, rows)
    assert tuned_loss < base_loss - 0.5, (base_loss, tuned_loss)


def test_full_finetune_writes_a_whole_model(tiny_model: Path, tmp_path: Path):
    rows = sft_rows(8)
    data = write_jsonl(tmp_path / "sft.jsonl", rows)
    held = write_jsonl(tmp_path / "held.jsonl", sft_rows(3))
    result = run_cli("sft", "--model", str(tiny_model), "--data", str(data), "--eval-data", str(held), "--output", str(tmp_path / "out"), "--max-steps", "15", "--batch-size", "4", "--lr", "3e-3", "--full-finetune")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.last("done")["metrics"]["eval_rows"] == 3
    artifact = tmp_path / "out" / "model"
    assert not (artifact / "adapter_config.json").exists()
    tokenizer = AutoTokenizer.from_pretrained(artifact)
    tuned_loss = mean_completion_loss(AutoModelForCausalLM.from_pretrained(artifact), tokenizer, rows)
    base_loss = mean_completion_loss(AutoModelForCausalLM.from_pretrained(tiny_model), tokenizer, rows)
    assert tuned_loss < base_loss - 0.5, (base_loss, tuned_loss)


def test_bad_sft_data_names_file_and_line(tiny_model: Path, tmp_path: Path, capsys):
    data = tmp_path / "sft.jsonl"
    data.write_text(json.dumps(sft_rows(1)[0]) + "\n" + json.dumps({"messages": [{"role": "user", "content": "no answer"}]}) + "\n")
    assert cli.main(["sft", "--model", str(tiny_model), "--data", str(data), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"error: {data}:2: messages: expected prompt messages followed by an assistant message"
