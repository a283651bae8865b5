"""`serve`: an OpenAI-compatible HTTP server for a local HF causal LM, with hot-loadable LoRA adapters.

Endpoints (the subset of vLLM's API that tenet uses, so the TypeScript side works against either):

* `GET  /health`                    → `{"status": "ok"}`
* `GET  /v1/models`                 → the base model (`--served-model-name`) and every loaded adapter
* `POST /v1/chat/completions`       → messages rendered with the tokenizer's chat template
* `POST /v1/completions`            → a prompt string, a list of them, or token ids
* `POST /v1/load_lora_adapter`      `{"lora_name", "lora_path"}`: load (or *replace*: the same name
  again loads the new weights, atomically — requests see the old or the new adapter, never neither)
* `POST /v1/unload_lora_adapter`    `{"lora_name"}`

A request's `model` picks the weights: the served model name → the base model (adapters disabled); an
adapter name → that LoRA adapter. Sampling and logprobs: see `generation.py` (logprobs are raw model
logprobs, before temperature / top-p, as vLLM reports them by default). Concurrent requests are batched
(`batching.py`): a scheduler thread decodes every running sequence of the same weights in one forward
pass per token, sequences joining and leaving between steps, so the event loop stays free and a
request's tokens and logprobs do not depend on what else is running (each keeps its own sampling
settings and seeded generators).

Extensions beyond OpenAI (as in vLLM): `top_k`, `stop_token_ids`, `ignore_eos`,
`return_tokens_as_token_ids` (logprob tokens as "token_id:123"), `echo` + `max_tokens: 0` on
/v1/completions to score a prompt; each choice has a `stop_reason`.

Progress lines on stdout: `ready` (once listening: url, port, models), `adapter` (loaded / unloaded),
`done` on shutdown (requests, tokens, decode steps, the most sequences one step carried). SIGTERM /
SIGINT shut down cleanly, exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
import socket
import sys
import time
import uuid
import warnings
from collections.abc import Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from tenet_trainer import generation as gen
from tenet_trainer.batching import Scheduler
from tenet_trainer.common import UserError, emit, pick_device, pick_dtype
from tenet_trainer.config import require
from tenet_trainer import tools as tool_use
from tenet_trainer.data import render_conversation

log = logging.getLogger("tenet.serve")

MAX_LOGPROBS = 20
MAX_N = 128


@dataclass
class Config:
    model: str = ""
    """Base model: a local folder or a Hugging Face hub id."""
    served_model_name: str = "policy"
    """The name requests use for the base model (adapters disabled)."""
    adapters: str = ""
    """LoRA adapters to load at start: "name=path,name2=path2"."""
    host: str = "127.0.0.1"
    port: int = 0
    """0: pick a free port (the `ready` line says which)."""
    device: str = "auto"
    dtype: str = "auto"
    """auto: bf16 on CUDA, fp32 on CPU."""
    max_model_len: int | None = None
    """Prompt + completion tokens; default: the model's max_position_embeddings."""
    seed: int = 0
    """Seeds the per-request seeds of requests that give none (a fresh server replays the same outputs)."""
    max_num_seqs: int = 32
    """Most sequences (choices of all running requests) decoded together; more requests wait for room."""
    batch_wait_ms: float = 5.0
    """When nothing is running, how long the first request to arrive waits for others, so that a burst of
    concurrent requests is prefilled together (milliseconds; 0: none)."""
    prefix_cache: int = 8
    """Recent prompts whose KV cache is kept (per set of weights) for prompts that begin the same way; 0: off."""

    def validate(self) -> None:
        require(self, "model")
        if not 0 <= self.port <= 65535:
            raise UserError("--port: must be in [0, 65535]")
        if not self.served_model_name.strip():
            raise UserError("--served-model-name: must not be empty")
        if self.max_model_len is not None and self.max_model_len < 2:
            raise UserError("--max-model-len: must be at least 2")
        if self.max_num_seqs < 1:
            raise UserError("--max-num-seqs: must be at least 1")
        if not 0 <= self.batch_wait_ms <= 1000:
            raise UserError("--batch-wait-ms: must be in [0, 1000]")
        if self.prefix_cache < 0:
            raise UserError("--prefix-cache: must be 0 or more")
        self.adapter_specs()

    def adapter_specs(self) -> list[tuple[str, str]]:
        specs: list[tuple[str, str]] = []
        for item in filter(None, (s.strip() for s in self.adapters.split(","))):
            name, sep, path = item.partition("=")
            name, path = name.strip(), path.strip()
            if not sep or not name or not path:
                raise UserError(f"--adapters: expected name=path, got {item!r}")
            if name == self.served_model_name:
                raise UserError(f"--adapters: {name!r} is the served model name")
            if name in (n for n, _ in specs):
                raise UserError(f"--adapters: {name!r} given twice")
            specs.append((name, path))
        return specs


