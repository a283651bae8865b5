"""Sampling with a KV cache, one prompt or many at once (`Batch`), used by `serve` and `kl`.

Written out (rather than calling HF `generate`) so that what is reported is exactly what happened:

* Logprobs are *raw model* logprobs: `log_softmax(logits)` of the model's next-token logits, before
  temperature, top-p and top-k are applied (vLLM's default `raw_logprobs` mode). So a logprob can be
  checked by a teacher-forced forward pass of prompt + completion through the same model, and an RL
  trainer that recomputes `log pi(token | prefix)` gets the same number at any sampling temperature.
* Tokens are *sampled* from `softmax(logits / temperature)` restricted to the top-k tokens and the
  top-p nucleus (temperature 0 = greedy argmax), with each row's own settings: one uniform draw from
  the row's generator per token, mapped through the cumulative distribution (`_inverse_cdf`).
* Each choice `i` of a request has its own `torch.Generator`, seeded from the request seed: choice 0
  uses the seed itself and choice `i > 0` a hash of (seed, i). Same seed + same request → same
  output, and choice `i` does not depend on how many other choices were asked for, nor on which
  other requests share its forward passes.
* A prompt is prefilled once, its KV cache repeated for its `n` choices; every row of a `Batch`
  (choices of any prompts) then decodes together, one forward pass per token. Prompts that join at
  the same time are prefilled together (`Batch.add_many`), right-padded to the longest: a causal
  model's token attends only to tokens before it, so padding after a prompt changes none of its
  keys, values or logits, and each prompt's KV is its first `len(prompt)` columns.
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
    cached_prompt_tokens: int = 0
    """Prompt tokens whose KV came from `PrefixCache` instead of the prefill."""


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


def _inverse_cdf(probs: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
    """Row i's token: the first index whose cumulative probability exceeds `uniform[i]` × the row's total
    (inverse-CDF sampling, one uniform draw in [0, 1) per token). The cumulative sums are fp64 so that
    rounding moves no token's share by more than ~1e-12; the draw stays strictly below the total, so a
    token of probability 0 is never picked. (`torch.multinomial` draws one exponential per vocabulary
    entry instead: ~1.7 ms per row over a 49k vocabulary on one CPU thread, against ~0.1 ms here.)"""
    cdf = probs.double().cumsum(dim=-1)
    total = cdf[:, -1:]
    x = torch.minimum(uniform[:, None] * total, torch.nextafter(total, torch.zeros_like(total)))
    return torch.searchsorted(cdf, x, right=True).squeeze(1).clamp_(max=probs.shape[-1] - 1)


def _clamp(value: float) -> float:
    return value if value > LOGPROB_FLOOR else LOGPROB_FLOOR


def _first_stop(text: str, stops: Sequence[str]) -> tuple[int, str] | None:
    best: tuple[int, str] | None = None
    for s in stops:
        at = text.find(s)
        if at >= 0 and (best is None or at < best[0]):
            best = (at, s)
    return best


class Job:
    """One prompt's `n` choices in a `Batch`; done once every choice has finished."""

    def __init__(self, prompt_ids: list[int], params: SamplingParams, end_ids: set[int]):
        self.params = params
        self.ends = (set() if params.ignore_eos else set(end_ids)) | set(params.stop_token_ids)
        self.generation = Generation(prompt_ids=list(prompt_ids), choices=[])
        self.choices: list[Choice | None] = [None] * params.n
        self.started = time.perf_counter()
        self.owner: Any = None
        """Whoever submitted it (the scheduler's request)."""

    @property
    def done(self) -> bool:
        return all(c is not None for c in self.choices)

    def settle(self, index: int, choice: Choice) -> bool:
        """Choice `index` has finished; returns whether the whole job has."""
        self.choices[index] = choice
        if any(c is None for c in self.choices):
            return False
        self.generation.choices = [c for c in self.choices if c is not None]
        self.generation.seconds = time.perf_counter() - self.started
        return True

    def end_empty(self, reason: str) -> None:
        """Every choice ends with no token ("length" for max_tokens 0, "abort" when never started)."""
        for i in range(self.params.n):
            self.settle(i, Choice([], "", reason, None, [] if self.params.logprobs is not None else None))


