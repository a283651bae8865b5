"""`reward-model`: a Bradley–Terry reward model on preference pairs, exported to ONNX for the Node side.

A scalar head on an HF backbone (AutoModelForSequenceClassification, num_labels=1: encoders score
their pooled output, causal LMs their last non-pad token), LoRA by default (the head is trained in
full via peft's modules_to_save), every weight with --full-finetune.

The artifact, OUTPUT/model/, is a contract the Node side (onnxruntime-node + the npm `tokenizers`
package) reimplements:

  reward.onnx         int64 inputs `reward-config.json:inputs` [batch, sequence], float32 `score` [batch]
  tokenizer.json      truncation and padding are configured inside it
  reward-config.json  {"format": "tenet-reward/1", "inputs", "output": "score", "max_length", "pair",
                      "pad_id", "separator" and "suffix" (single-text artifacts only),
                      "prompt_format": "plain", "base_model"}
  hf/                 the merged fp32 model and tokenizer, for parity checks in Python
  adapter/            the LoRA adapter (LoRA runs only), to continue training with --adapter

Input text ("prompt_format": "plain"): the prompt messages as `role: content` lines joined by "\n"
(a bare string prompt is one user message).
- "pair": false (causal LMs): one text, prompt + "\nassistant: " + completion + suffix (the EOS
  token's text). Node: `Tokenizer.fromFile(tokenizer.json).encodeBatch(texts)` gives the inputs as is.
- "pair": true (BERT-like tokenizers, which put a [SEP] between two texts): the pair (prompt,
  completion). Node's binding takes only strings in encodeBatch (tokenizers 0.23), so there: one
  `encode(prompt, completion)` per row (truncation applies), then pad every row on the right to the
  batch's longest: input_ids with pad_id, attention_mask and token_type_ids with 0. That is exactly
  what Python's `encode_batch` of the pairs gives.
"""

from __future__ import annotations

import inspect
import json
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from peft import PeftModel, TaskType
from tokenizers import Tokenizer
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from tenet_trainer import loop, onnx_export
from tenet_trainer.common import UserError, emit, pick_device, pick_dtype, read_jsonl, seed_everything
from tenet_trainer.config import TrainConfig, check_train_config
from tenet_trainer.data import Message, PreferencePair, parse_preference, render_plain
from tenet_trainer.models import count_parameters, load_sequence_scorer, load_tokenizer, with_lora

FORMAT = "tenet-reward/1"
SEPARATOR = "\nassistant: "
ONNX_FILE = "reward.onnx"
CONFIG_FILE = "reward-config.json"
TOKENIZER_FILE = "tokenizer.json"
PARITY_TOLERANCE = 1e-4
CALIBRATION_BINS = 10


@dataclass
class Config(TrainConfig):
    eval_fraction: float = 0.1
    """Share of the data held out for evaluation (chosen by seed); ignored when --eval-data is given."""
    eval_data: str | None = None
    """Held-out preferences (JSONL) to evaluate on instead of a share of --data."""
    margin: float = 0.0
    """Bradley–Terry margin m: the loss asks for r_chosen − r_rejected > m."""
    center_rewards_coef: float = 0.0
    """C ≥ 0: add C·mean((r_c + r_r)²) to the loss, pulling rewards towards mean zero (Eisenstein et al. 2023); 0: off."""

    def validate(self) -> None:
        check_train_config(self)
        if self.margin < 0:
            raise UserError("--margin: must be 0 or more")
        if self.center_rewards_coef < 0:
            raise UserError("--center-rewards-coef: must be 0 or more")


# ---------------------------------------------------------------------------------------------
# The input contract


