"""Tool use through a chat template: tool-call turns rendered for training and serving, and tool calls
read back out of generated text.

Messages follow OpenAI's format: an assistant turn may carry `tool_calls` ([{id, type, function: {name,
arguments}}], arguments as JSON text) and `content` null; a tool's result is {role: "tool",
tool_call_id, name, content}. A template that handles tools itself (it mentions `tools` and
`tool_calls`, as Qwen's, Llama 3's and Hermes' do) gets them as they are, with arguments as objects, the
form those templates expect. Any other template gets plain messages: the tool definitions in a system
message, each call as a `<tool_call>{"name": …, "arguments": …}</tool_call>` block in the assistant's
text, and consecutive tool results as one user message of `<tool_response>` blocks (templates that
only accept alternating user/assistant turns still render them).
"""

from __future__ import annotations

import json
import re
from typing import Any

from transformers import PreTrainedTokenizerBase

from tenet_trainer.common import UserError

Message = dict[str, Any]

TOOL_CALL = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)


def template_handles_tools(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether the tokenizer's chat template renders `tools` and `tool_calls` itself."""
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):  # named templates: the default, or the one named tool_use
        template = template.get("tool_use") or template.get("default")
    return isinstance(template, str) and "tools" in template and "tool_calls" in template


def _arguments(value: Any) -> Any:
    """A call's arguments as an object where they are JSON text (templates write them with tojson)."""
    if isinstance(value, str):
        try:
            return json.loads(value) if value.strip() else {}
        except json.JSONDecodeError:
            return value
    return value


def tool_call_block(call: dict[str, Any]) -> str:
    function = call.get("function", call)
    return "<tool_call>\n" + json.dumps({"name": function["name"], "arguments": _arguments(function.get("arguments", {}))}, ensure_ascii=False) + "\n</tool_call>"


def tools_system_text(tools: list[dict[str, Any]]) -> str:
    definitions = "\n".join(json.dumps(tool, ensure_ascii=False) for tool in tools)
    return (
        "You may call these tools:\n<tools>\n" + definitions + "\n</tools>\n"
        'To call one, write <tool_call>{"name": <tool name>, "arguments": <JSON object>}</tool_call>.'
    )


def template_messages(tokenizer: PreTrainedTokenizerBase, messages: list[Message], tools: list[dict[str, Any]] | None) -> tuple[list[Message], list[dict[str, Any]] | None]:
    """The messages (and the `tools` argument) to hand apply_chat_template, for this template.

    Assistant turns map one to one (the trainer finds them again by their order)."""
    if template_handles_tools(tokenizer):
        out = []
        for m in messages:
            if m.get("tool_calls"):
                calls = [{**call, "function": {**call["function"], "arguments": _arguments(call["function"].get("arguments", {}))}} for call in m["tool_calls"]]
                out.append({**m, "content": m.get("content") or "", "tool_calls": calls})
            else:
                out.append(m)
        return out, (tools or None)
    out: list[Message] = []
    if tools:
        if messages and messages[0]["role"] == "system":
            out.append({"role": "system", "content": messages[0]["content"] + "\n\n" + tools_system_text(tools)})
            messages = messages[1:]
        else:
            out.append({"role": "system", "content": tools_system_text(tools)})
    for m in messages:
        if m["role"] == "tool":
            block = "<tool_response>\n" + str(m.get("content") or "") + "\n</tool_response>"
            if out and out[-1].get("_tool_results"):
                out[-1]["content"] += "\n" + block
            else:
                out.append({"role": "user", "content": block, "_tool_results": True})
        elif m["role"] == "assistant" and m.get("tool_calls"):
            text = (m.get("content") or "").strip()
            blocks = "\n".join(tool_call_block(call) for call in m["tool_calls"])
            out.append({"role": "assistant", "content": (text + "\n" if text else "") + blocks})
        else:
            out.append({"role": m["role"], "content": m.get("content") or ""})
    return [{k: v for k, v in m.items() if k != "_tool_results"} for m in out], None