class _Row:
    """One choice being decoded: a row of the batch."""

    __slots__ = ("job", "index", "generator", "tokens", "logprobs", "position")

    def __init__(self, job: Job, index: int, position: int, device: torch.device):
        self.job = job
        self.index = index
        self.generator = torch.Generator(device=device).manual_seed(choice_seed(job.params.seed, index))
        self.tokens: list[int] = []
        self.logprobs: list[TokenLogprob] = []
        self.position = position
        """The position of the next token fed to the model (the real tokens in the cache so far)."""


_Finish = tuple[str, "str | int | None", "int | None"]
"""(finish_reason, stop_reason, where a stop string cuts the text)."""


def _pad_left(x: torch.Tensor, width: int, dim: int) -> torch.Tensor:
    pad = width - x.shape[dim]
    if pad <= 0:
        return x
    shape = list(x.shape)
    shape[dim] = pad
    return torch.cat([x.new_zeros(shape), x], dim=dim)


def _mergeable(cache: Any) -> bool:
    """A plain DynamicCache (full-attention layers holding [batch, heads, length, dim] tensors) can be padded and joined."""
    try:
        from transformers.cache_utils import DynamicCache, DynamicLayer
    except ImportError:  # pragma: no cover - older transformers
        return False
    return type(cache) is DynamicCache and all(type(layer) in (DynamicLayer, _GrowingLayer) for layer in cache.layers)


def _joinable(model: Any) -> bool:
    """The caches `model` makes are plain DynamicCaches (judged from its config, before any forward pass)."""
    try:
        from transformers.cache_utils import DynamicCache

        return _mergeable(DynamicCache(config=model.config))
    except Exception:  # noqa: BLE001 - a config this cannot read: one prompt at a time
        return False


try:
    from transformers.cache_utils import DynamicLayer as _DynamicLayer
except ImportError:  # pragma: no cover - older transformers
    _DynamicLayer = object  # type: ignore[assignment,misc]


