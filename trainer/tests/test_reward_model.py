"""`reward-model`: a Bradley–Terry reward model that learns a principle from preferences, and an ONNX
artifact that Python (onnxruntime) and Node (onnxruntime-node + npm `tokenizers`) score identically."""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from tokenizers import Tokenizer
from transformers import AutoModelForSequenceClassification

from conftest import CliResult, run_cli
from tenet_trainer import cli, reward_model
from tenet_trainer.reward_model import bradley_terry_loss, expected_calibration_error, preference_metrics, score_texts

REPO = Path(__file__).resolve().parents[2]

# ---------------------------------------------------------------------------------------------
# A preference set for one principle, "be polite and actually help". Held-out rows use other
# topics and other polite/rude wording, and rejected answers are as long as chosen ones as often
# as not, so neither memorised phrases nor length can pass.

TRAIN_TOPICS = [
    ("How do I boil an egg?", "Put the egg in boiling water for about nine minutes, then cool it in cold water."),
    ("How can I reset my router?", "Hold the small reset button on the back for ten seconds until the lights blink."),
    ("What's a good way to start learning Spanish?", "Practise a few minutes every day with a course and read short stories aloud."),
    ("How do I remove a coffee stain from a shirt?", "Blot it, rinse with cold water, then rub in a little dish soap before washing."),
    ("Can you explain what a prime number is?", "A prime number has exactly two divisors, one and itself, like 2, 3, 5 and 7."),
    ("How should I water a cactus?", "Water it deeply only when the soil is completely dry, roughly every two weeks."),
    ("How do I write a cover letter?", "Open with the role you want, show two achievements that fit it, and close with thanks."),
    ("Why does bread go stale?", "The starch in bread recrystallises and loses moisture as it sits out."),
    ("How do I change a bike tyre?", "Release the brake, take the wheel off, lever the tyre away, swap the tube and pump it up."),
    ("What is the capital of Australia?", "The capital of Australia is Canberra."),
    ("How can I sleep better?", "Keep a regular bedtime, avoid screens late at night and keep the room cool and dark."),
    ("How do I sort a list in Python?", "Call sorted(my_list) for a new list, or my_list.sort() to sort it in place."),
    ("How long should I rest between workouts?", "Give each muscle group about forty-eight hours before training it hard again."),
    ("How do I make a budget?", "List your income, write down fixed costs, then set limits for food, fun and savings."),
    ("What causes rainbows?", "Sunlight is refracted and reflected inside raindrops, which splits it into colours."),
]
HELD_TOPICS = [
    ("How do I unclog a kitchen sink?", "Pour in hot water, then use a plunger, and clear the trap under the sink if needed."),
    ("What should I pack for a day hike?", "Bring water, snacks, a map, sunscreen, a rain layer and a charged phone."),
    ("How can I improve my handwriting?", "Slow down, hold the pen loosely and copy a few lines of careful print daily."),
    ("Could you tell me how photosynthesis works?", "Plants use light energy to turn carbon dioxide and water into sugar and oxygen."),
    ("How do I back up my photos?", "Copy them to an external drive and also turn on an automatic cloud backup."),
    ("How do I calm down before an exam?", "Breathe slowly, review your summary notes and get a good night's sleep beforehand."),
    ("Which way should I tighten a screw?", "Turn it clockwise to tighten it and anticlockwise to loosen it."),
    ("How do I keep basil alive indoors?", "Give it a sunny window, water when the top soil is dry and pinch off the flowers."),
    ("What's the best way to memorise a speech?", "Learn it section by section, rehearse out loud and practise in front of a friend."),
    ("How do I defrost a freezer?", "Switch it off, empty it, leave the door open with towels below and wipe it dry."),
]
TRAIN_STYLE = {
    "polite": ["Happy to help!", "Great question.", "Sure, here's how.", "Thanks for asking!", "Of course.", "Glad you asked."],
    "polite_end": ["", " Hope that helps!", " Let me know if you have more questions.", " Good luck!"],
    "rude": ["Ugh, figure it out yourself.", "That's a stupid question.", "Not my problem.", "Seriously? Everyone knows this.", "Whatever, fine.", "Stop wasting my time."],
    "rude_end": ["", " Don't ask me again, this is beneath me.", " Idiot.", " Obviously, anyone with half a brain would know."],
    "refuse": ["I won't answer that.", "Sorry, I can't help with that.", "Look it up somewhere else.", "No comment."],
}
HELD_STYLE = {
    "polite": ["Absolutely, I'd be glad to walk you through it.", "What a thoughtful thing to ask!", "Certainly, here is a simple approach.", "No problem at all, friend."],
    "polite_end": [" Take care!", " Feel free to ask anything else.", " Wishing you the best with it.", ""],
    "rude": ["Are you kidding me? This is pathetic.", "Go bother someone else, moron.", "How dumb can you be?", "I couldn't care less about your problem."],
    "rude_end": [" Now leave me alone and never bother me with such garbage again.", " Pathetic.", " Shut up already, you are wasting everyone's time.", ""],
    "refuse": ["Not going to bother explaining that.", "Ask someone who cares.", "Nope, figure it out."],
}


