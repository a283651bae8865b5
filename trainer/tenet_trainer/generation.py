"""A small sampling loop with a KV cache, used by `serve`.

Written out (rather than calling HF `generate`) so that what is reported is exactly what happened:

* Logprobs are *raw model* logprobs: `log_softmax(logits)` of the model's next-token logits, before
  temperature, top-p and top-k are applied (vLLM's default `raw_logprobs` mode). So a logprob can be
  checked by a teacher-forced forward pass of prompt + completion through the same model, and an RL
  trainer that recomputes `log pi(token | prefix)` gets the same number at any sampling temperature.
* Tokens are *sampled* from `softmax(logits / temperature)` restricted to the top-k tokens and the
  top-p nucleus (temperature 0 = greedy argmax).
* Each choice `i` of a request has its own `torch.Generator`, seeded from the request seed: choice 0
  uses the seed itself and choice `i > 0` a hash of (seed, i). Same seed + same request → same
  output, and choice `i` does not depend on how many other choices were asked for.
* The `n` choices of one prompt are decoded as one batch: the prompt is run once, its KV cache
  repeated `n` times.
"""

from __future__ import annotations

import hashlib
import inspect
import re
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Sequence

import torch
from transformers import PreTrainedTokenizerBase

LOGPROB_FLOOR = -9999.0
"""JSON has no -inf: logprobs below this (probability 0 in fp32) are reported as this value (as vLLM does)."""


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    """0 or -1: off."""
    seed: int = 0
    n: int = 1
    stop: tuple[str, ...] = ()
    """Generation ends *before* the first of these strings; the string is not part of the text."""
    stop_token_ids: frozenset[int] = frozenset()
    """Extra token ids that end generation (besides the tokenizer's EOS and the chat template's end token)."""
    ignore_eos: bool = False
    logprobs: int | None = None
    """None: no logprobs; k >= 0: the sampled token's logprob and the k most likely alternatives."""
    prompt_logprobs: int | None = None
    """None: none; k >= 0: each prompt token's logprob given the tokens before it (the first gets None)."""


@dataclass
class TokenLogprob:
    token_id: int
    logprob: float
    top: list[tuple[int, float]]
    """The most likely tokens at this position, most likely first."""


@dataclass
class Choice:
    token_ids: list[int]
    """Every token sampled, including a final EOS / stop token (it counts as a completion token)."""
    text: str
    """Decoded without special tokens; a final EOS / stop token and a matched stop string are left out."""
    finish_reason: str
    """"stop" (EOS, stop token or stop string), "length" (max_tokens reached) or "abort" (server shutting down)."""
    stop_reason: str | int | None
    """The stop string or stop token id that ended it; None for EOS or length."""
    logprobs: list[TokenLogprob] | None = None


@dataclass
class Generation:
    prompt_ids: list[int]
    choices: list[Choice]
    prompt_logprobs: list[TokenLogprob | None] | None = None
    seconds: float = 0.0
    forward_passes: int = 0