@dataclass(frozen=True)
class InputFormat:
    """How a (prompt, completion) becomes the tokenizer's input; written to reward-config.json."""

    pair: bool
    """Encode (prompt_text, completion) as a text pair; else one text with SEPARATOR and `suffix`."""
    suffix: str
    max_length: int
    inputs: tuple[str, ...]
    pad_id: int

    def text(self, prompt: list[Message] | str, completion: str) -> str | tuple[str, str]:
        prompt_text = render_plain(_as_messages(prompt))
        if self.pair:
            return (prompt_text, completion)
        return prompt_text + SEPARATOR + completion + self.suffix

    def to_json(self, base_model: str) -> dict[str, Any]:
        obj: dict[str, Any] = {"format": FORMAT, "inputs": list(self.inputs), "output": onnx_export.OUTPUT, "max_length": self.max_length, "pair": self.pair, "pad_id": self.pad_id}
        if not self.pair:
            obj.update(separator=SEPARATOR, suffix=self.suffix)
        obj.update(prompt_format="plain", base_model=base_model)
        return obj

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "InputFormat":
        if obj.get("format") != FORMAT or obj.get("prompt_format") != "plain":
            raise UserError(f"{CONFIG_FILE}: format {obj.get('format')!r} / prompt_format {obj.get('prompt_format')!r}: expected {FORMAT!r} / 'plain'")
        if not obj["pair"] and obj["separator"] != SEPARATOR:
            raise UserError(f"{CONFIG_FILE}: separator {obj['separator']!r}: expected {SEPARATOR!r}")
        return cls(pair=bool(obj["pair"]), suffix=obj.get("suffix", ""), max_length=int(obj["max_length"]), inputs=tuple(obj["inputs"]), pad_id=int(obj["pad_id"]))


def _as_messages(prompt: list[Message] | str) -> list[Message]:
    """A bare string prompt is one user message, as in the preference data."""
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt


def _uses_pairs(tokenizer: PreTrainedTokenizerBase) -> bool:
    """BERT-like tokenizers: a separator token that the post-processor puts between the two texts of a pair."""
    backend = tokenizer.backend_tokenizer
    return tokenizer.sep_token is not None and backend.num_special_tokens_to_add(True) > backend.num_special_tokens_to_add(False)


def _takes_token_types(model: PreTrainedModel) -> bool:
    return "token_type_ids" in inspect.signature(model.forward).parameters


def input_format(tokenizer: PreTrainedTokenizerBase, model: PreTrainedModel, max_length: int) -> InputFormat:
    """The contract for this backbone: pair or single text, the usable length, the graph's inputs."""
    if not tokenizer.is_fast:
        raise UserError("reward-model needs a fast tokenizer (a tokenizer.json)")
    pair = _uses_pairs(tokenizer)
    limits = [max_length, tokenizer.model_max_length, getattr(model.config, "max_position_embeddings", None)]
    usable = min(int(n) for n in limits if isinstance(n, int) and 0 < n < 1_000_000_000)
    if usable < tokenizer.backend_tokenizer.num_special_tokens_to_add(pair) + 2:
        raise UserError(f"--max-length {max_length}: too short to hold a prompt and a completion with this tokenizer")
    inputs = ("input_ids", "attention_mask") + (("token_type_ids",) if _takes_token_types(model) else ())
    return InputFormat(pair=pair, suffix="" if pair else (tokenizer.eos_token or ""), max_length=usable, inputs=inputs, pad_id=int(tokenizer.pad_token_id))


def configured_tokenizer(tokenizer: PreTrainedTokenizerBase, fmt: InputFormat) -> Tokenizer:
    """A copy of the Rust tokenizer that truncates and pads by itself: this is the saved tokenizer.json.

    Pairs: longest_first from the right (the longer text loses its end). Single texts: cut from the left,
    so the completion's end and the EOS suffix (the token a causal LM is scored on) survive. Padding: on
    the right, to the longest row of the batch.
    """
    rust = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    rust.enable_truncation(fmt.max_length, strategy="longest_first", direction="right" if fmt.pair else "left")
    rust.enable_padding(direction="right", pad_id=fmt.pad_id, pad_type_id=0, pad_token=tokenizer.pad_token)
    return rust


