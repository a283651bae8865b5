"""Tool use: tool calls read out of generated text, conversations rendered through a chat template with
and without tool support, rollouts with turns parsed, encoded with exactly the assistant's tokens scored
(prompt and tool results masked), and one `rl` update on such rollouts."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tenet_trainer import data, rl, tools
from tenet_trainer import logprobs as lp
from tenet_trainer.common import UserError
from tenet_trainer.models import load_tokenizer

torch.set_num_threads(1)

PROMPT = [{"role": "user", "content": "How much do 3 coffees cost?"}]
TOOLS = [
    {"type": "function", "function": {"name": "lookup", "description": "Looks a fact up.", "parameters": {"type": "object", "properties": {"key": {"type": "string"}}}}},
    {"type": "function", "function": {"name": "calculator", "description": "Arithmetic.", "parameters": {"type": "object", "properties": {"expression": {"type": "string"}}}}},
]
TURNS = [
    {"role": "assistant", "content": None, "tool_calls": [{"id": "call_0_0", "type": "function", "function": {"name": "lookup", "arguments": '{"key":"price of coffee"}'}}]},
    {"role": "tool", "tool_call_id": "call_0_0", "name": "lookup", "content": "3.8"},
    {"role": "assistant", "content": "Now the total.", "tool_calls": [{"id": "call_1_0", "type": "function", "function": {"name": "calculator", "arguments": '{"expression": "3 * 3.8"}'}}]},
    {"role": "tool", "tool_call_id": "call_1_0", "name": "calculator", "content": "11.4"},
    {"role": "assistant", "content": "3 coffees cost 11.4."},
]

# A template that renders tools and tool calls itself, in the manner of Qwen's and Hermes'.
TOOL_TEMPLATE = (
    "{% if tools %}<|im_start|>system\nTools:{% for tool in tools %}\n{{ tool | tojson }}{% endfor %}<|im_end|>\n{% endif %}"
    "{% for message in messages %}"
    "{% if message.role == 'assistant' %}<|im_start|>assistant\n{{ message.content }}"
    "{% for call in message.tool_calls or [] %}<tool_call>{{ {'name': call.function.name, 'arguments': call.function.arguments} | tojson }}</tool_call>{% endfor %}<|im_end|>\n"
    "{% elif message.role == 'tool' %}<|im_start|>tool\n{{ message.content }}<|im_end|>\n"
    "{% else %}<|im_start|>{{ message.role }}\n{{ message.content }}<|im_end|>\n{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(scope="module")
def tokenizer(tiny_model: Path):
    return load_tokenizer(str(tiny_model))


@pytest.fixture(scope="module")
def tool_tokenizer(tiny_model: Path):
    tok = load_tokenizer(str(tiny_model))
    tok.chat_template = TOOL_TEMPLATE
    return tok


def scored_text(tokenizer, seq: lp.Sequence) -> list[str]:
    return [tokenizer.decode(seq.ids[start:end]) for start, end in seq.scored_spans]


def unscored_text(tokenizer, seq: lp.Sequence) -> str:
    scored = {i for start, end in seq.scored_spans for i in range(start, end)}
    return tokenizer.decode([t for i, t in enumerate(seq.ids) if i not in scored])


def test_tool_calls_are_read_from_generated_text():
    text = 'Let me look.\n<tool_call>\n{"name": "lookup", "arguments": {"key": "price of coffee"}}\n</tool_call>\n<tool_call>{"name": "calculator", "arguments": "{\\"expression\\": \\"1+1\\"}"}</tool_call>'
    content, calls = tools.parse_tool_calls(text)
    assert content == "Let me look."
    assert calls == [
        {"id": "call_0", "type": "function", "function": {"name": "lookup", "arguments": '{"key": "price of coffee"}'}},
        {"id": "call_1", "type": "function", "function": {"name": "calculator", "arguments": '{"expression": "1+1"}'}},
    ]
    # Blocks that are not a call stay in the text; text without blocks is unchanged.
    broken = "<tool_call>{not json}</tool_call> <tool_call>[1]</tool_call>"
    assert tools.parse_tool_calls(broken) == (broken, [])
    assert tools.parse_tool_calls("  just an answer ") == ("  just an answer ", [])
    # A block written by tool_call_block reads back as the same call.
    block = tools.tool_call_block(TURNS[0]["tool_calls"][0])
    assert tools.parse_tool_calls(block)[1][0]["function"] == {"name": "lookup", "arguments": '{"key": "price of coffee"}'}


def test_templates_with_and_without_tool_support(tokenizer, tool_tokenizer):
    assert not tools.template_handles_tools(tokenizer)
    assert tools.template_handles_tools(tool_tokenizer)
    plain, argument = tools.template_messages(tokenizer, PROMPT + TURNS, TOOLS)
    assert argument is None
    assert [m["role"] for m in plain] == ["system", "user", "assistant", "user", "assistant", "user", "assistant"]
    assert '"name": "lookup"' in plain[0]["content"] and "<tools>" in plain[0]["content"]
    assert plain[2]["content"] == '<tool_call>\n{"name": "lookup", "arguments": {"key": "price of coffee"}}\n</tool_call>'
    assert plain[3]["content"] == "<tool_response>\n3.8\n</tool_response>"
    assert plain[4]["content"].startswith("Now the total.\n<tool_call>")
    native, argument = tools.template_messages(tool_tokenizer, PROMPT + TURNS, TOOLS)
    assert argument == TOOLS
    assert native[1]["tool_calls"][0]["function"]["arguments"] == {"key": "price of coffee"}
    rendered = data.render_conversation(tool_tokenizer, PROMPT + TURNS, TOOLS, add_generation_prompt=False)
    assert '<|im_start|>tool\n3.8<|im_end|>' in rendered and '"lookup"' in rendered.split("<|im_end|>")[0]


@pytest.mark.parametrize("which", ["plain", "tool"])
def test_the_mask_covers_exactly_the_assistant_turns(which, tokenizer, tool_tokenizer):
    tok = tokenizer if which == "plain" else tool_tokenizer
    seq = lp.encode(tok, PROMPT, TURNS[-1]["content"], 4096, TURNS, TOOLS)
    # Three assistant turns, each exactly what the model wrote after its header, up to its end-of-turn token.
    spans = scored_text(tok, seq)
    assert len(spans) == 3 and all(text.endswith("<|im_end|>") for text in spans)
    assert spans[2] == "3 coffees cost 11.4.<|im_end|>"
    assert "lookup" in spans[0] and "price of coffee" in spans[0] and "calculator" in spans[1] and spans[1].startswith("Now the total.")
    # Everything else — prompt, tools, tool results, headers — is context.
    context = unscored_text(tok, seq)
    assert "How much do 3 coffees cost?" in context and "3.8" in context and "11.4" in context and "cost 11.4" not in context and "Now the total" not in context
    assert context.count("<|im_start|>assistant\n") == 3
    # The whole sequence is the template's rendering, token for token in text.
    assert tok.decode(seq.ids) == data.render_conversation(tok, PROMPT + TURNS, TOOLS, add_generation_prompt=False).rstrip("\n")
    # collate's mask marks targets start - 1 … end - 2 of each span, nothing else.
    batch = lp.collate([seq], tok.pad_token_id, torch.device("cpu"))
    expected = torch.zeros(len(seq.ids) - 1, dtype=torch.bool)
    for start, end in seq.scored_spans:
        expected[start - 1 : end - 1] = True
    assert torch.equal(batch.mask[0], expected)
    assert int(batch.mask.sum()) == seq.completion_tokens == sum(len(tok(text, add_special_tokens=False)["input_ids"]) for text in spans)


def test_a_long_conversation_is_cut_from_the_prompt_first(tokenizer):
    long_prompt = [{"role": "user", "content": "word " * 300}]
    whole = lp.encode(tokenizer, long_prompt, "", 4096, TURNS, TOOLS)
    cut = lp.encode(tokenizer, long_prompt, "", len(whole.ids) - 50, TURNS, TOOLS)
    assert len(cut.ids) == len(whole.ids) - 50 and cut.completion_tokens == whole.completion_tokens
    assert scored_text(tokenizer, cut) == scored_text(tokenizer, whole)
    with pytest.raises(UserError, match="too short"):
        lp.encode(tokenizer, long_prompt, "", 1, TURNS, TOOLS)


def test_rollouts_with_turns_parse_and_bad_turns_are_named():
    row = {"prompt": PROMPT, "completion": "3 coffees cost 11.4.", "reward": 1, "messages": TURNS, "tools": TOOLS}
    rollout = data.parse_rollout(row, 1)
    assert rollout.turns is not None and len(rollout.turns) == 5 and rollout.tools == tuple(TOOLS)
    assert data.parse_rollout({k: v for k, v in row.items() if k not in ("messages", "tools")}, 1).turns is None
    bad = [
        ({"messages": []}, "messages: expected a non-empty list of messages"),
        ({"messages": [{"role": "user", "content": "x"}]}, r"messages\[0\]: expected an assistant or tool message"),
        ({"messages": TURNS[:2]}, "messages: expected the last message to be the assistant's"),
        ({"messages": [{"role": "assistant", "content": None}]}, r"messages\[0\]: expected content or tool_calls"),
        ({"messages": [{"role": "assistant", "content": "x", "tool_calls": [{"name": "f"}]}]}, r"messages\[0\]\.tool_calls: expected a list"),
        ({"tools": "calculator"}, "tools: expected a list of tool definitions"),
    ]
    for change, message in bad:
        with pytest.raises(UserError, match=message):
            data.parse_rollout({**row, **change}, 1)


def test_rl_trains_on_tool_using_rollouts(tiny_model: Path, tmp_path: Path):
    """One update on rollouts with turns (rewarded) and without (unrewarded): the adapter moves."""
    rollouts = tmp_path / "rollouts.jsonl"
    rows = [
        {"prompt": PROMPT, "completion": "3 coffees cost 11.4.", "reward": 1.0, "group": "g", "messages": TURNS, "tools": TOOLS},
        {"prompt": PROMPT, "completion": "About 10.", "reward": 0.0, "group": "g", "messages": [{"role": "assistant", "content": "About 10."}], "tools": TOOLS},
    ] * 2
    rollouts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = rl.Config(model=str(tiny_model), data=str(rollouts), output=str(tmp_path / "out"), lr=2e-2, batch_size=4, ppo_epochs=1, log_every=100)
    with contextlib.redirect_stdout(io.StringIO()):
        metrics = rl.run(config)
    assert metrics["steps"] >= 1
    weights = load_file(str(tmp_path / "out" / "model" / "adapter_model.safetensors"))
    assert any(float(w.abs().max()) > 0 for name, w in weights.items() if "lora_B" in name)


def test_serving_helpers_take_tools_and_answer_with_tool_calls(tokenizer):
    assert tools.request_tools(None) is None and tools.request_tools([]) is None and tools.request_tools(TOOLS) == TOOLS
    with pytest.raises(UserError, match="tools: expected a list of tool definitions"):
        tools.request_tools({"name": "lookup"})
    messages = [
        tools.request_message("user", "How much?", {}),
        tools.request_message("assistant", "", {"tool_calls": TURNS[0]["tool_calls"]}),
        tools.request_message("tool", "3.8", {"tool_call_id": "call_0_0", "name": "lookup", "ignored": 1}),
    ]
    assert messages[1]["tool_calls"] == TURNS[0]["tool_calls"] and messages[2] == {"role": "tool", "content": "3.8", "tool_call_id": "call_0_0", "name": "lookup"}
    prompt = data.render_conversation(tokenizer, messages, TOOLS, add_generation_prompt=True)
    assert prompt.endswith("<|im_start|>assistant\n") and "<tool_response>\n3.8\n</tool_response>" in prompt and '"calculator"' in prompt
    generated = 'Next:<tool_call>{"name": "calculator", "arguments": {"expression": "3 * 3.8"}}</tool_call>'
    message, called = tools.chat_answer(generated, messages, tools_offered=True)
    assert called and message["content"] == "Next:"
    assert message["tool_calls"] == [{"id": "call_1_0", "type": "function", "function": {"name": "calculator", "arguments": '{"expression": "3 * 3.8"}'}}]
    # Without tools offered, or without a block, the text is the answer.
    assert tools.chat_answer(generated, messages, tools_offered=False) == ({"role": "assistant", "content": generated, "refusal": None, "tool_calls": []}, False)
    assert tools.chat_answer("11.4", messages, tools_offered=True)[1] is False


def test_serve_takes_tools_and_tool_turns(tiny_model: Path, tmp_path: Path):
    """`trainer serve` renders the offered tools and earlier tool turns into the prompt (the tiny model
    never writes a <tool_call> block, so reading calls back is test_serving_helpers' part)."""
    from test_serve import Server

    server = Server(tiny_model, tmp_path / "serve.log")
    try:
        plain = server.chat("How much do 3 coffees cost?", max_tokens=4, temperature=0)
        offered = server.chat("How much do 3 coffees cost?", max_tokens=4, temperature=0, tools=TOOLS)
        assert offered["usage"]["prompt_tokens"] > plain["usage"]["prompt_tokens"] + 40  # the definitions are in the prompt
        choice = offered["choices"][0]
        assert choice["message"]["tool_calls"] == [] and choice["finish_reason"] in ("length", "stop")
        conversation = [{"role": "user", "content": "How much do 3 coffees cost?"}, *TURNS[:2]]
        answer = server.post("/v1/chat/completions", {"model": "policy", "messages": conversation, "tools": TOOLS, "max_tokens": 4, "temperature": 0})
        assert answer["usage"]["prompt_tokens"] > offered["usage"]["prompt_tokens"]  # the call and its result too
        status, error = server.request("POST", "/v1/chat/completions", {"model": "policy", "messages": conversation, "tools": "lookup"})
        assert status == 400 and error["error"]["param"] == "tools" and "expected a list of tool definitions" in error["error"]["message"]
    finally:
        server.stop()