# ---------------------------------------------------------------------------------------------- errors


class ApiError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, type_: str | None = None, code: str | int | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.type = type_ or {400: "invalid_request_error", 404: "not_found_error"}.get(status, "server_error")
        self.code = code

    def response(self) -> JSONResponse:
        return error_response(self.status, self.message, self.param, self.type, self.code)


def error_response(status: int, message: str, param: str | None = None, type_: str = "invalid_request_error", code: str | int | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": {"message": message, "type": type_, "param": param, "code": code}})


# ------------------------------------------------------------------------------------------- requests


class _Strict(BaseModel):
    """Wrong types are 400s (no "1" → 1 coercion); unknown fields are accepted and ignored."""

    model_config = ConfigDict(strict=True, extra="allow")


class ContentPart(_Strict):
    type: str
    text: str | None = None


class ChatMessage(_Strict):
    role: str
    content: str | list[ContentPart] | None = None


class _Sampling(_Strict):
    model: str | None = None
    """Default: the base model."""
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    top_k: int | None = Field(default=None, ge=-1)
    n: int | None = Field(default=None, ge=1, le=MAX_N)
    seed: int | None = None
    stop: str | list[str] | None = None
    stop_token_ids: list[int] | None = None
    ignore_eos: bool | None = None
    stream: bool | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    repetition_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    return_tokens_as_token_ids: bool | None = None


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=MAX_LOGPROBS)


class CompletionRequest(_Sampling):
    prompt: str | list[str] | list[int] | list[list[int]]
    max_tokens: int | None = Field(default=None, ge=0)
    logprobs: int | None = Field(default=None, ge=0, le=MAX_LOGPROBS)
    echo: bool | None = None


class LoadLoraRequest(_Strict):
    lora_name: str = Field(min_length=1)
    lora_path: str = Field(min_length=1)


class UnloadLoraRequest(_Strict):
    lora_name: str = Field(min_length=1)


def _known_fields() -> set[str]:
    names: set[str] = set()
    for cls in (ChatCompletionRequest, CompletionRequest, ChatMessage, ContentPart, LoadLoraRequest, UnloadLoraRequest):
        names |= set(cls.model_fields)
    return names


_KNOWN_FIELDS = _known_fields()


_UNION_TAGS = {
    "str": "a string",
    "list[str]": "a list of strings",
    "list[int]": "a list of token ids",
    "list[list[int]]": "a list of token id lists",
    "list[ContentPart]": "a list of content parts",
    "int": "an integer",
    "float": "a number",
    "bool": "a boolean",
}
_MISSING = object()