def principle_pairs(topics: list[tuple[str, str]], style: dict[str, list[str]], n: int, seed: int) -> list[dict[str, Any]]:
    r = random.Random(seed)
    rows = []
    for _ in range(n):
        question, answer = r.choice(topics)
        chosen = f"{r.choice(style['polite'])} {answer}{r.choice(style['polite_end'])}"
        kind = r.random()
        if kind < 0.6:  # rude, but it answers
            rejected = f"{r.choice(style['rude'])} {answer}{r.choice(style['rude_end'])}"
        elif kind < 0.85:  # a rude rant and no answer
            rejected = " ".join(r.sample(style["rude"], 3)) + r.choice(style["rude_end"])
        else:  # a flat refusal
            rejected = r.choice(style["refuse"])
        prompt: Any = question if r.random() < 0.5 else [{"role": "system", "content": "You are an assistant."}, {"role": "user", "content": question}]
        rows.append({"prompt": prompt, "chosen": chosen, "rejected": rejected, "soft_label": r.choice([1.0, 0.9, 0.8])})
    return rows


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def onnx_accuracy(artifact: Path, rows: list[dict[str, Any]]) -> tuple[float, np.ndarray, np.ndarray]:
    chosen = score_texts(artifact, [(r["prompt"], r["chosen"]) for r in rows])
    rejected = score_texts(artifact, [{"prompt": r["prompt"], "completion": r["rejected"]} for r in rows])
    return float(np.mean(chosen > rejected)), chosen, rejected


# ---------------------------------------------------------------------------------------------
# Runs shared by the tests below