def encode(rust: Tokenizer, fmt: InputFormat, texts: Sequence[str | tuple[str, str]]) -> dict[str, np.ndarray]:
    """The model's int64 inputs for a batch of texts (as built by `InputFormat.text`)."""
    encodings = rust.encode_batch(list(texts))
    columns = {
        "input_ids": [e.ids for e in encodings],
        "attention_mask": [e.attention_mask for e in encodings],
        "token_type_ids": [e.type_ids for e in encodings],
    }
    return {name: np.asarray(columns[name], dtype=np.int64) for name in fmt.inputs}


# ---------------------------------------------------------------------------------------------
# Loss and metrics


def bradley_terry_loss(chosen: torch.Tensor, rejected: torch.Tensor, soft_label: torch.Tensor, margin: float = 0.0, center_coef: float = 0.0) -> torch.Tensor:
    """Mean over pairs of −[p·log σ(r_c − r_r − m) + (1 − p)·log σ(r_r − r_c − m)] + C·(r_c + r_r)², p = P(chosen is better).

    The C term is reward centering (Eisenstein et al. 2023, "Helping or Herding? Reward Model
    Ensembles Mitigate but do not Eliminate Reward Hacking", arXiv:2312.09244; TRL's
    center_rewards_coefficient): Bradley–Terry only sees r_c − r_r, so a constant shift of every
    reward is free; the penalty pins the mean reward near zero. It does not depend on the label.
    """
    diff = chosen - rejected
    log_likelihood = soft_label * F.logsigmoid(diff - margin) + (1 - soft_label) * F.logsigmoid(-diff - margin)
    loss = -log_likelihood.mean()
    if center_coef:
        loss = loss + center_coef * ((chosen + rejected) ** 2).mean()
    return loss


def expected_calibration_error(prob: np.ndarray, label: np.ndarray, bins: int = CALIBRATION_BINS) -> float:
    """Σ over equal-width probability bins of (share of rows in the bin) × |mean predicted − mean label|."""
    index = np.minimum((prob * bins).astype(int), bins - 1)
    error = 0.0
    for b in range(bins):
        in_bin = index == b
        if in_bin.any():
            error += in_bin.mean() * abs(prob[in_bin].mean() - label[in_bin].mean())
    return float(error)


def _log_sigmoid(x: np.ndarray) -> np.ndarray:
    return -np.logaddexp(0, -x)


def preference_metrics(chosen: np.ndarray, rejected: np.ndarray, soft_label: np.ndarray, margin: float = 0.0) -> dict[str, float]:
    """Held-out metrics of reward scores against their labels.

    accuracy: share of pairs ordered as their hard label says (r_c > r_r when soft_label ≥ 0.5);
    calibration compares σ(r_c − r_r) with the soft label and with the hard label (Brier, ECE).
    """
    diff = chosen.astype(np.float64) - rejected.astype(np.float64)
    prob = 0.5 * (1 + np.tanh(diff / 2))  # σ(diff), without overflow
    hard = (soft_label >= 0.5).astype(np.float64)
    loss = -(soft_label * _log_sigmoid(diff - margin) + (1 - soft_label) * _log_sigmoid(-diff - margin))
    return {
        "eval_pairs": int(len(diff)),
        "accuracy": float(np.mean((diff > 0) == (hard == 1))),
        "mean_margin": float(diff.mean()),
        "mean_reward": float((chosen.astype(np.float64) + rejected.astype(np.float64)).mean() / 2),
        "eval_loss": float(loss.mean()),
        "brier_soft": float(np.mean((prob - soft_label) ** 2)),
        "brier_hard": float(np.mean((prob - hard) ** 2)),
        "ece_soft": expected_calibration_error(prob, soft_label),
        "ece_hard": expected_calibration_error(prob, hard),
    }


# ---------------------------------------------------------------------------------------------
# The command


def _scores(model: torch.nn.Module, inputs: dict[str, np.ndarray], device: torch.device) -> torch.Tensor:
    batch = {name: torch.from_numpy(array).to(device) for name, array in inputs.items()}
    return model(**batch).logits[:, 0].float()