def _at(body: Any, parts: list[str]) -> Any:
    for p in parts:
        if isinstance(body, dict) and p in body:
            body = body[p]
        elif isinstance(body, list) and p.isdigit() and int(p) < len(body):
            body = body[int(p)]
        else:
            return _MISSING
    return body


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def validation_error(exc: RequestValidationError) -> JSONResponse:
    """The first bad field → `param` (e.g. "messages.0.content") and a message naming it and what was wrong."""
    errors = exc.errors()
    if not errors:
        return error_response(400, "invalid request")
    first = errors[0]
    if first.get("type") == "json_invalid":
        detail = (first.get("ctx") or {}).get("error", first.get("msg", ""))
        return error_response(400, f"the request body is not valid JSON ({detail})")

    def split(err: dict[str, Any]) -> tuple[list[str], str | None]:
        parts: list[str] = []
        tag = None
        for p in (p for p in err.get("loc", ()) if p != "body"):
            if isinstance(p, int) or p in _KNOWN_FIELDS:
                parts.append(str(p))
            else:  # a union member's tag such as 'list[str]'
                tag = str(p)
                break
        return parts, tag

    parts, tag = split(first)
    param = ".".join(parts) or None
    value = _at(exc.body, parts) if parts else _MISSING
    if first.get("type") == "missing":
        message = "required"
    elif tag is not None:
        tags: list[str] = []
        for err in errors:
            p, t = split(err)
            if p == parts and t is not None and t not in tags:
                tags.append(t)
        message = "expected " + " or ".join(_UNION_TAGS.get(t, t) for t in tags)
    else:
        message = str(first.get("msg", "invalid"))
    if value is not _MISSING and first.get("type") != "missing":
        message += f", got {_short(value)}"
    return error_response(400, f"{param}: {message}" if param else message, param)


# --------------------------------------------------------------------------------------------- engine


@dataclass
class Adapter:
    name: str
    path: str
    internal: str
    """PEFT's name for it: unique per load, so a replacement can be loaded beside the old one."""
    loaded_at: int


