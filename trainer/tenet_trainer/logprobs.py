"""Completion log-probabilities under a policy and under its reference, shared by `dpo` and `rl`.

A sequence is prompt + completion + EOS (data.encode_prompt_completion); only the completion's
tokens (EOS included) are scored. A tool-using rollout's sequence is prompt + its turns through the chat
template (encode_turns); only the assistant turns' tokens are scored: the prompt and the tool results
are context the model did not write. Batches are right-padded, so padding never shifts a position.

The reference policy is the base model: a LoRA policy runs it by disabling its adapters
(`with model.disable_adapter()`), so no second copy of the weights is held. Both commands compute
what they need from the reference once, before the first optimizer step, which also makes
`--full-finetune` work without a frozen copy (the model is still the base then) and lets
`--reference-model` name another model that is loaded, used and freed before training starts.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence as Seq

import torch
from peft import PeftModel
from transformers import PreTrainedTokenizerBase

from tenet_trainer import data
from tenet_trainer.common import UserError, emit
from tenet_trainer.models import load_causal_lm


@dataclass(frozen=True)
class Sequence:
    """Token ids of prompt + completion + EOS, and the index of the first completion token (>= 1).

    `spans`, when set, are the [start, end) token ranges the model wrote (a tool-using rollout's
    assistant turns); otherwise everything from completion_start on is the model's."""

    ids: list[int]
    completion_start: int
    spans: tuple[tuple[int, int], ...] | None = None

    @property
    def scored_spans(self) -> tuple[tuple[int, int], ...]:
        return self.spans if self.spans is not None else ((self.completion_start, len(self.ids)),)

    @property
    def completion_tokens(self) -> int:
        return sum(end - start for start, end in self.scored_spans)


def encode(
    tokenizer: PreTrainedTokenizerBase,
    prompt: list[data.Message],
    completion: str,
    max_length: int,
    turns: Seq[dict[str, Any]] | None = None,
    tools: Seq[dict[str, Any]] | None = None,
) -> Sequence:
    """The prompt as the model sees it (its chat template) followed by the completion and EOS; with
    `turns` (a tool-using rollout), the prompt and the turns through the template (encode_turns)."""
    if turns is not None:
        return encode_turns(tokenizer, prompt, list(turns), list(tools) if tools else None, max_length)
    ids, start = data.encode_prompt_completion(tokenizer, data.render_prompt(tokenizer, prompt), completion, max_length)
    if start < 1:
        raise UserError(f"--max-length {max_length}: too short to keep any prompt token before the completion")
    return Sequence(ids, start)


def turn_pieces(tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> list[tuple[str, bool]]:
    """The rendered conversation cut into (text, written by the model) pieces, in order.

    Assistant turn j is what rendering messages[: j + 1] adds to rendering messages[: j] with the
    generation prompt, i.e. exactly the text the model generated after the template's assistant
    header, up to and including its end-of-turn token; what follows that token (a newline) is context.
    Needs a template that renders turn by turn (each rendering a prefix of the next)."""
    eos = tokenizer.eos_token if isinstance(tokenizer.eos_token, str) else None
    pieces: list[tuple[str, bool]] = []
    done = ""
    for j, message in enumerate(messages):
        if message["role"] != "assistant" or j == 0:
            continue
        before = data.render_conversation(tokenizer, messages[:j], tools, add_generation_prompt=True)
        through = data.render_conversation(tokenizer, messages[: j + 1], tools, add_generation_prompt=False)
        if not before.startswith(done) or not through.startswith(before):
            raise UserError(f"messages[{j}]: the tokenizer's chat template does not render turn by turn (a later turn changes the text before it), so the assistant's tokens cannot be told apart")
        written = through[len(before) :]
        cut = written.rfind(eos) + len(eos) if eos and eos in written else len(written)
        pieces += [(before[len(done) :], False), (written[:cut], True)]
        done = before + written[:cut]
    return pieces


def encode_turns(tokenizer: PreTrainedTokenizerBase, prompt: list[data.Message], turns: list[dict[str, Any]], tools: list[dict[str, Any]] | None, max_length: int) -> Sequence:
    """A tool-using rollout: prompt + turns through the chat template, scored on the assistant turns only.

    Pieces are tokenized one by one (as the engine generated them: each assistant turn after its
    context). A last turn without the template's end-of-turn token gets EOS. Too long: the prompt is
    cut from the left, then the conversation from the right."""
    pieces = turn_pieces(tokenizer, list(prompt) + turns, tools)
    if not pieces:
        raise UserError("messages: no assistant turn to train on")
    encoded = [(tokenizer(text, add_special_tokens=False)["input_ids"], written) for text, written in pieces]
    if tokenizer.eos_token_id is not None and encoded[-1][0][-1:] != [tokenizer.eos_token_id]:
        encoded[-1] = (encoded[-1][0] + [tokenizer.eos_token_id], True)
    bos = data.bos_ids(tokenizer)
    total = len(bos) + sum(len(ids) for ids, _ in encoded)
    if total > max_length:
        prompt_ids = encoded[0][0]
        keep = max(1, len(prompt_ids) - (total - max_length))
        encoded[0] = (prompt_ids[-keep:], False)
    ids = list(bos)
    spans: list[tuple[int, int]] = []
    for piece, written in encoded:
        piece = piece[: max(0, max_length - len(ids))]
        if written and piece:
            spans.append((len(ids), len(ids) + len(piece)))
        ids += piece
    if not spans or spans[0][0] < 1:
        raise UserError(f"--max-length {max_length}: too short to keep a prompt token and an assistant token")
    return Sequence(ids, spans[0][0], tuple(spans))


@dataclass
class Batch:
    """Right-padded ids; `mask[b, t]` is 1 where target token ids[b, t + 1] belongs to the completion."""

    ids: torch.Tensor
    attention: torch.Tensor
    mask: torch.Tensor


def collate(sequences: list[Sequence], pad_id: int, device: torch.device) -> Batch:
    width = max(len(s.ids) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(sequences), width), dtype=torch.long)
    mask = torch.zeros((len(sequences), width - 1), dtype=torch.bool)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq.ids)] = torch.tensor(seq.ids)
        attention[row, : len(seq.ids)] = 1
        # Target t is token t + 1: a span's tokens start … end - 1 are targets start - 1 … end - 2.
        for start, end in seq.scored_spans:
            mask[row, start - 1 : end - 1] = True
    return Batch(ids.to(device), attention.to(device), mask.to(device))