class _GrowingLayer(_DynamicLayer):  # type: ignore[misc,valid-type]
    """A DynamicLayer whose keys and values are the first `length` columns of buffers with room to spare,
    so a decode step writes its one new column in place instead of copying the whole cache
    (`torch.cat` every step is O(length) per step, O(length²) per sequence). Whatever replaces
    `keys` / `values` from outside (a row leaving, rows joining, padding trimmed) is copied into fresh
    buffers at the next `update`; the buffers are this layer's own, never another cache's tensors
    (a `PrefixCache` entry stays as it was)."""

    SPARE = 64
    """Columns added beyond what is needed when the buffers are (re)allocated (and at least half the length)."""

    def __init__(self) -> None:
        super().__init__()
        self._k: torch.Tensor | None = None
        self._v: torch.Tensor | None = None

    @classmethod
    def of(cls, layer: Any) -> "_GrowingLayer":
        grown = cls()
        grown.__dict__.update({k: v for k, v in layer.__dict__.items() if k not in ("_k", "_v")})
        return grown

    def _owns(self, need: int) -> bool:
        """`keys` / `values` are still views of the start of this layer's buffers, with room for `need` columns."""
        k, v = self._k, self._v
        return (
            k is not None
            and v is not None
            and k.shape[-2] >= need
            and self.keys.data_ptr() == k.data_ptr()
            and self.values.data_ptr() == v.data_ptr()
            and self.keys.shape[:-2] == k.shape[:-2]
            and self.values.shape[:-2] == v.shape[:-2]
            and self.keys.stride() == k.stride()
            and self.values.stride() == v.stride()
        )

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized or self.keys.numel() == 0:
            return super().update(key_states, value_states, *args, **kwargs)
        n, add = self.keys.shape[-2], key_states.shape[-2]
        if not self._owns(n + add):
            room = n + add + max(self.SPARE, n // 2)
            self._k = self.keys.new_empty(*self.keys.shape[:-2], room, self.keys.shape[-1])
            self._v = self.values.new_empty(*self.values.shape[:-2], room, self.values.shape[-1])
            self._k[..., :n, :] = self.keys
            self._v[..., :n, :] = self.values
        assert self._k is not None and self._v is not None
        self._k[..., n : n + add, :] = key_states
        self._v[..., n : n + add, :] = value_states
        self.keys, self.values = self._k[..., : n + add, :], self._v[..., : n + add, :]
        return self.keys, self.values


def column_major_linears(model: Any) -> int:
    """Store every `nn.Linear` weight [out, in] column-major (the same values, its transpose contiguous).

    `linear(x, W)` is `x @ Wᵀ`; with Wᵀ contiguous, MKL's fp32 GEMM on a CPU runs a few rows of `x`
    (a decode step of a small batch) about twice as fast as with the row-major weight, and a single row
    no slower (measured on the demo's model, one thread: an 8-row step's matmuls 150 → 112 ms). The
    results are the same up to float rounding (summation order). Tied weights (an output layer sharing
    the embedding) are converted once; an embedding lookup reads the rows of either layout. Returns
    how many weights changed."""
    seen: set[int] = set()
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if not isinstance(module, torch.nn.Linear) or not isinstance(weight, torch.Tensor) or weight.dim() != 2:
            continue
        if id(weight) in seen or not weight.is_contiguous():
            continue
        seen.add(id(weight))
        with torch.no_grad():
            weight.data = weight.data.t().contiguous().t()
    return len(seen)


class PrefixCache:
    """The KV caches of recent prompts (one set of weights), so a prompt that begins like one of them
    prefills only the rest: the n samples of a prompt asked again, rater prompts that share a long
    template, chat prompts that share a system prompt. Entries are never changed in place (the
    batch's cache grows by concatenation), so a lookup hands out views."""

    def __init__(self, entries: int = 8, min_tokens: int = 8, max_tokens: int = 16384):
        self.size = entries
        self.min_tokens = min_tokens
        self.max_tokens = max_tokens
        """All entries together hold at most this many tokens (the oldest go first)."""
        self.entries: list[tuple[list[int], list[tuple[torch.Tensor, torch.Tensor]]]] = []

    def match(self, prompt_ids: list[int]) -> tuple[int, int]:
        """(entry, length) of the longest stored prefix of `prompt_ids` that `lookup` would use; (-1, 0) if none."""
        best, best_len = -1, 0
        for e, (tokens, _) in enumerate(self.entries):
            n = 0
            limit = min(len(tokens), len(prompt_ids) - 1)
            while n < limit and tokens[n] == prompt_ids[n]:
                n += 1
            if n > best_len:
                best, best_len = e, n
        if best < 0 or best_len < self.min_tokens:
            return -1, 0
        return best, best_len

    def lookup(self, prompt_ids: list[int]) -> tuple[int, list[tuple[torch.Tensor, torch.Tensor]]]:
        """The longest stored prefix of `prompt_ids` (leaving at least its last token to prefill) and its KV per layer."""
        best, best_len = self.match(prompt_ids)
        if best < 0:
            return 0, []
        return best_len, self.take(best, best_len)

    def take(self, entry: int, length: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The KV per layer of entry `entry`'s first `length` tokens (views); the entry becomes the most recently used."""
        self.entries.insert(0, self.entries.pop(entry))
        return [(k[..., :length, :], v[..., :length, :]) for k, v in self.entries[0][1]]

    def store(self, prompt_ids: list[int], cache: Any) -> None:
        if self.size <= 0 or not _mergeable(cache) or len(prompt_ids) <= self.min_tokens:
            return
        self.entries = [e for e in self.entries if e[0] != prompt_ids]
        self.entries.insert(0, (list(prompt_ids), [(layer.keys, layer.values) for layer in cache.layers]))
        del self.entries[self.size :]
        while self.entries and sum(len(tokens) for tokens, _ in self.entries) > self.max_tokens:
            self.entries.pop()


@dataclass
class _Prefilled:
    """A prefilled prompt's rows, waiting to join the batch: `cache` holds [rows, heads, length, dim] per layer."""

    cache: Any
    length: int
    last: torch.Tensor
    rows: list[_Row]


PREFILL_TOKENS = 4096
"""A batched prefill carries at most this many token positions (prompts × the longest, padding included)."""


def prefill_groups(lengths: Sequence[int], budget: int = PREFILL_TOKENS) -> list[list[int]]:
    """Indices of prompts to prefill together, longest first. A group is padded to its longest prompt
    `L`: it takes the next prompt (length `l`) while `k + 1` prompts × `L` stay within `budget` and
    the padding `(k + 1)·L − Σ l` stays at most the real tokens `Σ l` (padding costs compute like a
    real token; a prompt far shorter than the group's longest goes to a later group)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    groups: list[list[int]] = []
    for i in order:
        if groups:
            group = groups[-1]
            width = lengths[group[0]]
            real = sum(lengths[j] for j in group) + lengths[i]
            if (len(group) + 1) * width <= budget and (len(group) + 1) * width <= 2 * real:
                group.append(i)
                continue
        groups.append([i])
    return groups


class Batch:
    """Sequences decoded together, one forward pass per step over a shared KV cache (continuous batching).

    A prompt is prefilled alone, or with others that join at the same time (`add_many`, right-padded,
    so each prompt's keys and values are the ones it gets alone, up to float rounding in batched
    kernels); its rows then join the batch's cache, left-padded to a common length. An attention mask hides the
    padding and position ids carry each row's own positions, so a row's logits do not depend on what
    else is in the batch (up to float rounding in batched kernels). Finished rows leave between steps
    and columns no row uses any more are trimmed. Caches other than a plain DynamicCache (e.g.
    sliding-window layers) cannot be joined: such a batch takes one prompt at a time (`can_join`).
    With `prefixes`, a prefill starts from the KV of a recent prompt that begins the same way.
    """

    def __init__(self, model: Any, tokenizer: PreTrainedTokenizerBase, end_ids: set[int], should_stop: Callable[[], bool] | None = None, prefixes: PrefixCache | None = None):
        self.model = model
        self.prefixes = prefixes
        self.tokenizer = tokenizer
        self.end_ids = set(end_ids)
        self.should_stop = should_stop
        self.device = next(model.parameters()).device
        self.cache_kw = "cache" if _accepts(model, "cache") else "past_key_values"  # transformers 5.x renamed it
        self.keep_kw = _accepts(model, "logits_to_keep")
        self.rows: list[_Row] = []
        self.cache: Any = None
        self.mask = torch.zeros(0, 0, dtype=torch.long, device=self.device)
        """[rows, cache length]: 1 where the cache holds one of the row's tokens, 0 for padding."""
        self.last = torch.zeros(0, 0, device=self.device)
        """[rows, vocabulary]: the logits each row's next token is picked from."""
        self.mergeable = True
        self.joinable = _joinable(model)
        """The model's cache can be joined (and so several prompts can be prefilled together)."""

    @property
    def can_join(self) -> bool:
        return not self.rows or self.mergeable

    @torch.inference_mode()
    def add(self, prompt_ids: list[int], params: SamplingParams) -> Job:
        """Prefill a prompt; its `n` rows take part from the next `step` on (the job may already be done: max_tokens 0)."""
        if not self.can_join:
            raise RuntimeError("this batch's cache cannot take another prompt while it decodes")
        job, part = self._prefill_one(prompt_ids, params)
        self._join([part] if part is not None else [])
        return job

    @torch.inference_mode()
    def add_many(self, work: Sequence[tuple[list[int], SamplingParams]]) -> list[Job]:
        """Prefill several prompts, sharing forward passes where it pays (`prefill_groups`), and return
        their jobs in order; their rows take part from the next `step` on. Prompts that ask for
        prompt logprobs are prefilled on their own. A group whose prompts all begin with the same
        tokens as a `PrefixCache` entry (a chat template's system prompt) starts from that entry's KV;
        a prompt whose own match is much longer (`_better_alone`: asked again) prefills on its own.
        Nothing joins unless every prefill succeeds (an error leaves the batch as it was)."""
        if len(work) > 1 and not (self.joinable and self.can_join):
            raise RuntimeError("this batch's cache cannot take several prompts at once")
        if len(work) == 1:
            return [self.add(*work[0])]
        jobs: list[Job | None] = [None] * len(work)
        parts: list[_Prefilled | None] = [None] * len(work)
        shared: list[int] = []
        for i, (prompt_ids, params) in enumerate(work):
            if params.prompt_logprobs is not None or not prompt_ids:
                jobs[i], parts[i] = self._prefill_one(prompt_ids, params)
            else:
                shared.append(i)
        for group in prefill_groups([len(work[i][0]) for i in shared]):
            at = [shared[g] for g in group]
            entry, cached = self._shared_prefix([work[i][0] for i in at])
            alone = [i for i in at if self._better_alone(work[i][0], cached)]
            if alone:
                at = [i for i in at if i not in alone]
                entry, cached = self._shared_prefix([work[i][0] for i in at]) if len(at) > 1 else (-1, 0)
            if len(at) == 1:
                alone, at = alone + at, []
            if at:
                past = self.prefixes.take(entry, cached) if self.prefixes is not None and entry >= 0 else []
                for i, (job, part) in zip(at, self._prefill_shared([work[i] for i in at], cached, past)):
                    jobs[i], parts[i] = job, part
            for i in alone:
                jobs[i], parts[i] = self._prefill_one(*work[i])
        self._join([p for p in parts if p is not None])
        return [j for j in jobs if j is not None]

    ALONE_SLACK = 8
    """Tokens a prompt may prefill beyond twice its own prefix-cache remainder and still share a prefill."""

    def _better_alone(self, prompt_ids: list[int], cached: int) -> bool:
        """A prompt whose own `PrefixCache` match is much longer than the group's `cached` prefix (asked
        again, or sharing more than a template with a recent prompt) prefills on its own: together it
        would compute `len − cached` tokens, alone `len − match`; alone wins when
        `len − cached > 2·(len − match) + ALONE_SLACK`."""
        if self.prefixes is None:
            return False
        _, match = self.prefixes.match(prompt_ids)
        return len(prompt_ids) - cached > 2 * (len(prompt_ids) - match) + self.ALONE_SLACK

    def _shared_prefix(self, prompts: Sequence[list[int]]) -> tuple[int, int]:
        """(entry, p): the longest beginning `p` common to all `prompts` that `PrefixCache` entry `entry`
        holds (leaving each prompt at least one token to prefill); (-1, 0) if under `min_tokens`."""
        if self.prefixes is None:
            return -1, 0
        common = min(len(p) for p in prompts) - 1
        first = prompts[0]
        for other in prompts[1:]:
            n = 0
            while n < common and other[n] == first[n]:
                n += 1
            common = n
        best, best_len = max((self.prefixes.match(p) for p in prompts), key=lambda m: m[1])
        length = min(common, best_len)
        if best < 0 or length < self.prefixes.min_tokens:
            return -1, 0
        return best, length

    def _prefill_shared(self, work: Sequence[tuple[list[int], SamplingParams]], cached: int = 0, past: Sequence[tuple[torch.Tensor, torch.Tensor]] = ()) -> list[tuple[Job, _Prefilled | None]]:
        """One forward pass over prompts whose first `cached` tokens (the same in all) have KV `past`:
        the rest right-padded to the longest, `W` columns. `attention_mask[i, t] = 1` for the cached
        columns and for `t < len_i`, positions `cached … cached+W−1`. Prompt i's next-token logits are
        those at its last token and its KV the first `len_i` columns of row i (copied out: the padded
        batch's cache is dropped)."""
        from transformers.cache_utils import DynamicCache

        rows = len(work)
        lengths = [len(p) for p, _ in work]
        width = max(lengths) - cached
        ids = torch.zeros(rows, width, dtype=torch.long, device=self.device)
        for i, (prompt_ids, _) in enumerate(work):
            ids[i, : len(prompt_ids) - cached] = torch.tensor(prompt_ids[cached:], dtype=torch.long, device=self.device)
        span = torch.arange(cached + width, device=self.device)
        mask = (span[None, :] < torch.tensor(lengths, device=self.device)[:, None]).long()
        ends = torch.tensor(lengths, device=self.device)[:, None] - cached - 1
        kwargs: dict[str, Any] = {"use_cache": True}
        if self.keep_kw:
            kwargs["logits_to_keep"] = ends  # [prompts, 1]: one position per row
        if past:
            kwargs[self.cache_kw] = DynamicCache([(k.expand(rows, -1, -1, -1), v.expand(rows, -1, -1, -1)) for k, v in past])
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=span[None, cached:].expand(rows, -1), **kwargs)
        logits = out.logits[:, 0, :] if self.keep_kw else out.logits.gather(1, ends[:, :, None].expand(-1, -1, out.logits.shape[-1]))[:, 0, :]
        padded = _cache_of(out)
        done: list[tuple[Job, _Prefilled | None]] = []
        for i, (prompt_ids, params) in enumerate(work):
            n = lengths[i]
            job = Job(prompt_ids, params, self.end_ids)
            job.generation.forward_passes += 1
            job.generation.cached_prompt_tokens = cached
            cache = DynamicCache([(layer.keys[i : i + 1, :, :n, :], layer.values[i : i + 1, :, :n, :]) for layer in padded.layers])
            if self.prefixes is not None:
                self.prefixes.store(prompt_ids, cache)
            if params.max_tokens <= 0:
                job.end_empty("length")
                done.append((job, None))
                continue
            if params.n > 1:
                cache.batch_repeat_interleave(params.n)
            last = logits[i : i + 1].float().expand(params.n, -1)
            done.append((job, _Prefilled(cache, n, last, [_Row(job, c, n, self.device) for c in range(params.n)])))
        return done

    def _prefill_one(self, prompt_ids: list[int], params: SamplingParams) -> tuple[Job, _Prefilled | None]:
        """Prefill one prompt on its own (from a `PrefixCache` entry where one matches)."""
        job = Job(prompt_ids, params, self.end_ids)
        want_prompt_lp = params.prompt_logprobs is not None
        kwargs: dict[str, Any] = {"use_cache": True}
        if not want_prompt_lp and self.keep_kw:
            kwargs["logits_to_keep"] = 1
        cached, past = self.prefixes.lookup(prompt_ids) if self.prefixes is not None and not want_prompt_lp else (0, [])
        if past:
            from transformers.cache_utils import DynamicCache

            kwargs[self.cache_kw] = DynamicCache(past)
        out = self.model(input_ids=torch.tensor([prompt_ids[cached:]], dtype=torch.long, device=self.device), **kwargs)
        job.generation.forward_passes += 1
        job.generation.cached_prompt_tokens = cached
        if self.prefixes is not None:
            self.prefixes.store(prompt_ids, _cache_of(out))
        if want_prompt_lp:
            job.generation.prompt_logprobs = _prompt_logprobs(out.logits[0], prompt_ids, params.prompt_logprobs or 0)
        if params.max_tokens <= 0:
            job.end_empty("length")
            return job, None
        cache = _cache_of(out)
        if params.n > 1:  # the prompt runs once; its cache serves every choice
            cache.batch_repeat_interleave(params.n)
        last = out.logits[:, -1, :].float().expand(params.n, -1)
        return job, _Prefilled(cache, len(prompt_ids), last, [_Row(job, i, len(prompt_ids), self.device) for i in range(params.n)])

    def _join(self, parts: list[_Prefilled]) -> None:
        """The prefilled rows join the batch: every cache left-padded to the longest, concatenated once."""
        if not parts:
            return
        if not self.rows:
            first, parts = parts[0], parts[1:]
            self.cache, self.last, self.rows = first.cache, first.last.contiguous(), first.rows
            self.mask = torch.ones(len(first.rows), first.length, dtype=torch.long, device=self.device)
            self.mergeable = _mergeable(first.cache)
            if self.mergeable:  # decode steps then write into the cache in place
                self.cache.layers = [layer if isinstance(layer, _GrowingLayer) else _GrowingLayer.of(layer) for layer in self.cache.layers]
            if not parts:
                return
        width = max([self.mask.shape[1]] + [p.length for p in parts])
        for layer, old in enumerate(self.cache.layers):
            old.keys = torch.cat([_pad_left(old.keys, width, -2)] + [_pad_left(p.cache.layers[layer].keys, width, -2) for p in parts])
            old.values = torch.cat([_pad_left(old.values, width, -2)] + [_pad_left(p.cache.layers[layer].values, width, -2) for p in parts])
        masks = [torch.ones(len(p.rows), p.length, dtype=torch.long, device=self.device) for p in parts]
        self.mask = torch.cat([_pad_left(self.mask, width, -1)] + [_pad_left(m, width, -1) for m in masks])
        self.last = torch.cat([self.last] + [p.last for p in parts])
        self.rows += [row for p in parts for row in p.rows]

    @torch.inference_mode()
    def step(self) -> list[Job]:
        """Pick every row's next token, let finished rows leave, run the next forward pass. Returns the jobs that finished."""
        if not self.rows:
            return []
        chosen = self._pick()
        tokens = chosen.tolist()
        self._record_logprobs(chosen, tokens)
        done: list[Job] = []
        keep: list[int] = []
        for r, (row, token) in enumerate(zip(self.rows, tokens)):
            row.tokens.append(token)
            state = self._finished(row)
            if state is None:
                keep.append(r)
            elif row.job.settle(row.index, self._choice(row, state)):
                done.append(row.job)
        if keep and self.should_stop is not None and self.should_stop():
            done += self._end([self.rows[r] for r in keep], "abort")
            keep = []
        self._keep(keep)
        if self.rows:
            self._forward(chosen[keep] if len(keep) < len(chosen) else chosen)
        return done

    def abort(self) -> list[Job]:
        """End every row now ("abort"); returns the jobs that finished."""
        done = self._end(self.rows, "abort")
        self._keep([])
        return done

    def _end(self, rows: list[_Row], reason: str) -> list[Job]:
        return [row.job for row in rows if row.job.settle(row.index, self._choice(row, None, reason))]

    def _pick(self) -> torch.Tensor:
        """Each row's next token, sampled with its own settings and generator (greedy at temperature 0)."""
        chosen = torch.empty(len(self.rows), dtype=torch.long, device=self.device)
        groups: dict[tuple[float, float, int], list[int]] = {}
        for r, row in enumerate(self.rows):
            p = row.job.params
            groups.setdefault((p.temperature, p.top_p, p.top_k), []).append(r)
        for idx in groups.values():
            params = self.rows[idx[0]].job.params
            at = torch.tensor(idx, device=self.device)
            logits = self.last if len(idx) == len(self.rows) else self.last[at]
            if params.temperature == 0:
                chosen[at] = logits.argmax(dim=-1)
                continue
            probs, order = _sample_filter(logits, params)
            uniform = torch.cat([torch.rand(1, generator=self.rows[r].generator, dtype=torch.float64, device=self.device) for r in idx])
            picked = _inverse_cdf(probs, uniform)
            chosen[at] = picked if order is None else order.gather(1, picked[:, None]).squeeze(1)
        return chosen

    def _record_logprobs(self, chosen: torch.Tensor, tokens: list[int]) -> None:
        idx = [r for r, row in enumerate(self.rows) if row.job.params.logprobs is not None]
        if not idx:
            return
        every = len(idx) == len(self.rows)
        at = torch.tensor(idx, device=self.device)
        logprobs = torch.log_softmax(self.last if every else self.last[at], dim=-1)
        values = logprobs.gather(1, (chosen if every else chosen[at])[:, None]).squeeze(1).tolist()
        k = max(self.rows[r].job.params.logprobs or 0 for r in idx)
        top_v, top_i = logprobs.topk(k, dim=-1) if k > 0 else (logprobs[:, :0], logprobs[:, :0].long())
        tv, ti = top_v.tolist(), top_i.tolist()
        for j, r in enumerate(idx):
            row = self.rows[r]
            k_row = row.job.params.logprobs or 0
            top = [(ti[j][m], _clamp(tv[j][m])) for m in range(k_row)]
            row.logprobs.append(TokenLogprob(token_id=tokens[r], logprob=_clamp(values[j]), top=top))

    def _finished(self, row: _Row) -> _Finish | None:
        params = row.job.params
        token = row.tokens[-1]
        if token in row.job.ends:
            return ("stop", token if token in params.stop_token_ids else None, None)
        if params.stop:
            hit = _first_stop(self.tokenizer.decode(row.tokens, skip_special_tokens=True), params.stop)
            if hit is not None:
                return ("stop", hit[1], hit[0])
        if len(row.tokens) >= params.max_tokens:
            return ("length", None, None)
        return None

    def _choice(self, row: _Row, state: _Finish | None, reason: str = "length") -> Choice:
        tokens = row.tokens
        finish, stop_reason, cut = state if state is not None else (reason, None, None)
        text_ids = tokens[:-1] if (finish == "stop" and cut is None) else tokens  # drop a final EOS / stop token
        text = self.tokenizer.decode(text_ids, skip_special_tokens=True)
        if cut is not None:
            text = text[:cut]
        logprobs = row.logprobs if row.job.params.logprobs is not None else None
        return Choice(token_ids=tokens, text=text, finish_reason=finish, stop_reason=stop_reason, logprobs=logprobs)

    def _keep(self, keep: list[int]) -> None:
        """Only rows `keep` stay; cache columns that no remaining row uses are dropped."""
        if len(keep) == len(self.rows):
            return
        if not keep:
            self.rows, self.cache, self.mergeable = [], None, True
            self.mask, self.last = self.mask[:0, :0], self.last[:0]
            return
        at = torch.tensor(keep, device=self.device)
        self.rows = [self.rows[r] for r in keep]
        self.cache.batch_select_indices(at)
        self.mask, self.last = self.mask[at], self.last[at]
        first = int(self.mask.any(dim=0).long().argmax())  # the first column some row still uses
        if first > 0 and self.mergeable:
            for layer in self.cache.layers:
                layer.keys, layer.values = layer.keys[..., first:, :], layer.values[..., first:, :]
            self.mask = self.mask[:, first:]

    def _forward(self, tokens: torch.Tensor) -> None:
        self.mask = torch.cat([self.mask, self.mask.new_ones(len(self.rows), 1)], dim=1)
        positions = torch.tensor([[row.position] for row in self.rows], dtype=torch.long, device=self.device)
        out = self.model(input_ids=tokens[:, None], attention_mask=self.mask, position_ids=positions, use_cache=True, **{self.cache_kw: self.cache})
        self.cache = _cache_of(out)
        self.last = out.logits[:, -1, :].float()
        for job in {id(row.job): row.job for row in self.rows}.values():
            job.generation.forward_passes += 1
        for row in self.rows:
            row.position += 1


def generate(
    model: Any,
    tokenizer: PreTrainedTokenizerBase,
    prompt_ids: list[int],
    params: SamplingParams,
    end_ids: set[int],
    should_stop: Callable[[], bool] | None = None,
) -> Generation:
    """Sample `params.n` completions of one prompt, in a batch of its own. `model` is an HF causal LM
    (LoRA layers, if any, already set the way the caller wants)."""
    batch = Batch(model, tokenizer, end_ids, should_stop)
    job = batch.add(prompt_ids, params)
    while not job.done:
        batch.step()
    return job.generation


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


__all__ = ["SamplingParams", "Choice", "Generation", "TokenLogprob", "TokenText", "Batch", "Job", "PrefixCache", "generate", "prefill_groups", "end_token_ids", "choice_seed", "LOGPROB_FLOOR"]