class Engine:
    """The model, its LoRA adapters and the scheduler. Every model call, and every change to the
    weights, happens on the scheduler's thread (`batching.Scheduler`)."""

    def __init__(self, config: Config):
        from tenet_trainer.models import load_causal_lm, load_tokenizer

        self.config = config
        self.base_name = config.served_model_name
        self.device = pick_device(config.device)
        self.dtype = pick_dtype(self.device, config.dtype)
        self.tokenizer = load_tokenizer(config.model)
        self.model = load_causal_lm(config.model, self.device, self.dtype)
        self.model.eval()
        if self.device.type == "cpu":  # faster few-row decode steps (see `column_major_linears`)
            gen.column_major_linears(self.model)
        self.peft: Any = None
        self.adapters: dict[str, Adapter] = {}
        """Replaced, never changed in place: other threads read it while the scheduler's thread loads."""
        self.stopping = False
        self._next_internal = 0
        self._pins: dict[str | None, int] = {}
        """Weights key (None: the base model, else an adapter's internal name) → requests using it."""
        self._retired: set[str] = set()
        """Internal names of adapters replaced or unloaded while requests still used them."""
        self.end_ids = gen.end_token_ids(self.tokenizer, self.model)
        self.token_text = gen.TokenText(self.tokenizer)
        self.vocab_size = int(self.model.get_output_embeddings().weight.shape[0]) if self.model.get_output_embeddings() is not None else len(self.tokenizer)
        self.max_model_len = config.max_model_len or self._default_max_len()
        self.seeds = random.Random(config.seed)
        self.created = int(time.time())
        self.stats = {"requests": 0, "completion_tokens": 0, "seconds": 0.0}
        self.scheduler = Scheduler(self, config.max_num_seqs, config.prefix_cache, config.batch_wait_ms / 1000)

    def _default_max_len(self) -> int:
        limits = [getattr(self.model.config, "max_position_embeddings", None), getattr(self.tokenizer, "model_max_length", None)]
        sane = [int(x) for x in limits if isinstance(x, int) and 1 < x < 10_000_000]
        return min(sane) if sane else 4096

    # -- names

    def model_names(self) -> list[str]:
        return [self.base_name, *self.adapters]

    def check_model(self, name: str | None) -> str:
        name = name or self.base_name
        if name != self.base_name and name not in self.adapters:
            raise self._no_model(name)
        return name

    def _no_model(self, name: str) -> ApiError:
        return ApiError(404, f"The model `{name}` does not exist. Served models: {', '.join(self.model_names())}", "model", code="model_not_found")

    # -- adapters

    def load_adapter(self, name: str, path: str) -> bool:
        """Load (or replace) adapter `name` from `path`. Returns whether it replaced one."""
        if name == self.base_name:
            raise ApiError(400, f"lora_name: {name!r} is the base model's served name", "lora_name")
        folder = Path(path)
        if not folder.is_dir():
            raise ApiError(400, f"lora_path: {path!r} is not a folder", "lora_path")
        if not (folder / "adapter_config.json").is_file():
            raise ApiError(400, f"lora_path: no adapter_config.json in {path!r}", "lora_path")
        return self.scheduler.call(lambda: self._load(name, folder, path))

    def _load(self, name: str, folder: Path, path: str) -> bool:
        from peft import PeftConfig, PeftModel

        internal = f"adapter_{self._next_internal}"
        self._next_internal += 1
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if self.peft is None:
                    # Wrap once (a fresh LoRA, dropped at once) so a failed load below can be cleaned up.
                    peft_config = PeftConfig.from_pretrained(str(folder))
                    peft_config.inference_mode = True
                    self.peft = PeftModel(self.model, peft_config, adapter_name="bootstrap")
                    self.peft.delete_adapter("bootstrap")
                    self.peft.eval()
                self.peft.load_adapter(str(folder), adapter_name=internal, is_trainable=False, torch_device=str(self.device))
        except Exception as err:  # noqa: BLE001 - every failure is the caller's adapter
            if self.peft is not None and internal in self.peft.peft_config:
                with contextlib.suppress(Exception), warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    self.peft.delete_adapter(internal)
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise ApiError(400, f"lora_path: cannot load the adapter at {path!r}: {first[:500]}", "lora_path") from None
        old = self.adapters.get(name)
        self.adapters = {**self.adapters, name: Adapter(name=name, path=str(folder), internal=internal, loaded_at=int(time.time()))}
        if old is not None:
            self._retire(old.internal)
        self.model.eval()
        return old is not None

    def unload_adapter(self, name: str) -> None:
        if name == self.base_name:
            raise ApiError(400, f"lora_name: {name!r} is the base model, not an adapter", "lora_name")
        self.scheduler.call(lambda: self._unload(name))

    def _unload(self, name: str) -> None:
        adapter = self.adapters.get(name)
        if adapter is None:
            raise ApiError(404, f"The lora adapter '{name}' cannot be found. Loaded adapters: {', '.join(self.adapters) or 'none'}", "lora_name", code="adapter_not_found")
        self.adapters = {k: v for k, v in self.adapters.items() if k != name}
        self._retire(adapter.internal)

    def _retire(self, internal: str) -> None:
        """Drop an adapter's weights now, or once the last request using them has its answer."""
        if self._pins.get(internal):
            self._retired.add(internal)
        else:
            self._delete(internal)

    def _delete(self, internal: str) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.peft.delete_adapter(internal)

    # -- the scheduler's host (called on its thread)

    def acquire(self, name: str) -> str | None:
        if name == self.base_name:
            key = None
        else:
            adapter = self.adapters.get(name)
            if adapter is None:  # unloaded while this request waited
                raise self._no_model(name)
            key = adapter.internal
        self._pins[key] = self._pins.get(key, 0) + 1
        return key

    def release(self, key: Hashable) -> None:
        assert key is None or isinstance(key, str)
        self._pins[key] -= 1
        if self._pins[key] == 0:
            del self._pins[key]
            if key in self._retired:
                self._retired.discard(key)
                self._delete(key)

    @contextlib.contextmanager
    def weights(self, key: Hashable):
        """Make the model compute with `key`'s weights (None: the base model, adapters disabled)."""
        if key is None:
            if self.peft is not None and self.peft.peft_config:
                self.peft.set_adapter(next(iter(self.peft.peft_config)), inference_mode=True)  # disable_adapter needs a valid active one
                with self.peft.disable_adapter():
                    yield
            else:
                yield
            return
        self.peft.set_adapter(key, inference_mode=True)
        yield

    def record(self, generations: list[gen.Generation]) -> None:
        self.stats["requests"] += 1
        self.stats["completion_tokens"] += sum(len(c.token_ids) for r in generations for c in r.choices)
        self.stats["seconds"] += sum(r.seconds for r in generations)

    # -- generation

    async def generate(self, name: str, prompts: list[list[int]], params: list[gen.SamplingParams]) -> list[gen.Generation]:
        """One Generation per prompt; prompts of concurrent requests share forward passes."""
        return await asyncio.wrap_future(self.scheduler.submit(name, prompts, params))

    def request_seed(self, seed: int | None) -> int:
        return seed if seed is not None else self.seeds.getrandbits(63)

    def close(self) -> None:
        self.scheduler.close()