def run(config: Config) -> dict[str, Any]:
    rows = read_jsonl(config.data, parse_preference)
    eval_rows = read_jsonl(config.eval_data, parse_preference) if config.eval_data else None
    seed_everything(config.seed)
    device = pick_device(config.device)
    dtype = pick_dtype(device, config.dtype)

    tokenizer = load_tokenizer(config.model)
    base = load_sequence_scorer(config.model, device, dtype, tokenizer.pad_token_id)
    fmt = input_format(tokenizer, base, config.max_length)
    rust = configured_tokenizer(tokenizer, fmt)
    model = with_lora(base, config, TaskType.SEQ_CLS)

    if eval_rows is None:
        train_items, held_items = loop.split_items(len(rows), config.eval_fraction, config.seed)
        held_out = [rows[i] for i in held_items]
    else:
        train_items, held_out = list(range(len(rows))), eval_rows

    recent_losses: deque[float] = deque(maxlen=config.grad_accum)

    def batch_loss(batch: list[int]) -> tuple[torch.Tensor, dict[str, float]]:
        pairs = [rows[i] for i in batch]
        texts = [fmt.text(p.prompt, p.chosen) for p in pairs] + [fmt.text(p.prompt, p.rejected) for p in pairs]
        scores = _scores(model, encode(rust, fmt, texts), device)
        chosen, rejected = scores[: len(pairs)], scores[len(pairs) :]
        soft = torch.tensor([p.soft_label for p in pairs], device=device)
        loss = bradley_terry_loss(chosen, rejected, soft, config.margin, config.center_rewards_coef)
        recent_losses.append(float(loss.detach()))
        diff = (chosen - rejected).detach()
        correct = (diff > 0) == (soft >= 0.5)
        metrics = {"accuracy": float(correct.float().mean()), "margin": float(diff.mean())}
        if config.center_rewards_coef:
            total = (chosen + rejected).detach()
            metrics |= {"mean_reward": float(total.mean() / 2), "center_penalty": float((total**2).mean())}
        return loss, metrics

    def evaluate() -> dict[str, float]:
        metrics: dict[str, float] = {"train_loss": float(np.mean(recent_losses))} if recent_losses else {}
        if held_out:
            chosen, rejected = score_pairs(model, rust, fmt, held_out, device, 2 * config.batch_size)
            metrics.update(preference_metrics(chosen, rejected, np.array([p.soft_label for p in held_out]), config.margin))
        return metrics

    def save_artifact(folder: Path) -> None:
        save(folder, model, tokenizer, rust, fmt, config.model, sample_texts(fmt, rows + list(held_out)))

    hyperparameters = {
        "margin": config.margin,
        "center_rewards_coef": config.center_rewards_coef,
        "pair": fmt.pair,
        "max_length": fmt.max_length,
        "inputs": list(fmt.inputs),
        "full_finetune": config.full_finetune,
        "parameters": count_parameters(model),
        "eval_rows": len(held_out),
    }
    job = loop.Job(config=config, model=model, train_items=train_items, loss=batch_loss, save_artifact=save_artifact, evaluate=evaluate, hyperparameters=hyperparameters, kind="reward-model")
    return loop.run(job)


