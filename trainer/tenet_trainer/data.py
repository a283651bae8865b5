"""Data formats the TypeScript side writes (and TRL/OpenRLHF read), and how prompts become text.

Preferences: {"prompt": str | messages, "chosen": str | messages, "rejected": str | messages,
"soft_label": p (optional, P(chosen is better), default 1)}.
SFT: {"messages": [...]} or {"prompt": str | messages, "completion": str | messages}.
Rollouts (rl): {"prompt": ..., "completion": str, "reward": float, "rewards": {...}, "group": str?,
"sampled_logprobs": [float]?, "sampled_token_ids": [int]?, "messages": [...]?, "tools": [...]?} —
sampled_* as the serving engine reported the sampled completion tokens (its log-prob of each, in order),
for rl's importance correction; `messages` a tool-using rollout's turns after the prompt (assistant turns
with tool_calls, tool results; OpenAI format, see tools.py) and `tools` the tool definitions it was offered.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from transformers import PreTrainedTokenizerBase

from tenet_trainer import tools as tool_use
from tenet_trainer.common import UserError

Message = dict[str, str]


def _messages(value: Any, key: str) -> list[Message]:
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if isinstance(value, list) and value and all(isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in value):
        return [{"role": m["role"], "content": m["content"]} for m in value]
    raise UserError(f"{key}: expected a string or a non-empty list of {{role, content}} messages")


def _completion_text(value: Any, key: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(m, dict) for m in value):
        last = value[-1]
        if last.get("role") == "assistant" and isinstance(last.get("content"), str):
            return last["content"]
    raise UserError(f"{key}: expected a string or a list ending in an assistant message")


@dataclass(frozen=True)
class PreferencePair:
    prompt: list[Message]
    chosen: str
    rejected: str
    soft_label: float


def parse_preference(obj: dict[str, Any], _line: int) -> PreferencePair:
    for key in ("prompt", "chosen", "rejected"):
        if key not in obj:
            raise UserError(f"missing {key!r}")
    soft = obj.get("soft_label", 1.0)
    if isinstance(soft, bool) or not isinstance(soft, (int, float)) or not 0 <= soft <= 1:
        raise UserError(f"soft_label: expected a probability in [0, 1], got {soft!r}")
    return PreferencePair(
        prompt=_messages(obj["prompt"], "prompt"),
        chosen=_completion_text(obj["chosen"], "chosen"),
        rejected=_completion_text(obj["rejected"], "rejected"),
        soft_label=float(soft),
    )


@dataclass(frozen=True)
class SftExample:
    prompt: list[Message]
    completion: str


def parse_sft(obj: dict[str, Any], _line: int) -> SftExample:
    if "messages" in obj:
        messages = _messages(obj["messages"], "messages")
        if messages[-1]["role"] != "assistant" or len(messages) < 2:
            raise UserError("messages: expected prompt messages followed by an assistant message")
        return SftExample(prompt=messages[:-1], completion=messages[-1]["content"])
    if "prompt" in obj and "completion" in obj:
        return SftExample(prompt=_messages(obj["prompt"], "prompt"), completion=_completion_text(obj["completion"], "completion"))
    raise UserError("expected {messages} or {prompt, completion}")


@dataclass(frozen=True)
class Rollout:
    prompt: list[Message]
    completion: str
    reward: float
    rewards: dict[str, float]
    group: str
    sampled_logprobs: tuple[float, ...] | None = None
    """The serving engine's log-prob of each sampled completion token, in order (optional)."""
    sampled_token_ids: tuple[int, ...] | None = None
    """The ids of those tokens (optional; lets the trainer check they are its own encoding)."""
    turns: tuple[dict[str, Any], ...] | None = None
    """A tool-using rollout's messages after the prompt; trained on its assistant turns only (logprobs.encode_turns)."""
    tools: tuple[dict[str, Any], ...] | None = None
    """The tool definitions the rollout was offered (rendered into the prompt as when it was sampled)."""


LOGPROB_SLACK = 1e-4
"""A log-probability above 0 by more than this is not one (engines round, so a hair above 0 passes)."""


def _sampled_logprobs(value: Any) -> tuple[float, ...]:
    if not isinstance(value, list):
        raise UserError(f"sampled_logprobs: expected a list of numbers, got {type(value).__name__}")
    for position, x in enumerate(value):
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x) or x > LOGPROB_SLACK:
            raise UserError(f"sampled_logprobs[{position}]: expected a finite log-probability (<= 0), got {x!r}")
    return tuple(float(x) for x in value)