# ------------------------------------------------------------------------------------ request → params


def _check_unsupported(req: _Sampling) -> None:
    if req.stream:
        raise ApiError(400, "stream: streaming is not supported by this server; send stream=false", "stream")
    for name in ("frequency_penalty", "presence_penalty"):
        value = getattr(req, name)
        if value not in (None, 0, 0.0):
            raise ApiError(400, f"{name}: not supported by this server (only 0)", name)
    if req.repetition_penalty not in (None, 1, 1.0):
        raise ApiError(400, "repetition_penalty: not supported by this server (only 1)", "repetition_penalty")
    if req.logit_bias:
        raise ApiError(400, "logit_bias: not supported by this server", "logit_bias")


def _stops(req: _Sampling) -> tuple[str, ...]:
    stop = req.stop
    stops = (stop,) if isinstance(stop, str) else tuple(stop or ())
    if any(s == "" for s in stops):
        raise ApiError(400, "stop: stop strings must not be empty", "stop")
    return stops


def _params(engine: Engine, req: _Sampling, prompt_len: int, max_tokens: int | None, default_max: int | None, logprobs: int | None, prompt_logprobs: int | None, seed: int, param: str) -> gen.SamplingParams:
    room = engine.max_model_len - prompt_len
    if room < 0 or (room == 0 and max_tokens != 0):
        raise ApiError(400, f"This model's maximum context length is {engine.max_model_len} tokens. However, your {param} has {prompt_len} tokens. Please reduce the length of the {param}.", param)
    if max_tokens is None:
        max_tokens = room if default_max is None else min(default_max, room)
    elif prompt_len + max_tokens > engine.max_model_len:
        raise ApiError(
            400,
            f"This model's maximum context length is {engine.max_model_len} tokens. However, you requested {prompt_len + max_tokens} tokens ({prompt_len} in the {param}, {max_tokens} in the completion). Please reduce the length of the {param} or max_tokens.",
            "max_tokens",
        )
    stop_ids = frozenset(req.stop_token_ids or ())
    bad = [t for t in stop_ids if not 0 <= t < engine.vocab_size]
    if bad:
        raise ApiError(400, f"stop_token_ids: {bad[0]} is not a token id (vocabulary size {engine.vocab_size})", "stop_token_ids")
    return gen.SamplingParams(
        max_tokens=max_tokens,
        temperature=1.0 if req.temperature is None else float(req.temperature),
        top_p=1.0 if req.top_p is None else float(req.top_p),
        top_k=req.top_k or 0,
        seed=seed,
        n=req.n or 1,
        stop=_stops(req),
        stop_token_ids=stop_ids,
        ignore_eos=bool(req.ignore_eos),
        logprobs=logprobs,
        prompt_logprobs=prompt_logprobs,
    )


def _message_text(message: ChatMessage, index: int) -> str:
    content = message.content
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    texts = []
    for j, part in enumerate(content):
        if part.type != "text" or part.text is None:
            raise ApiError(400, f"messages.{index}.content.{j}: only text content parts are supported (got type {part.type!r})", f"messages.{index}.content")
        texts.append(part.text)
    return "".join(texts)