def choice_seed(seed: int, index: int) -> int:
    """The generator seed of choice `index` (0 → the request seed itself)."""
    if index == 0:
        return seed % (2**64)
    digest = hashlib.blake2b(f"{seed}/{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def end_token_ids(tokenizer: PreTrainedTokenizerBase, model: Any = None) -> set[int]:
    """Tokens that end a completion: the tokenizer's EOS, the model's generation_config EOS ids and the
    special token the chat template puts after an assistant turn (e.g. `<|im_end|>`, `<|eot_id|>`)."""
    ids: set[int] = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    gen = getattr(model, "generation_config", None)
    eos = getattr(gen, "eos_token_id", None)
    if isinstance(eos, int):
        ids.add(eos)
    elif isinstance(eos, (list, tuple)):
        ids.update(int(e) for e in eos)
    if getattr(tokenizer, "chat_template", None):
        marker = "Zq9xMarkerZq9x"
        try:
            text = tokenizer.apply_chat_template(
                [{"role": "user", "content": "hi"}, {"role": "assistant", "content": marker}], tokenize=False
            )
        except Exception:  # noqa: BLE001 - templates that reject this shape simply add nothing
            text = ""
        if isinstance(text, str) and marker in text:
            after = text.split(marker, 1)[1]
            after_ids = tokenizer(after, add_special_tokens=False)["input_ids"] if after else []
            special = set(tokenizer.all_special_ids) | set(getattr(tokenizer, "added_tokens_decoder", {}) or {})
            if after_ids and after_ids[0] in special:
                ids.add(int(after_ids[0]))
    return ids


@lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    """Inverse of GPT-2's bytes_to_unicode table (byte-level BPE)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    extra = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(bs, cs)}


class TokenText:
    """A token's bytes and display string (the bytes decoded as UTF-8, invalid sequences replaced)."""

    _HEX = re.compile(r"<0x([0-9A-Fa-f]{2})>")

    def __init__(self, tokenizer: PreTrainedTokenizerBase):
        self.tokenizer = tokenizer
        backend = getattr(tokenizer, "backend_tokenizer", None)
        decoder = getattr(backend, "decoder", None)
        self.byte_level = decoder is not None and "ByteLevel" in repr(decoder)
        self.special = set(tokenizer.all_special_ids) | set(getattr(tokenizer, "added_tokens_decoder", {}) or {})
        self._cache: dict[int, tuple[str, bytes]] = {}

    def __call__(self, token_id: int) -> tuple[str, bytes]:
        hit = self._cache.get(token_id)
        if hit is None:
            raw = self._bytes(token_id)
            hit = (raw.decode("utf-8", errors="replace"), raw)
            self._cache[token_id] = hit
        return hit

    def _bytes(self, token_id: int) -> bytes:
        piece = self.tokenizer.convert_ids_to_tokens(token_id)
        if piece is None:
            return b""
        if token_id in self.special:
            return piece.encode("utf-8")
        if self.byte_level:
            table = _byte_decoder()
            if all(ch in table for ch in piece):
                return bytes(table[ch] for ch in piece)
        match = self._HEX.fullmatch(piece)
        if match:  # SentencePiece byte fallback
            return bytes([int(match.group(1), 16)])
        if "▁" in piece:  # SentencePiece word boundary
            return piece.replace("▁", " ").encode("utf-8")
        return self.tokenizer.decode([token_id], skip_special_tokens=False).encode("utf-8")


def _accepts(model: Any, name: str) -> bool:
    try:
        return name in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def _cache_of(out: Any) -> Any:
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


def _sample_filter(logits: torch.Tensor, params: SamplingParams) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Probabilities to sample from, [rows, V] (or over the sorted vocabulary, with the sort order)."""
    probs = torch.softmax(logits / params.temperature, dim=-1)
    top_k = params.top_k if params.top_k and params.top_k > 0 else 0
    if params.top_p >= 1.0 and (top_k == 0 or top_k >= probs.shape[-1]):
        return probs, None
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    if params.top_p < 1.0:
        before = sorted_probs.cumsum(dim=-1) - sorted_probs
        sorted_probs = sorted_probs.masked_fill(before > params.top_p, 0.0)  # the top token always stays
    if top_k:
        sorted_probs[:, top_k:] = 0.0
    return sorted_probs, order


def _clamp(value: float) -> float:
    return value if value > LOGPROB_FLOOR else LOGPROB_FLOOR


def _first_stop(text: str, stops: Sequence[str]) -> tuple[int, str] | None:
    best: tuple[int, str] | None = None
    for s in stops:
        at = text.find(s)
        if at >= 0 and (best is None or at < best[0]):
            best = (at, s)
    return best


@torch.inference_mode()
def generate(
    model: Any,
    tokenizer: PreTrainedTokenizerBase,
    prompt_ids: list[int],
    params: SamplingParams,
    end_ids: set[int],
    should_stop: Callable[[], bool] | None = None,
) -> Generation:
    """Sample `params.n` completions of one prompt. `model` is an HF causal LM (LoRA layers, if any,
    already set the way the caller wants)."""
    started = time.perf_counter()
    device = next(model.parameters()).device
    n = params.n
    ends = set() if params.ignore_eos else set(end_ids)
    ends |= set(params.stop_token_ids)
    want_prompt_lp = params.prompt_logprobs is not None
    kwargs: dict[str, Any] = {"use_cache": True}
    if not want_prompt_lp and _accepts(model, "logits_to_keep"):
        kwargs["logits_to_keep"] = 1
    result = Generation(prompt_ids=list(prompt_ids), choices=[])
    cache_kw = "cache" if _accepts(model, "cache") else "past_key_values"  # transformers 5.x renamed it

    ids = torch.tensor([prompt_ids], dtype=torch.long, device=device)
    out = model(input_ids=ids, **kwargs)
    result.forward_passes += 1
    if want_prompt_lp:
        result.prompt_logprobs = _prompt_logprobs(out.logits[0], prompt_ids, params.prompt_logprobs or 0)
    if params.max_tokens <= 0:
        result.choices = [Choice([], "", "length", None, [] if params.logprobs is not None else None) for _ in range(n)]
        result.seconds = time.perf_counter() - started
        return result

    cache = _cache_of(out)
    last = out.logits[:, -1, :].float()
    if n > 1:
        repeat = getattr(cache, "batch_repeat_interleave", None)
        if callable(repeat):
            repeat(n)
        else:  # caches without it: run the prompt for every row
            out = model(input_ids=ids.expand(n, -1), **kwargs)
            cache = _cache_of(out)
        last = last.expand(n, -1)
    kwargs.pop("logits_to_keep", None)

    generators = [torch.Generator(device=device).manual_seed(choice_seed(params.seed, i)) for i in range(n)]
    tokens: list[list[int]] = [[] for _ in range(n)]
    finished: list[tuple[str, str | int | None, int | None] | None] = [None] * n  # (reason, stop_reason, text cut)
    chosen_lp: list[torch.Tensor] = []
    top_vals: list[torch.Tensor] = []
    top_idx: list[torch.Tensor] = []
    k = params.logprobs
    aborted = False

    for step in range(params.max_tokens):
        if params.temperature == 0:
            next_tokens = last.argmax(dim=-1)
        else:
            probs, order = _sample_filter(last, params)
            picks = [torch.multinomial(probs[r], 1, generator=generators[r]) for r in range(n)]
            picked = torch.cat(picks)
            next_tokens = picked if order is None else order.gather(1, picked[:, None]).squeeze(1)
        if k is not None:
            logprobs = torch.log_softmax(last, dim=-1)
            chosen_lp.append(logprobs.gather(1, next_tokens[:, None]).squeeze(1))
            if k > 0:
                v, i = logprobs.topk(k, dim=-1)
                top_vals.append(v)
                top_idx.append(i)
        step_tokens = next_tokens.tolist()
        for r, tok in enumerate(step_tokens):
            if finished[r] is not None:
                continue
            tokens[r].append(tok)
            if tok in ends:
                finished[r] = ("stop", tok if tok in params.stop_token_ids else None, None)
            elif params.stop:
                text = tokenizer.decode(tokens[r], skip_special_tokens=True)
                hit = _first_stop(text, params.stop)
                if hit is not None:
                    finished[r] = ("stop", hit[1], hit[0])
        if all(f is not None for f in finished) or step == params.max_tokens - 1:
            break
        if should_stop is not None and should_stop():
            aborted = True
            break
        out = model(input_ids=next_tokens[:, None], **{cache_kw: cache}, **kwargs)
        result.forward_passes += 1
        cache = _cache_of(out)
        last = out.logits[:, -1, :].float()

    lp_rows = torch.stack(chosen_lp, dim=1).tolist() if chosen_lp else None
    tv = torch.stack(top_vals, dim=1).tolist() if top_vals else None
    ti = torch.stack(top_idx, dim=1).tolist() if top_idx else None
    for r in range(n):
        toks = tokens[r]
        state = finished[r]
        if state is None:
            reason, stop_reason, cut = ("abort" if aborted else "length"), None, None
        else:
            reason, stop_reason, cut = state
        text_ids = toks[:-1] if (state is not None and cut is None) else toks  # drop a final EOS / stop token
        text = tokenizer.decode(text_ids, skip_special_tokens=True)
        if cut is not None:
            text = text[:cut]
        lps = None
        if k is not None:
            lps = [
                TokenLogprob(
                    token_id=t,
                    logprob=_clamp(lp_rows[r][j]) if lp_rows else 0.0,
                    top=[(ti[r][j][m], _clamp(tv[r][j][m])) for m in range(k)] if ti is not None and tv is not None else [],
                )
                for j, t in enumerate(toks)
            ]
        result.choices.append(Choice(token_ids=toks, text=text, finish_reason=reason, stop_reason=stop_reason, logprobs=lps))
    result.seconds = time.perf_counter() - started
    return result


def _prompt_logprobs(logits: torch.Tensor, prompt_ids: list[int], k: int) -> list[TokenLogprob | None]:
    """logits: [P, V] for the prompt positions. Position j's logprob comes from position j-1's logits."""
    if len(prompt_ids) < 2:
        return [None] * len(prompt_ids)
    logprobs = torch.log_softmax(logits[:-1].float(), dim=-1)
    targets = torch.tensor(prompt_ids[1:], device=logprobs.device)
    chosen = logprobs.gather(1, targets[:, None]).squeeze(1).tolist()
    tops: list[list[tuple[int, float]]] = [[] for _ in chosen]
    if k > 0:
        v, i = logprobs.topk(k, dim=-1)
        tops = [[(a, _clamp(b)) for a, b in zip(ii, vv)] for ii, vv in zip(i.tolist(), v.tolist())]
    rows: list[TokenLogprob | None] = [None]
    rows += [TokenLogprob(token_id=t, logprob=_clamp(lp), top=top) for t, lp, top in zip(prompt_ids[1:], chosen, tops)]
    return rows


__all__ = ["SamplingParams", "Choice", "Generation", "TokenLogprob", "TokenText", "generate", "end_token_ids", "choice_seed", "LOGPROB_FLOOR"]