def _sampled_token_ids(value: Any) -> tuple[int, ...]:
    if not isinstance(value, list):
        raise UserError(f"sampled_token_ids: expected a list of token ids, got {type(value).__name__}")
    for position, x in enumerate(value):
        if isinstance(x, bool) or not isinstance(x, int) or x < 0:
            raise UserError(f"sampled_token_ids[{position}]: expected a token id (an integer >= 0), got {x!r}")
    return tuple(value)


def parse_rollout(obj: dict[str, Any], _line: int) -> Rollout:
    for key in ("prompt", "completion", "reward"):
        if key not in obj:
            raise UserError(f"missing {key!r}")
    reward = obj["reward"]
    if isinstance(reward, bool) or not isinstance(reward, (int, float)):
        raise UserError(f"reward: expected a number, got {reward!r}")
    components = obj.get("rewards", {})
    if not isinstance(components, dict) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in components.values()):
        raise UserError("rewards: expected an object of numbers")
    prompt = _messages(obj["prompt"], "prompt")
    group = obj.get("group")
    if group is not None and not isinstance(group, (str, int)):
        raise UserError("group: expected a string")
    logprobs = None if obj.get("sampled_logprobs") is None else _sampled_logprobs(obj["sampled_logprobs"])
    token_ids = None if obj.get("sampled_token_ids") is None else _sampled_token_ids(obj["sampled_token_ids"])
    if token_ids is not None and logprobs is None:
        raise UserError("sampled_token_ids: given without sampled_logprobs (the log-probs are what the trainer uses)")
    if token_ids is not None and logprobs is not None and len(token_ids) != len(logprobs):
        raise UserError(f"sampled_token_ids ({len(token_ids)}) and sampled_logprobs ({len(logprobs)}): expected one log-prob per token")
    turns = None if obj.get("messages") is None else tuple(tool_use.validate_turns(obj["messages"], "messages"))
    offered = obj.get("tools")
    if offered is not None and (not isinstance(offered, list) or not all(isinstance(t, dict) for t in offered)):
        raise UserError("tools: expected a list of tool definitions")
    return Rollout(
        prompt=prompt,
        completion=_completion_text(obj["completion"], "completion"),
        reward=float(reward),
        rewards={k: float(v) for k, v in components.items()},
        group=str(group) if group is not None else render_plain(prompt),
        sampled_logprobs=logprobs,
        sampled_token_ids=token_ids,
        turns=turns,
        tools=tuple(offered) if offered else None,
    )


def render_plain(messages: list[Message]) -> str:
    return "\n".join(f"{m['role']}: {m['content']}" for m in messages)


def render_conversation(tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None, add_generation_prompt: bool) -> str:
    """Messages that may hold tool calls and results, as the model sees them (tools.template_messages);
    without a chat template, `role: content` lines."""
    if getattr(tokenizer, "chat_template", None):
        converted, tools_argument = tool_use.template_messages(tokenizer, messages, tools)
        return tokenizer.apply_chat_template(converted, tools=tools_argument, tokenize=False, add_generation_prompt=add_generation_prompt)  # type: ignore[return-value]
    converted, _ = tool_use.template_messages(tokenizer, messages, tools)
    return render_plain(converted) + ("\nassistant: " if add_generation_prompt else "")


def render_prompt(tokenizer: PreTrainedTokenizerBase, messages: list[Message]) -> str:
    """The prompt as the model sees it: its chat template when it has one, else `role: content` lines."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)  # type: ignore[return-value]
    return render_plain(messages) + "\nassistant: "


def bos_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """The BOS token a sequence starts with, where the tokenizer adds one."""
    return [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None and getattr(tokenizer, "add_bos_token", False) else []


def encode_prompt_completion(tokenizer: PreTrainedTokenizerBase, prompt: str, completion: str, max_length: int) -> tuple[list[int], int]:
    """Token ids of prompt + completion + EOS, and where the completion starts. Prompts are cut from the left."""
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
    if tokenizer.eos_token_id is not None:
        completion_ids = completion_ids + [tokenizer.eos_token_id]
    bos = bos_ids(tokenizer)
    completion_ids = completion_ids[: max(1, max_length - len(bos) - 1)]
    room = max_length - len(bos) - len(completion_ids)
    prompt_ids = prompt_ids[-room:] if room > 0 else []
    ids = bos + prompt_ids + completion_ids
    return ids, len(bos) + len(prompt_ids)