def _usage(results: list[gen.Generation]) -> dict[str, Any]:
    """OpenAI's usage block; `prompt_tokens_details.cached_tokens`: prompt tokens served from the prefix cache."""
    prompt_tokens = sum(len(r.prompt_ids) for r in results)
    completion_tokens = sum(len(c.token_ids) for r in results for c in r.choices)
    cached = sum(r.cached_prompt_tokens for r in results)
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens, "prompt_tokens_details": {"cached_tokens": cached}}


# --------------------------------------------------------------------------------------------- the app


def create_app(engine: Engine) -> FastAPI:
    app = FastAPI(title="tenet serve", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(RequestValidationError)
    async def _on_validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return validation_error(exc)

    @app.exception_handler(ApiError)
    async def _on_api_error(_: Request, exc: ApiError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(StarletteHTTPException)
    async def _on_http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail), None, "not_found_error" if exc.status_code == 404 else "invalid_request_error")

    @app.exception_handler(Exception)
    async def _on_crash(_: Request, exc: Exception) -> JSONResponse:
        log.exception("request failed")
        return error_response(500, f"internal error: {type(exc).__name__}: {str(exc)[:300]}", None, "server_error")

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "models": engine.model_names()}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        data = [{"id": engine.base_name, "object": "model", "created": engine.created, "owned_by": "tenet", "root": engine.config.model, "parent": None, "max_model_len": engine.max_model_len}]
        data += [{"id": a.name, "object": "model", "created": a.loaded_at, "owned_by": "tenet", "root": a.path, "parent": engine.base_name, "max_model_len": engine.max_model_len} for a in list(engine.adapters.values())]
        return {"object": "list", "data": data}

    @app.post("/v1/chat/completions")
    async def chat(req: ChatCompletionRequest) -> JSONResponse:
        _check_unsupported(req)
        name = engine.check_model(req.model)
        if req.top_logprobs is not None and not req.logprobs:
            raise ApiError(400, "top_logprobs: requires logprobs=true", "top_logprobs")
        try:
            offered = tool_use.request_tools((req.model_extra or {}).get("tools"))
        except UserError as err:
            raise ApiError(400, str(err), "tools") from None
        # Tool calls and results keep their fields; tools render through the template (tools.py).
        messages = [tool_use.request_message(m.role, _message_text(m, i), m.model_extra) for i, m in enumerate(req.messages)]
        try:
            prompt = render_conversation(engine.tokenizer, messages, offered, add_generation_prompt=True)
        except Exception as err:  # noqa: BLE001 - a template that rejects these messages
            raise ApiError(400, f"messages: the chat template rejects them ({str(err).splitlines()[0] if str(err) else type(err).__name__})", "messages") from None
        ids = engine.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        max_tokens = req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens
        seed = engine.request_seed(req.seed)
        params = _params(engine, req, len(ids), max_tokens, None, (req.top_logprobs or 0) if req.logprobs else None, None, seed, "messages")
        (result,) = await engine.generate(name, [ids], [params])
        as_ids = bool(req.return_tokens_as_token_ids)
        choices = []
        for i, c in enumerate(result.choices):
            lp = None
            if c.logprobs is not None:
                lp = {"content": [_chat_logprob(engine, t, as_ids) for t in c.logprobs], "refusal": None}
            message, called = tool_use.chat_answer(c.text, messages, offered is not None)
            choices.append({"index": i, "message": message, "logprobs": lp, "finish_reason": "tool_calls" if called else c.finish_reason, "stop_reason": c.stop_reason})
        body = {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": name,
            "system_fingerprint": None,
            "choices": choices,
            "usage": _usage([result]),
        }
        return JSONResponse(body)

    @app.post("/v1/completions")
    async def completions(req: CompletionRequest) -> JSONResponse:
        _check_unsupported(req)
        name = engine.check_model(req.model)
        prompts = _prompt_ids(engine, req.prompt)
        echo = bool(req.echo)
        seed = engine.request_seed(req.seed)
        n = req.n or 1
        params = []
        for p, ids in enumerate(prompts):
            # Prompt 0 samples with the request seed (as a single prompt would); prompt p > 0 with one derived from (seed, p*n).
            base = _params(engine, req, len(ids), req.max_tokens, 16, req.logprobs, req.logprobs if (echo and req.logprobs is not None) else None, seed, "prompt")
            params.append(base if p == 0 else _shift_seed(base, seed, p * n))
        results = await engine.generate(name, prompts, params)
        choices = []
        for p, result in enumerate(results):
            prompt_text = engine.tokenizer.decode(result.prompt_ids, skip_special_tokens=False) if echo else ""
            for j, c in enumerate(result.choices):
                lp = None
                if req.logprobs is not None:
                    lp = _legacy_logprobs(engine, result, c, echo, bool(req.return_tokens_as_token_ids))
                choices.append({"index": p * n + j, "text": prompt_text + c.text, "logprobs": lp, "finish_reason": c.finish_reason, "stop_reason": c.stop_reason})
        body = {
            "id": f"cmpl-{uuid.uuid4().hex}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": name,
            "system_fingerprint": None,
            "choices": choices,
            "usage": _usage(results),
        }
        return JSONResponse(body)

    @app.post("/v1/load_lora_adapter")
    async def load_lora(req: LoadLoraRequest) -> PlainTextResponse:
        started = time.perf_counter()
        replaced = await asyncio.to_thread(engine.load_adapter, req.lora_name, req.lora_path)
        emit("adapter", action="replaced" if replaced else "loaded", name=req.lora_name, path=req.lora_path, seconds=round(time.perf_counter() - started, 3), models=engine.model_names())
        return PlainTextResponse(f"Success: LoRA adapter '{req.lora_name}' added successfully.")

    @app.post("/v1/unload_lora_adapter")
    async def unload_lora(req: UnloadLoraRequest) -> PlainTextResponse:
        await asyncio.to_thread(engine.unload_adapter, req.lora_name)
        emit("adapter", action="unloaded", name=req.lora_name, models=engine.model_names())
        return PlainTextResponse(f"Success: LoRA adapter '{req.lora_name}' removed successfully.")

    return app