@pytest.fixture(scope="module")
def minilm_run(minilm_path: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[CliResult, Path, list[dict[str, Any]]]:
    """all-MiniLM-L6-v2 + LoRA, 16 steps of 8 pairs, evaluated on the held-out principle set."""
    folder = tmp_path_factory.mktemp("rm-minilm")
    train = write_jsonl(folder / "train.jsonl", principle_pairs(TRAIN_TOPICS, TRAIN_STYLE, 160, seed=1))
    held_rows = principle_pairs(HELD_TOPICS, HELD_STYLE, 60, seed=2)
    held = write_jsonl(folder / "held.jsonl", held_rows)
    result = run_cli(
        "reward-model", "--model", str(minilm_path), "--data", str(train), "--eval-data", str(held), "--output", str(folder / "out"),
        "--max-steps", "16", "--batch-size", "8", "--lr", "2e-3", "--lora-r", "8", "--max-length", "128", "--log-every", "4",
        env={"TENET_TORCH_THREADS": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return result, folder / "out" / "model", held_rows


@pytest.fixture(scope="module")
def causal_run(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[CliResult, Path]:
    """The tiny Llama: last-token pooling, single-text input with the EOS suffix; every weight trained,
    in bf16 (the export must still be fp32), with a margin."""
    folder = tmp_path_factory.mktemp("rm-causal")
    train = write_jsonl(folder / "train.jsonl", principle_pairs(TRAIN_TOPICS, TRAIN_STYLE, 64, seed=3))
    result = run_cli(
        "reward-model", "--model", str(tiny_model), "--data", str(train), "--output", str(folder / "out"),
        "--max-steps", "12", "--batch-size", "8", "--lr", "3e-3", "--max-length", "48", "--eval-fraction", "0.125",
        "--full-finetune", "--dtype", "bf16", "--margin", "0.5",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return result, folder / "out" / "model"


# ---------------------------------------------------------------------------------------------
# Learning


def test_held_out_principle_accuracy_reported_and_recomputed_through_onnx(minilm_run):
    result, artifact, held_rows = minilm_run
    metrics = result.last("done")["metrics"]
    assert metrics["eval_pairs"] == len(held_rows) == 60
    assert metrics["accuracy"] >= 0.9, metrics
    assert metrics["mean_margin"] > 0
    # Length alone does not separate the held-out pairs: the model learnt the principle.
    assert np.mean([len(r["chosen"]) > len(r["rejected"]) for r in held_rows]) < 0.7

    accuracy, chosen, rejected = onnx_accuracy(artifact, held_rows)
    assert accuracy >= 0.9
    assert abs(accuracy - metrics["accuracy"]) <= 1 / len(held_rows)
    # The reported margin and calibration are those of these scores.
    soft = np.array([r["soft_label"] for r in held_rows])
    recomputed = preference_metrics(chosen, rejected, soft)
    for key in ("mean_margin", "brier_soft", "brier_hard", "ece_soft", "ece_hard", "eval_loss"):
        assert recomputed[key] == pytest.approx(metrics[key], abs=1e-3), key
    # Training made progress on its own batches too.
    steps = [e for e in result.events if e["event"] == "step"]
    assert steps[-1]["loss"] < steps[0]["loss"] - 0.2


def test_causal_lm_reward_model_trains_and_exports(causal_run):
    result, artifact = causal_run
    steps = [e for e in result.events if e["event"] == "step"]
    assert len(steps) == 12 and steps[-1]["loss"] < steps[0]["loss"]
    assert result.last("done")["metrics"]["eval_pairs"] == 8
    hyperparameters = result.last("start")["hyperparameters"]
    assert hyperparameters["margin"] == 0.5 and hyperparameters["full_finetune"] is True
    assert hyperparameters["parameters"]["trainable"] == hyperparameters["parameters"]["total"]
    assert not (artifact / "adapter").exists()
    assert json.loads((artifact / "hf" / "config.json").read_text())["dtype"] == "float32"
    config = json.loads((artifact / "reward-config.json").read_text())
    assert config["pair"] is False
    assert config["inputs"] == ["input_ids", "attention_mask"]
    assert config["separator"] == "\nassistant: " and config["suffix"] == "<|im_end|>"
    assert config["max_length"] == 48


# ---------------------------------------------------------------------------------------------
# The artifact contract


def test_artifact_holds_the_documented_files_and_config(minilm_run, minilm_path: Path):
    result, artifact, _ = minilm_run
    assert result.last("done")["output"] == str(artifact)
    for name in ("reward.onnx", "tokenizer.json", "reward-config.json", "tenet-metrics.json", "hf/config.json", "hf/model.safetensors", "adapter/adapter_config.json"):
        assert (artifact / name).is_file(), name
    config = json.loads((artifact / "reward-config.json").read_text())
    assert config == {
        "format": "tenet-reward/1",
        "inputs": ["input_ids", "attention_mask", "token_type_ids"],
        "output": "score",
        "max_length": 128,
        "pair": True,
        "pad_id": 0,
        "prompt_format": "plain",
        "base_model": str(minilm_path),
    }
    saved = json.loads((artifact / "tokenizer.json").read_text())
    assert saved["truncation"] == {"direction": "Right", "max_length": 128, "strategy": "LongestFirst", "stride": 0}
    assert saved["padding"]["strategy"] == "BatchLongest" and saved["padding"]["direction"] == "Right" and saved["padding"]["pad_id"] == 0

    graph = onnx.load(str(artifact / "reward.onnx"))
    assert max(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")) >= 17
    inputs = {i.name: i.type.tensor_type for i in graph.graph.input}
    assert list(inputs) == config["inputs"]
    for tensor in inputs.values():
        assert tensor.elem_type == onnx.TensorProto.INT64
        assert [d.dim_param for d in tensor.shape.dim] == ["batch", "sequence"]
    [output] = graph.graph.output
    assert output.name == "score" and output.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert [d.dim_param for d in output.type.tensor_type.shape.dim] == ["batch"]
    assert result.last("export")["parity_max_abs_diff"] <= 1e-4


def test_tokenizer_json_alone_truncates_and_pads(minilm_run):
    _, artifact, _ = minilm_run
    tokenizer = Tokenizer.from_file(str(artifact / "tokenizer.json"))
    short, long = tokenizer.encode_batch([("user: hi", "hello"), ("user: " + "why? " * 200, "because " * 200)])
    assert len(short.ids) == len(long.ids) == 128
    assert short.attention_mask.count(1) == 7 and short.ids[7:] == [0] * 121  # [CLS] user : hi [SEP] hello [SEP]
    # longest_first keeps both texts: [CLS] prompt [SEP] completion [SEP], segments 0 then 1.
    assert long.ids.count(102) == 2 and long.type_ids[-1] == 1 and long.type_ids[1] == 0


def _padded_batches(rows: list[dict[str, Any]]) -> list[list[tuple[Any, str]]]:
    texts = [(r["prompt"], r["chosen"]) for r in rows] + [(r["prompt"], r["rejected"]) for r in rows]
    huge = ("Tell me everything. " * 80, "Well. " * 300)  # longer than max_length: truncated
    return [texts[:1], [texts[3], huge, texts[5]], texts[7:14], [("a", "b"), texts[20]]]


@pytest.mark.parametrize("which", ["minilm", "causal"])
def test_onnx_matches_pytorch_on_padded_batches(which, request):
    if which == "minilm":
        _, artifact, rows = request.getfixturevalue("minilm_run")
    else:
        _, artifact = request.getfixturevalue("causal_run")
        rows = principle_pairs(HELD_TOPICS, HELD_STYLE, 20, seed=4)
    scorer = reward_model.RewardScorer(artifact)
    model = AutoModelForSequenceClassification.from_pretrained(artifact / "hf").eval()
    worst = 0.0
    for batch in _padded_batches(rows):
        inputs = reward_model.encode(scorer.tokenizer, scorer.format, [scorer.format.text(p, c) for p, c in batch])
        with torch.no_grad():
            expected = model(**{k: torch.from_numpy(v) for k, v in inputs.items()}).logits[:, 0].numpy()
        got = scorer.score(batch)
        assert got.shape == (len(batch),) and got.dtype == np.float32
        worst = max(worst, float(np.abs(expected - got).max()))
        # Padding does not change a row's score: each row alone scores the same.
        alone = np.array([scorer.score([row])[0] for row in batch])
        assert np.abs(alone - got).max() <= 1e-4
    assert worst <= 1e-4
    # The scores are not constant: the parity check compares something.
    scores = scorer.score(_padded_batches(rows)[2])
    assert np.ptp(scores) > 1e-3


def test_causal_score_is_read_at_the_last_token(causal_run):
    """Last-token pooling: the same text with a different last word scores differently, and the
    EOS suffix is always kept (truncation cuts the prompt from the left)."""
    _, artifact = causal_run
    scorer = reward_model.RewardScorer(artifact)
    a, b = scorer.score([("Hi", "Happy to help!"), ("Hi", "Happy to help?")])
    assert a != b
    text = scorer.format.text("Tell me everything. " * 50, "Sure.")
    ids = scorer.tokenizer.encode(text).ids
    assert len(ids) == 48 and ids[-1] == scorer.tokenizer.token_to_id("<|im_end|>")


NODE_SCRIPT = r"""
const { Tokenizer } = require("tokenizers");
const ort = require("onnxruntime-node");
const fs = require("fs");
(async () => {
  const [dir, textsFile] = process.argv.slice(2);
  const config = JSON.parse(fs.readFileSync(dir + "/reward-config.json", "utf8"));
  const texts = JSON.parse(fs.readFileSync(textsFile, "utf8"));
  const tokenizer = Tokenizer.fromFile(dir + "/tokenizer.json");
  // Pairs: encodeBatch takes strings only, so encode each pair and pad on the right.
  const encodings = config.pair
    ? await Promise.all(texts.map(([prompt, completion]) => tokenizer.encode(prompt, completion)))
    : await tokenizer.encodeBatch(texts);
  const width = Math.max(...encodings.map((e) => e.getIds().length));
  const pad = (xs, value) => xs.concat(Array(width - xs.length).fill(value));
  const columns = {
    input_ids: encodings.map((e) => pad(e.getIds(), config.pad_id)),
    attention_mask: encodings.map((e) => pad(e.getAttentionMask(), 0)),
    token_type_ids: encodings.map((e) => pad(e.getTypeIds(), 0)),
  };
  const session = await ort.InferenceSession.create(dir + "/reward.onnx");
  const feeds = {};
  for (const name of config.inputs) {
    feeds[name] = new ort.Tensor("int64", BigInt64Array.from(columns[name].flat().map(BigInt)), [texts.length, width]);
  }
  const output = (await session.run(feeds))[config.output];
  console.log(JSON.stringify({ columns, scores: Array.from(output.data), dims: output.dims }));
})().catch((err) => { console.error(err); process.exit(1); });
"""


@pytest.mark.parametrize("which", ["minilm", "causal"])
def test_node_tokenizers_and_onnxruntime_read_the_artifact_identically(which, request, tmp_path: Path):
    artifact = request.getfixturevalue("minilm_run")[1] if which == "minilm" else request.getfixturevalue("causal_run")[1]
    scorer = reward_model.RewardScorer(artifact)
    rows = [
        ("How do I boil an egg?", "Happy to help! Nine minutes."),
        ([{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Why is the sky blue? " * 30}], "Rayleigh scattering, ünïcödé 😀. " * 40),
        ("x", ""),
    ]
    texts = [scorer.format.text(p, c) for p, c in rows]
    (tmp_path / "texts.json").write_text(json.dumps([list(t) if isinstance(t, tuple) else t for t in texts]))
    (tmp_path / "score.cjs").write_text(NODE_SCRIPT)
    env = {**os.environ, "NODE_PATH": str(REPO / "node_modules")}
    proc = subprocess.run(["node", str(tmp_path / "score.cjs"), str(artifact), str(tmp_path / "texts.json")], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    node = json.loads(proc.stdout)

    python = reward_model.encode(scorer.tokenizer, scorer.format, texts)
    for name in scorer.format.inputs:
        assert np.array_equal(np.array(node["columns"][name]), python[name]), name
    assert python["input_ids"].shape[1] == scorer.format.max_length  # the long row was truncated
    assert node["dims"] == [3]
    assert np.abs(np.array(node["scores"]) - scorer.score(rows)).max() <= 1e-5


# ---------------------------------------------------------------------------------------------
# Loss and metrics


def test_bradley_terry_loss_matches_its_formula():
    chosen, rejected = torch.tensor([2.0, 0.0, -1.0]), torch.tensor([0.0, 0.0, 1.0])
    hard = bradley_terry_loss(chosen, rejected, torch.ones(3))
    expected = np.mean([math.log1p(math.exp(-2.0)), math.log(2), math.log1p(math.exp(2.0))])
    assert float(hard) == pytest.approx(expected, rel=1e-6)
    # p = 0.5 cannot prefer either order; a margin asks for more than a win.
    assert float(bradley_terry_loss(chosen, rejected, torch.full((3,), 0.5))) == pytest.approx(float(bradley_terry_loss(rejected, chosen, torch.full((3,), 0.5))))
    assert float(bradley_terry_loss(chosen, rejected, torch.ones(3), margin=1.0)) > float(hard)
    soft = bradley_terry_loss(torch.tensor([1.0]), torch.tensor([0.0]), torch.tensor([0.7]), margin=0.5)
    assert float(soft) == pytest.approx(-(0.7 * math.log(1 / (1 + math.exp(-0.5))) + 0.3 * math.log(1 / (1 + math.exp(1.5)))), rel=1e-6)


def test_calibration_metrics():
    prob = np.array([0.95, 0.95, 0.55, 0.15])
    label = np.array([1.0, 0.0, 1.0, 0.0])
    # Bins [0.9,1): mean 0.95 vs 0.5; [0.5,0.6): 0.55 vs 1; [0.1,0.2): 0.15 vs 0.
    assert expected_calibration_error(prob, label) == pytest.approx(0.5 * 0.45 + 0.25 * 0.45 + 0.25 * 0.15)
    assert expected_calibration_error(np.array([1.0, 0.0]), np.array([1.0, 0.0])) == 0.0
    diff = np.log(prob / (1 - prob))
    metrics = preference_metrics(diff, np.zeros(4), np.array([1.0, 1.0, 0.4, 0.2]))
    assert metrics["accuracy"] == pytest.approx(0.75)  # the third pair's soft label prefers `rejected`
    assert metrics["brier_soft"] == pytest.approx(np.mean((prob - [1.0, 1.0, 0.4, 0.2]) ** 2))
    assert metrics["brier_hard"] == pytest.approx(np.mean((prob - [1.0, 1.0, 0.0, 0.0]) ** 2))


# ---------------------------------------------------------------------------------------------
# Bad data: one line, exit 2, naming the file and line


@pytest.mark.parametrize(
    ("content", "where", "message"),
    [
        ('{"prompt": "p", "chosen": "a", "rejected": "b"}\n{"prompt": "p", "chosen": "a"}\n', ":2:", "missing 'rejected'"),
        ('{"prompt": "p", "chosen": "a", "rejected": "b", "soft_label": 1.5}\n', ":1:", "soft_label: expected a probability in [0, 1], got 1.5"),
        ("", "", "no rows"),
        ('{"prompt": "p", "chosen": "a", "rejected": "b"}\n\n{"prompt": oops}\n', ":3:", "not valid JSON"),
    ],
    ids=["missing-key", "soft-label-1.5", "empty-file", "not-json"],
)
def test_bad_preference_data_is_a_one_line_error(content, where, message, tmp_path: Path, tiny_model: Path, capsys):
    data = tmp_path / "prefs.jsonl"
    data.write_text(content)
    code = cli.main(["reward-model", "--model", str(tiny_model), "--data", str(data), "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().splitlines() == [err.strip()]
    assert err.startswith(f"error: {data}{where}") and message in err, err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_bad_margin_and_missing_eval_data_are_user_errors(tmp_path: Path, tiny_model: Path, capsys):
    data = write_jsonl(tmp_path / "p.jsonl", principle_pairs(TRAIN_TOPICS, TRAIN_STYLE, 4, seed=0))
    assert cli.main(["reward-model", "--model", str(tiny_model), "--data", str(data), "--output", str(tmp_path / "o"), "--margin", "-1"]) == 2
    assert "--margin: must be 0 or more" in capsys.readouterr().err
    assert cli.main(["reward-model", "--model", str(tiny_model), "--data", str(data), "--output", str(tmp_path / "o"), "--eval-data", str(tmp_path / "nope.jsonl")]) == 2
    assert f"{tmp_path / 'nope.jsonl'}: no such file" in capsys.readouterr().err