def token_logprobs(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    """log π(token t + 1 | tokens ≤ t) for every target position, zero outside the completion: (B, T - 1), fp32."""
    logits = model(input_ids=batch.ids, attention_mask=batch.attention).logits[:, :-1].float()
    targets = batch.ids[:, 1:]
    chosen = torch.gather(logits.log_softmax(-1), 2, targets.unsqueeze(-1)).squeeze(-1)
    return chosen * batch.mask


def sequence_logprobs(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    """log π(completion | prompt): the sum of the completion tokens' log-probabilities, (B,)."""
    return token_logprobs(model, batch).sum(-1)


def split_rows(values: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
    """Per-row 1-D tensors of the masked entries (the completion tokens), on the CPU."""
    return [row[m].detach().cpu() for row, m in zip(values, mask)]


def join_rows(rows: list[torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
    """Inverse of split_rows: a (B, T - 1) tensor holding each row's values at its completion positions."""
    out = torch.zeros(mask.shape, dtype=torch.float32, device=mask.device)
    return out.masked_scatter(mask, torch.cat(rows).to(mask.device, torch.float32))


@contextlib.contextmanager
def base_model(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """The reference: the base with every adapter disabled (a plain model is its own base), under no_grad."""
    with torch.no_grad():
        if isinstance(model, PeftModel):
            with model.disable_adapter():
                yield model
        else:
            yield model


def disable_dropout(model: torch.nn.Module) -> None:
    """Old/reference log-probs are computed without dropout, so training must be too (as TRL does)."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0


def chunks(n: int, size: int) -> Iterator[list[int]]:
    for start in range(0, n, size):
        yield list(range(start, min(n, start + size)))


def precompute(
    model: torch.nn.Module,
    sequences: list[Sequence],
    pad_id: int,
    device: torch.device,
    batch_size: int,
    what: str,
) -> list[torch.Tensor]:
    """Per-sequence completion-token log-probs under `model` (no grad, eval mode), in batches.

    Emits a `precompute` progress line per batch, so the supervisor's heartbeat keeps beating.
    """
    was_training = model.training
    model.eval()
    rows: list[torch.Tensor] = []
    with torch.no_grad():
        for index in chunks(len(sequences), batch_size):
            batch = collate([sequences[i] for i in index], pad_id, device)
            rows += split_rows(token_logprobs(model, batch), batch.mask)
            emit("precompute", what=what, rows=len(rows), total=len(sequences))
    model.train(was_training)
    return rows


def reference_logprobs(
    model: torch.nn.Module,
    reference_model: str | None,
    sequences: list[Sequence],
    pad_id: int,
    device: torch.device,
    dtype: torch.dtype,
    batch_size: int,
) -> list[torch.Tensor]:
    """Completion-token log-probs under the reference: `reference_model` when given (loaded, used,
    freed), else the policy's base with adapters disabled. Call before any optimizer step."""
    if reference_model:
        if not Path(reference_model).exists():
            raise UserError(f"--reference-model {reference_model}: no such folder")
        reference = load_causal_lm(reference_model, device, dtype)
        disable_dropout(reference)
        own = getattr(model, "config", None)
        if own is not None and reference.config.vocab_size != own.vocab_size:
            raise UserError(f"--reference-model {reference_model}: its vocabulary ({reference.config.vocab_size}) differs from --model's ({own.vocab_size})")
        rows = precompute(reference, sequences, pad_id, device, batch_size, "reference")
        del reference
        if device.type == "cuda":
            torch.cuda.empty_cache()
        return rows
    with base_model(model) as base:
        return precompute(base, sequences, pad_id, device, batch_size, "reference")


def save_policy(model: Any, tokenizer: PreTrainedTokenizerBase) -> Callable[[Path], None]:
    """The artifact writer: the LoRA adapter (peft format, loadable by `serve` and PeftModel), or the
    whole model with --full-finetune; the tokenizer files either way."""

    def write(folder: Path) -> None:
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)

    return write
