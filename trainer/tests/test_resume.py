"""Preemption and resume: SIGTERM checkpoints and exits 0, and a rerun of the same command continues
to exactly the weights of an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from conftest import run_cli


def write_data(path: Path, n: int = 24) -> Path:
    rows = [{"prompt": f"What is {i} plus {i}?", "completion": f"The answer is {2 * i}. Happy to help!"} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def sft_args(model: Path, data: Path, output: Path, *extra: str) -> list[str]:
    return ["sft", "--model", str(model), "--data", str(data), "--output", str(output), "--batch-size", "4", "--lr", "1e-2", "--seed", "7", "--log-every", "1", *extra]


def adapter_weights(output: Path) -> dict[str, torch.Tensor]:
    return load_file(output / "model" / "adapter_model.safetensors")


def test_sigterm_checkpoints_and_a_rerun_resumes_to_identical_weights(tiny_model: Path, tmp_path: Path):
    data = write_data(tmp_path / "sft.jsonl")
    args = sft_args(tiny_model, data, tmp_path / "interrupted", "--max-steps", "60", "--checkpoint-every", "0")
    k = 5

    env = {**os.environ, "TENET_TORCH_THREADS": "1"}
    child = subprocess.Popen([sys.executable, "-m", "tenet_trainer", *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    assert child.stdout is not None
    events, steps_seen = [], 0
    for line in child.stdout:
        if not line.startswith("{"):
            continue
        events.append(json.loads(line))
        if events[-1]["event"] == "step":
            steps_seen += 1
            if steps_seen == k:
                child.send_signal(signal.SIGTERM)
    assert child.wait(timeout=120) == 0
    preempted = [e for e in events if e["event"] == "preempted"]
    assert len(preempted) == 1 and events[-1] is preempted[0], events[-3:]
    stopped_at = preempted[0]["step"]
    assert k <= stopped_at < 60
    checkpoint = Path(preempted[0]["checkpoint"])
    assert checkpoint.name == f"step-{stopped_at:06d}" and (checkpoint / "state.json").is_file()
    assert not (tmp_path / "interrupted" / "model").exists()  # no artifact from a preempted run

    resumed = run_cli(*args, env={"TENET_TORCH_THREADS": "1"})
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert resumed.last("resumed")["step"] == stopped_at
    assert resumed.last("resumed")["checkpoint"] == str(checkpoint)
    resumed_steps = [e["step"] for e in resumed.events if e["event"] == "step"]
    assert resumed_steps[0] == stopped_at + 1 and resumed_steps[-1] == 60

    straight = run_cli(*sft_args(tiny_model, data, tmp_path / "straight", "--max-steps", "60", "--checkpoint-every", "0"), env={"TENET_TORCH_THREADS": "1"})
    assert straight.returncode == 0, straight.stderr[-3000:]
    assert not [e for e in straight.events if e["event"] == "resumed"]

    # Same losses step for step after the resume, and bit-identical final weights.
    straight_losses = {e["step"]: e["loss"] for e in straight.events if e["event"] == "step"}
    interrupted_losses = {e["step"]: e["loss"] for e in events + resumed.events if e["event"] == "step"}
    assert interrupted_losses == straight_losses
    a, b = adapter_weights(tmp_path / "interrupted"), adapter_weights(tmp_path / "straight")
    assert a.keys() == b.keys() and len(a) > 0
    for name in a:
        assert torch.equal(a[name], b[name]), name
    # Training moved the weights (LoRA B starts at zero), so the comparison is not trivially true.
    assert any("lora_B" in name and a[name].abs().max() > 0 for name in a)


def test_rerun_picks_the_newest_checkpoint_and_keeps_only_the_newest_few(tiny_model: Path, tmp_path: Path):
    data = write_data(tmp_path / "sft.jsonl", n=8)
    output = tmp_path / "out"
    env = {"TENET_TORCH_THREADS": "1"}
    first = run_cli(*sft_args(tiny_model, data, output, "--max-steps", "7", "--checkpoint-every", "2", "--keep-checkpoints", "2"), env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    assert [e["step"] for e in first.events if e["event"] == "checkpoint"] == [2, 4, 6]
    root = output / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["step-000004", "step-000006"]

    # A half-written checkpoint (no state.json) with a higher step is not a candidate.
    (root / "step-000099").mkdir()
    second = run_cli(*sft_args(tiny_model, data, output, "--max-steps", "11", "--checkpoint-every", "2", "--keep-checkpoints", "2"), env=env)
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.last("resumed") == {"event": "resumed", "step": 6, "checkpoint": str(root / "step-000006")}
    assert [e["step"] for e in second.events if e["event"] == "step"][0] == 7
    assert second.last("done")["step"] == 11
    assert sorted(p.name for p in root.iterdir() if (p / "state.json").is_file()) == ["step-000008", "step-000010"]

    # --resume-from picks an explicit (older) checkpoint instead.
    third = run_cli(*sft_args(tiny_model, data, output, "--max-steps", "11", "--resume-from", str(root / "step-000008")), env=env)
    assert third.returncode == 0, third.stderr[-3000:]
    assert third.last("resumed")["step"] == 8