def score_pairs(model: torch.nn.Module, rust: Tokenizer, fmt: InputFormat, pairs: list[PreferencePair], device: torch.device, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(chosen scores, rejected scores) with the PyTorch model."""
    texts = [fmt.text(p.prompt, p.chosen) for p in pairs] + [fmt.text(p.prompt, p.rejected) for p in pairs]
    with torch.no_grad():
        parts = [_scores(model, encode(rust, fmt, texts[i : i + batch_size]), device).cpu().numpy() for i in range(0, len(texts), batch_size)]
    scores = np.concatenate(parts)
    return scores[: len(pairs)], scores[len(pairs) :]


def sample_texts(fmt: InputFormat, pairs: list[PreferencePair]) -> list[str | tuple[str, str]]:
    """Texts of very different lengths, for the export example and its parity check."""
    texts = [fmt.text(p.prompt, c) for p in pairs[:200] for c in (p.chosen, p.rejected)]
    texts.sort(key=lambda t: len(t) if isinstance(t, str) else len(t[0]) + len(t[1]))
    return [texts[0], texts[-1], texts[len(texts) // 2], texts[len(texts) // 4], texts[(3 * len(texts)) // 4]]


def save(folder: Path, model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, rust: Tokenizer, fmt: InputFormat, base_model: str, samples: list[str | tuple[str, str]]) -> None:
    """Write the artifact (see the module docstring); the ONNX graph must match PyTorch within PARITY_TOLERANCE."""
    model = model.to("cpu", torch.float32).eval()  # merge and export in fp32, whatever the training dtype
    if isinstance(model, PeftModel):
        model.save_pretrained(folder / "adapter")
        model = model.merge_and_unload()
    model.save_pretrained(folder / "hf")
    tokenizer.save_pretrained(folder / "hf")
    tokenizer.save_pretrained(folder)
    rust.save(str(folder / TOKENIZER_FILE))

    # Export on a padded batch; check on it, on a different batch size and length, and on one row.
    example = encode(rust, fmt, samples[:2])
    onnx_export.export(model, fmt.inputs, example, folder / ONNX_FILE)
    checks = [example, encode(rust, fmt, samples), encode(rust, fmt, samples[2:3])]
    worst = onnx_export.max_abs_diff(model, folder / ONNX_FILE, checks)
    if worst > PARITY_TOLERANCE:
        raise RuntimeError(f"ONNX export: scores differ from PyTorch by {worst:.3g} (> {PARITY_TOLERANCE}); the artifact was not published")
    emit("export", onnx=ONNX_FILE, opset=onnx_export.OPSET, parity_max_abs_diff=worst)
    (folder / CONFIG_FILE).write_text(json.dumps(fmt.to_json(base_model), indent=2) + "\n")


# ---------------------------------------------------------------------------------------------
# Scoring with an exported artifact (what a benchmark uses from Python)


class RewardScorer:
    """Scores (prompt, completion) rows with an artifact's reward.onnx, exactly as the Node side does."""

    def __init__(self, artifact_dir: str | Path) -> None:
        folder = Path(artifact_dir)
        if not (folder / CONFIG_FILE).is_file():
            raise UserError(f"{folder}: no {CONFIG_FILE} (not a reward-model artifact)")
        self.format = InputFormat.from_json(json.loads((folder / CONFIG_FILE).read_text()))
        self.tokenizer = Tokenizer.from_file(str(folder / TOKENIZER_FILE))
        self.session = onnx_export.session(folder / ONNX_FILE)

    def score(self, rows: Iterable[tuple[list[Message] | str, str] | dict[str, Any]], batch_size: int = 32) -> np.ndarray:
        texts = [self.format.text(*_prompt_completion(row)) for row in rows]
        parts = [onnx_export.onnx_scores(self.session, encode(self.tokenizer, self.format, texts[i : i + batch_size])) for i in range(0, len(texts), batch_size)]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)


def _prompt_completion(row: tuple[list[Message] | str, str] | dict[str, Any]) -> tuple[list[Message] | str, str]:
    if isinstance(row, dict):
        return row["prompt"], row["completion"]
    prompt, completion = row
    return prompt, completion


def score_texts(artifact_dir: str | Path, rows: Iterable[tuple[list[Message] | str, str] | dict[str, Any]], batch_size: int = 32) -> np.ndarray:
    """Float32 scores of (prompt, completion) rows (tuples or {prompt, completion} dicts; a prompt is a
    string or a list of {role, content} messages) with the artifact in `artifact_dir`, via onnxruntime."""
    return RewardScorer(artifact_dir).score(rows, batch_size)