def _shift_seed(params: gen.SamplingParams, seed: int, offset: int) -> gen.SamplingParams:
    from dataclasses import replace

    return replace(params, seed=gen.choice_seed(seed, offset))


def _prompt_ids(engine: Engine, prompt: str | list[str] | list[int] | list[list[int]]) -> list[list[int]]:
    if isinstance(prompt, str):
        items: list[Any] = [prompt]
    elif not prompt:
        raise ApiError(400, "prompt: must not be empty", "prompt")
    elif isinstance(prompt[0], int):
        items = [prompt]
    else:
        items = list(prompt)
    out = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            ids = engine.tokenizer(item, add_special_tokens=True)["input_ids"]
        else:
            ids = list(item)
            bad = [t for t in ids if not 0 <= t < engine.vocab_size]
            if bad:
                raise ApiError(400, f"prompt: {bad[0]} is not a token id (vocabulary size {engine.vocab_size})", "prompt")
        if not ids:
            raise ApiError(400, f"prompt: prompt {i} is empty", "prompt")
        out.append(ids)
    return out


def _token_string(engine: Engine, token_id: int, as_ids: bool) -> tuple[str, list[int]]:
    text, raw = engine.token_text(token_id)
    return (f"token_id:{token_id}" if as_ids else text), list(raw)


def _chat_logprob(engine: Engine, t: gen.TokenLogprob, as_ids: bool) -> dict[str, Any]:
    token, raw = _token_string(engine, t.token_id, as_ids)
    top = []
    for tid, lp in t.top:
        tt, tb = _token_string(engine, tid, as_ids)
        top.append({"token": tt, "logprob": lp, "bytes": tb})
    return {"token": token, "logprob": t.logprob, "bytes": raw, "top_logprobs": top}