def parse_tool_calls(text: str) -> tuple[str, list[dict[str, Any]]]:
    """The text less its `<tool_call>` blocks, and the calls in OpenAI form (ids call_0, call_1, …).

    A block that is not a JSON object with a string `name` stays in the text: the model's mistake is
    shown, not dropped."""
    calls: list[dict[str, Any]] = []
    kept: list[str] = []
    last = 0
    for match in TOOL_CALL.finditer(text):
        try:
            body = json.loads(match.group(1))
        except json.JSONDecodeError:
            continue
        if not isinstance(body, dict) or not isinstance(body.get("name"), str):
            continue
        arguments = body.get("arguments", body.get("parameters", {}))
        kept.append(text[last : match.start()])
        last = match.end()
        calls.append(
            {
                "id": f"call_{len(calls)}",
                "type": "function",
                "function": {"name": body["name"], "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)},
            }
        )
    kept.append(text[last:])
    return "".join(kept).strip() if calls else text, calls


def validate_turns(value: Any, key: str) -> list[Message]:
    """A rollout's messages after the prompt: assistant turns (text and/or tool_calls) and tool results, ending with an assistant turn."""
    if not isinstance(value, list) or not value:
        raise UserError(f"{key}: expected a non-empty list of messages")
    turns: list[Message] = []
    for i, m in enumerate(value):
        where = f"{key}[{i}]"
        if not isinstance(m, dict) or m.get("role") not in ("assistant", "tool"):
            raise UserError(f"{where}: expected an assistant or tool message")
        content = m.get("content")
        if content is not None and not isinstance(content, str):
            raise UserError(f"{where}.content: expected a text or null")
        if m["role"] == "tool":
            if content is None:
                raise UserError(f"{where}.content: expected the tool's result (a text)")
            turns.append({"role": "tool", "content": content, **{k: m[k] for k in ("tool_call_id", "name") if isinstance(m.get(k), str)}})
            continue
        calls = m.get("tool_calls") or []
        if not isinstance(calls, list) or not all(isinstance(c, dict) and isinstance(c.get("function"), dict) and isinstance(c["function"].get("name"), str) for c in calls):
            raise UserError(f"{where}.tool_calls: expected a list of {{function: {{name, arguments}}}}")
        if content is None and not calls:
            raise UserError(f"{where}: expected content or tool_calls")
        turns.append({"role": "assistant", "content": content, **({"tool_calls": calls} if calls else {})})
    if turns[-1]["role"] != "assistant":
        raise UserError(f"{key}: expected the last message to be the assistant's")
    return turns


# ---- serving: `trainer serve` takes `tools` and answers with `tool_calls` ---------------------------


def request_tools(value: Any) -> list[dict[str, Any]] | None:
    """A chat request's `tools`: a list of definitions (objects), or None when absent or empty."""
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        raise UserError("tools: expected a list of tool definitions (objects)")
    return value or None


def request_message(role: str, content: str, extra: dict[str, Any] | None) -> Message:
    """A chat request's message with its tool fields kept: an assistant's tool_calls, a tool result's tool_call_id and name."""
    message: Message = {"role": role, "content": content}
    extra = extra or {}
    if role == "assistant" and isinstance(extra.get("tool_calls"), list) and extra["tool_calls"]:
        message["tool_calls"] = extra["tool_calls"]
    if role == "tool":
        message.update({k: extra[k] for k in ("tool_call_id", "name") if isinstance(extra.get(k), str)})
    return message


def chat_answer(text: str, messages: list[Message], tools_offered: bool) -> tuple[dict[str, Any], bool]:
    """The assistant message of a generated text, and whether it calls tools. With tools offered, its
    `<tool_call>` blocks become `tool_calls` (ids call_<turn>_<i>, unique within the conversation)
    and the rest its content (null when nothing is left)."""
    if not tools_offered:
        return {"role": "assistant", "content": text, "refusal": None, "tool_calls": []}, False
    content, calls = parse_tool_calls(text)
    if not calls:
        return {"role": "assistant", "content": text, "refusal": None, "tool_calls": []}, False
    turn = sum(1 for m in messages if m["role"] == "assistant")
    for i, call in enumerate(calls):
        call["id"] = f"call_{turn}_{i}"
    return {"role": "assistant", "content": content or None, "refusal": None, "tool_calls": calls}, True