def _legacy_logprobs(engine: Engine, result: gen.Generation, c: gen.Choice, echo: bool, as_ids: bool) -> dict[str, Any]:
    """OpenAI's /v1/completions shape: parallel lists, top_logprobs as {token: logprob} dicts."""
    tokens: list[str] = []
    token_logprobs: list[float | None] = []
    top_logprobs: list[dict[str, float] | None] = []
    text_offset: list[int] = []
    offset = 0

    def add(token_id: int, entry: gen.TokenLogprob | None) -> None:
        nonlocal offset
        token, _ = _token_string(engine, token_id, as_ids)
        tokens.append(token)
        text_offset.append(offset)
        offset += len(engine.token_text(token_id)[0])
        if entry is None:
            token_logprobs.append(None)
            top_logprobs.append(None)
            return
        token_logprobs.append(entry.logprob)
        # Keys can collide (e.g. byte fragments all shown as "\ufffd"): the likelier token wins, and
        # the sampled token is always listed with its own logprob (as vLLM does).
        top = {_token_string(engine, tid, as_ids)[0]: lp for tid, lp in reversed(entry.top)}
        top[token] = entry.logprob
        top_logprobs.append(top)

    if echo:
        for j, tid in enumerate(result.prompt_ids):
            add(tid, result.prompt_logprobs[j] if result.prompt_logprobs else None)
    for entry in c.logprobs or []:
        add(entry.token_id, entry)
    return {"tokens": tokens, "token_logprobs": token_logprobs, "top_logprobs": top_logprobs, "text_offset": text_offset}


# ------------------------------------------------------------------------------------------------ run


class _ReadyServer(uvicorn.Server):
    """Announces `ready` once its socket is listening; a signal also ends a generation in progress."""

    def __init__(self, config: uvicorn.Config, engine: Engine, on_ready: Any):
        super().__init__(config)
        self.engine = engine
        self.on_ready = on_ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and not self.should_exit:
            self.on_ready()

    def handle_exit(self, sig: int, frame: Any) -> None:
        self.engine.stopping = True  # a generation in progress ends at its next token
        super().handle_exit(sig, frame)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise UserError(f"cannot listen on {host}:{port} ({err.strerror or err})") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def run(config: Config) -> None:
    def _quit_while_loading(signum: int, _frame: Any) -> None:
        raise SystemExit(0)

    previous = {sig: signal.signal(sig, _quit_while_loading) for sig in (signal.SIGTERM, signal.SIGINT)}
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    started = time.perf_counter()
    engine = Engine(config)
    for name, path in config.adapter_specs():
        try:
            engine.load_adapter(name, path)
        except ApiError as err:
            raise UserError(f"--adapters: {name}: {err.message}") from None
    sock = _bind(config.host, config.port)
    port = sock.getsockname()[1]
    host = "127.0.0.1" if config.host in ("0.0.0.0", "") else ("[::1]" if config.host == "::" else (f"[{config.host}]" if ":" in config.host else config.host))

    def on_ready() -> None:
        emit("ready", url=f"http://{host}:{port}/v1", port=port, models=engine.model_names(), device=str(engine.device), dtype=str(engine.dtype).removeprefix("torch."), max_model_len=engine.max_model_len, seconds=round(time.perf_counter() - started, 2))

    uv_config = uvicorn.Config(create_app(engine), log_config=None, lifespan="off", timeout_graceful_shutdown=10, access_log=True)
    server = _ReadyServer(uv_config, engine, on_ready)
    # uvicorn catches SIGTERM/SIGINT, shuts down gracefully, then re-raises the signal under the handler
    # that was there before: make that one a no-op so the process exits 0.
    for sig in previous:
        signal.signal(sig, lambda *_: None)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        engine.close()
    stats = engine.stats
    emit("done", requests=stats["requests"], completion_tokens=stats["completion_tokens"], generation_seconds=round(stats["seconds"], 3), decode_steps=engine.scheduler.steps, max_batch_rows=engine.scheduler.max_rows)
