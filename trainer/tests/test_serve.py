"""`serve`: a real server process on a free port, spoken to over real HTTP.

One server (module-scoped) carries most tests; a second one checks flags given at start, that the
event loop stays free during a long generation, and that SIGTERM ends it cleanly with exit 0.
Logprobs are checked against an independent teacher-forced forward pass through transformers/peft.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import run_cli

TOL = 1e-4


# ----------------------------------------------------------------------------------------- helpers


class Server:
    """`python -m tenet_trainer serve ...` as a child process; waits for its `ready` line."""

    def __init__(self, model: Path, log: Path, *flags: str, timeout: float = 180):
        # One torch thread: the tiny model gains nothing from more, and on a busy 2-core machine two
        # threads spin against each other (10x slower).
        env = {**os.environ, "TENET_TORCH_THREADS": os.environ.get("TENET_TORCH_THREADS", "1"), "HF_HUB_OFFLINE": "1"}
        self.log = log
        self._stderr = log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tenet_trainer", "serve", "--model", str(model), "--port", "0", *flags],
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            env=env,
        )
        self.events: list[dict[str, Any]] = []
        self._lines: queue.Queue[dict[str, Any] | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        deadline = time.monotonic() + timeout
        while True:
            try:
                event = self._lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                self.proc.kill()
                raise AssertionError(f"no ready line within {timeout}s\n{log.read_text()}") from None
            if event is None:
                raise AssertionError(f"server exited ({self.proc.wait()}) before ready\n{log.read_text()}")
            if event.get("event") == "ready":
                self.ready = event
                break
        self.url = event["url"]
        self.root = self.url.removesuffix("/v1")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("{"):
                event = json.loads(line)
                self.events.append(event)
                self._lines.put(event)
        self._lines.put(None)

    def wait_event(self, name: str, timeout: float = 10) -> dict[str, Any]:
        """The next progress line called `name` (lines are read on another thread)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                event = self._lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            assert event is not None, "the server exited"
            if event.get("event") == name:
                return event
        raise AssertionError(f"no {name!r} line within {timeout}s")

    def request(self, method: str, path: str, body: Any = None, raw: bytes | None = None, timeout: float = 120) -> tuple[int, Any]:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(self.root + path, data=data, method=method, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                status, text = resp.status, resp.read().decode()
        except urllib.error.HTTPError as err:
            status, text = err.code, err.read().decode()
        try:
            return status, json.loads(text)
        except json.JSONDecodeError:
            return status, text

    def post(self, path: str, body: Any) -> Any:
        status, out = self.request("POST", path, body)
        assert status == 200, (status, out)
        return out

    def chat(self, content: str = "Explain why water is wet.", **params: Any) -> dict[str, Any]:
        body = {"model": "policy", "messages": [{"role": "user", "content": content}], **params}
        return self.post("/v1/chat/completions", body)

    def stop(self, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self._stderr.close()


def make_adapter(base: Path, out: Path, seed: int) -> Path:
    """A LoRA adapter with random, clearly non-zero weights (a fresh one would equal the base)."""
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    torch.manual_seed(seed)
    peft = get_peft_model(model, LoraConfig(task_type=TaskType.CAUSAL_LM, r=4, lora_alpha=8, target_modules="all-linear"))
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_" in name:
                p.normal_(std=0.3)
    peft.save_pretrained(out)
    return out


def token_ids(entries: list[dict[str, Any]]) -> list[int]:
    return [int(e["token"].removeprefix("token_id:")) for e in entries]


class Reference:
    """Teacher-forced logprobs from transformers (optionally with a peft adapter), computed here."""

    def __init__(self, model_path: Path, adapter: Path | None = None):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
        if adapter is not None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, adapter)
        self.model = model.eval()

    def chat_prompt_ids(self, content: str) -> list[int]:
        from tenet_trainer.data import render_prompt

        text = render_prompt(self.tokenizer, [{"role": "user", "content": content}])
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    @torch.no_grad()
    def logprobs(self, prompt: list[int], completion: list[int]) -> torch.Tensor:
        """[len(completion), V]: log_softmax of the logits that predicted each completion token."""
        ids = torch.tensor([prompt + completion])
        logits = self.model(input_ids=ids).logits[0].float()
        return torch.log_softmax(logits[len(prompt) - 1 : len(prompt) - 1 + len(completion)], dim=-1)


def same_reply(a: tuple[str, list[dict[str, Any]]], b: tuple[str, list[dict[str, Any]]]) -> bool:
    """Same text and tokens, logprobs within TOL (a prompt served from the prefix cache rounds differently)."""
    (text_a, lp_a), (text_b, lp_b) = a, b
    if text_a != text_b or token_ids(lp_a) != token_ids(lp_b):
        return False
    values = [(x["logprob"], y["logprob"]) for x, y in zip(lp_a, lp_b)]
    values += [(p["logprob"], q["logprob"]) for x, y in zip(lp_a, lp_b) for p, q in zip(x["top_logprobs"], y["top_logprobs"], strict=True)]
    return all(abs(u - v) < TOL for u, v in values)


def assert_logprobs_match(ref: Reference, prompt: list[int], content: list[dict[str, Any]]) -> None:
    ids = token_ids(content)
    table = ref.logprobs(prompt, ids)
    for j, entry in enumerate(content):
        expected = table[j, ids[j]].item()
        assert abs(entry["logprob"] - expected) < TOL, (j, entry["logprob"], expected)
        for alt in entry["top_logprobs"]:
            alt_id = int(alt["token"].removeprefix("token_id:"))
            assert abs(alt["logprob"] - table[j, alt_id].item()) < TOL
        # The reported alternatives are the model's actual top-k.
        k = len(entry["top_logprobs"])
        if k:
            top = table[j].topk(k).values.tolist()
            assert all(abs(a["logprob"] - v) < TOL for a, v in zip(entry["top_logprobs"], top))


# ---------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def server(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory):
    srv = Server(tiny_model, tmp_path_factory.mktemp("serve") / "server.log")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def adapters(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("adapters")
    return make_adapter(tiny_model, folder / "one", seed=1), make_adapter(tiny_model, folder / "two", seed=2)


@pytest.fixture(scope="module")
def reference(tiny_model: Path) -> Reference:
    return Reference(tiny_model)


# ------------------------------------------------------------------------------------------- tests


def test_ready_line_health_and_models(server: Server):
    ready = server.ready
    assert ready["url"] == f"http://127.0.0.1:{ready['port']}/v1" and ready["port"] > 0
    assert ready["models"] == ["policy"]
    assert [e["event"] for e in server.events][:1] == ["ready"]  # one ready line, nothing before it
    status, health = server.request("GET", "/health")
    assert status == 200 and health["status"] == "ok"
    status, models = server.request("GET", "/v1/models")
    assert status == 200 and models["object"] == "list"
    assert [(m["id"], m["object"]) for m in models["data"]] == [("policy", "model")]


def test_chat_completion_shape(server: Server, reference: Reference):
    content = "Is fire safe?"
    out = server.chat(content, max_tokens=6, temperature=0)
    assert out["id"].startswith("chatcmpl-") and out["object"] == "chat.completion"
    assert isinstance(out["created"], int) and abs(out["created"] - time.time()) < 600
    assert out["model"] == "policy"
    (choice,) = out["choices"]
    assert choice["index"] == 0 and choice["message"]["role"] == "assistant"
    assert isinstance(choice["message"]["content"], str) and choice["message"]["content"]
    assert choice["logprobs"] is None
    assert choice["finish_reason"] in ("stop", "length")
    usage = out["usage"]
    assert usage["prompt_tokens"] == len(reference.chat_prompt_ids(content))
    assert 1 <= usage["completion_tokens"] <= 6
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_completions_shape_with_several_prompts(server: Server, reference: Reference):
    prompts = ["The answer is", "One two three"]
    out = server.post("/v1/completions", {"model": "policy", "prompt": prompts, "n": 2, "max_tokens": 5, "seed": 4})
    assert out["id"].startswith("cmpl-") and out["object"] == "text_completion" and out["model"] == "policy"
    assert [c["index"] for c in out["choices"]] == [0, 1, 2, 3]
    assert all(isinstance(c["text"], str) and c["finish_reason"] in ("stop", "length") and c["logprobs"] is None for c in out["choices"])
    assert out["usage"]["prompt_tokens"] == sum(len(reference.tokenizer(p)["input_ids"]) for p in prompts)
    assert 4 <= out["usage"]["completion_tokens"] <= 20
    # A single string, and default max_tokens (16, as OpenAI's legacy endpoint).
    single = server.post("/v1/completions", {"model": "policy", "prompt": "Hello", "temperature": 0, "ignore_eos": True})
    assert len(single["choices"]) == 1 and single["usage"]["completion_tokens"] == 16


def test_max_tokens_ends_with_length(server: Server):
    out = server.chat(max_tokens=7, temperature=0, logprobs=True, ignore_eos=True)
    (choice,) = out["choices"]
    assert choice["finish_reason"] == "length"
    assert out["usage"]["completion_tokens"] == 7 == len(choice["logprobs"]["content"])
    # max_completion_tokens (the newer name) wins over max_tokens.
    out = server.chat(max_tokens=9, max_completion_tokens=3, temperature=0, ignore_eos=True)
    assert out["usage"]["completion_tokens"] == 3 and out["choices"][0]["finish_reason"] == "length"


def test_temperature_zero_is_deterministic(server: Server):
    texts = {server.chat("Count to ten.", max_tokens=12, temperature=0, seed=s)["choices"][0]["message"]["content"] for s in (1, 2, 3)}
    assert len(texts) == 1


def test_same_seed_same_text_other_seeds_differ(server: Server):
    def sample(seed: int, **extra: Any) -> list[str]:
        out = server.chat("Write a poem.", max_tokens=12, temperature=1.0, seed=seed, **extra)
        return [c["message"]["content"] for c in out["choices"]]

    first = sample(123)
    assert sample(123) == first
    others = [sample(s)[0] for s in (1, 2, 3, 4)]
    assert any(o != first[0] for o in others)
    # Choice 0 of an n=3 request with a seed is the n=1 sample with that seed; the others are new.
    three = sample(123, n=3)
    assert three[0] == first[0]
    assert sample(123, n=3) == three
    # top_p keeps sampling reproducible too, and a tiny nucleus is greedy.
    assert sample(9, top_p=0.5) == sample(9, top_p=0.5)
    greedy = server.chat("Write a poem.", max_tokens=12, temperature=0)["choices"][0]["message"]["content"]
    assert sample(5, top_p=1e-6)[0] == greedy


def test_n_gives_several_choices(server: Server):
    out = server.chat(n=3, max_tokens=8, temperature=1.0, seed=11, logprobs=True)
    choices = out["choices"]
    assert [c["index"] for c in choices] == [0, 1, 2]
    assert len({c["message"]["content"] for c in choices}) >= 2
    assert out["usage"]["completion_tokens"] == sum(len(c["logprobs"]["content"]) for c in choices)
    comp = server.post("/v1/completions", {"model": "policy", "prompt": "Yes or no?", "n": 3, "max_tokens": 4, "seed": 2})
    assert len(comp["choices"]) == 3


def test_stop_strings_cut_the_text(server: Server):
    body = {"model": "policy", "prompt": "Tell me a story:", "max_tokens": 40, "temperature": 1.0, "seed": 21, "ignore_eos": True}
    full = server.post("/v1/completions", body)["choices"][0]["text"]
    # A plain-ASCII window of the text, so partial UTF-8 bytes cannot blur where it matches.
    start = next(i for i in range(3, len(full) - 2) if full[i : i + 2].isascii() and full[i : i + 2].isprintable())
    stop = full[start : start + 2]
    cut = full.find(stop)
    out = server.post("/v1/completions", {**body, "stop": stop})
    choice = out["choices"][0]
    assert choice["text"] == full[:cut]
    assert choice["finish_reason"] == "stop" and choice["stop_reason"] == stop
    assert stop not in choice["text"]
    # A list of stop strings: the earliest match wins; chat does the same.
    out = server.post("/v1/completions", {**body, "stop": ["\u2603never", stop]})
    assert out["choices"][0]["text"] == full[:cut]
    chat_full = server.chat("Hello", max_tokens=30, temperature=1.0, seed=5, ignore_eos=True)["choices"][0]["message"]["content"]
    start = next(i for i in range(2, len(chat_full) - 1) if chat_full[i].isascii() and chat_full[i].isprintable())
    chat_stop = server.chat("Hello", max_tokens=30, temperature=1.0, seed=5, ignore_eos=True, stop=[chat_full[start]])["choices"][0]
    assert chat_stop["message"]["content"] == chat_full[: chat_full.find(chat_full[start])]
    assert chat_stop["finish_reason"] == "stop"


def test_logprobs_shape_and_greedy_top1(server: Server):
    out = server.chat(max_tokens=8, temperature=0, logprobs=True, top_logprobs=5)
    content = out["choices"][0]["logprobs"]["content"]
    assert len(content) == out["usage"]["completion_tokens"]
    text = ""
    for entry in content:
        assert set(entry) >= {"token", "logprob", "bytes", "top_logprobs"}
        top = entry["top_logprobs"]
        assert len(top) == 5
        values = [t["logprob"] for t in top]
        assert values == sorted(values, reverse=True) and all(v <= 0 for v in values)
        # Greedy: the chosen token is the most likely one, and it is listed with the same logprob.
        assert top[0]["token"] == entry["token"] and top[0]["logprob"] == entry["logprob"]
        assert bytes(entry["bytes"]).decode("utf-8", errors="replace") == entry["token"]
        text += entry["token"]
    if out["choices"][0]["finish_reason"] == "length":
        assert text == out["choices"][0]["message"]["content"]
    # Sampled: the chosen token is never more likely than the top-1; when listed, with the same value.
    sampled = server.chat(max_tokens=12, temperature=1.5, seed=3, logprobs=True, top_logprobs=3)
    for entry in sampled["choices"][0]["logprobs"]["content"]:
        assert entry["logprob"] <= entry["top_logprobs"][0]["logprob"] + 1e-6
        for alt in entry["top_logprobs"]:
            if (alt["token"], alt["bytes"]) == (entry["token"], entry["bytes"]):
                assert alt["logprob"] == entry["logprob"]
    # logprobs=true without top_logprobs: empty alternatives.
    plain = server.chat(max_tokens=3, temperature=0, logprobs=True)
    assert all(e["top_logprobs"] == [] for e in plain["choices"][0]["logprobs"]["content"])


def test_chat_logprobs_equal_a_teacher_forced_forward_pass(server: Server, reference: Reference):
    content = "Please explain step one."
    out = server.chat(content, max_tokens=16, temperature=1.3, top_p=0.9, seed=8, logprobs=True, top_logprobs=4, return_tokens_as_token_ids=True)
    entries = out["choices"][0]["logprobs"]["content"]
    assert entries
    prompt = reference.chat_prompt_ids(content)
    assert out["usage"]["prompt_tokens"] == len(prompt)
    # Raw model logprobs: temperature and top-p change what is sampled, not what is reported.
    assert_logprobs_match(reference, prompt, entries)
    # The text is the decoded tokens (a final EOS is a token but not text).
    ids = token_ids(entries)
    if out["choices"][0]["finish_reason"] == "stop":
        ids = ids[:-1]
    assert reference.tokenizer.decode(ids, skip_special_tokens=True) == out["choices"][0]["message"]["content"]


def test_completion_logprobs_legacy_shape_and_echo(server: Server, reference: Reference):
    prompt = "One two three four"
    body = {"model": "policy", "prompt": prompt, "max_tokens": 6, "temperature": 0.8, "seed": 1, "logprobs": 3, "ignore_eos": True}
    out = server.post("/v1/completions", body)
    lp = out["choices"][0]["logprobs"]
    assert set(lp) == {"tokens", "token_logprobs", "top_logprobs", "text_offset"}
    assert len(lp["tokens"]) == len(lp["token_logprobs"]) == len(lp["top_logprobs"]) == len(lp["text_offset"]) == 6
    assert lp["text_offset"] == sorted(lp["text_offset"]) and lp["text_offset"][0] == 0
    for token, value, top in zip(lp["tokens"], lp["token_logprobs"], lp["top_logprobs"]):
        assert top[token] == value  # the sampled token is always in its dict
        assert 1 <= len(top) <= 4  # text keys can collide (byte fragments all show as "\ufffd")
    # With token ids (keys that cannot collide), checked against the reference.
    ids_out = server.post("/v1/completions", {**body, "return_tokens_as_token_ids": True})
    lp2 = ids_out["choices"][0]["logprobs"]
    for token, value, top in zip(lp2["tokens"], lp2["token_logprobs"], lp2["top_logprobs"]):
        assert top[token] == value and 3 <= len(top) <= 4
    assert all(abs(a - b) < TOL for a, b in zip(lp2["token_logprobs"], lp["token_logprobs"], strict=True))
    completion = [int(t.removeprefix("token_id:")) for t in lp2["tokens"]]
    prompt_ids = reference.tokenizer(prompt)["input_ids"]
    table = reference.logprobs(prompt_ids, completion)
    for j, tid in enumerate(completion):
        assert abs(lp2["token_logprobs"][j] - table[j, tid].item()) < TOL
    # echo + max_tokens 0: score a prompt (first token has no logprob).
    scored = server.post("/v1/completions", {"model": "policy", "prompt": prompt, "max_tokens": 0, "echo": True, "logprobs": 0, "return_tokens_as_token_ids": True})
    s = scored["choices"][0]
    assert s["text"] == prompt and s["finish_reason"] == "length"
    assert [int(t.removeprefix("token_id:")) for t in s["logprobs"]["tokens"]] == prompt_ids
    assert s["logprobs"]["token_logprobs"][0] is None
    table = reference.logprobs(prompt_ids[:1], prompt_ids[1:])
    for j, tid in enumerate(prompt_ids[1:]):
        assert abs(s["logprobs"]["token_logprobs"][j + 1] - table[j, tid].item()) < TOL


def test_lora_adapters_load_switch_replace_unload(server: Server, adapters: tuple[Path, Path], tiny_model: Path, reference: Reference, tmp_path: Path):
    one, two = adapters
    content = "Which is better, A or B?"

    def greedy(model: str) -> tuple[str, list[dict[str, Any]]]:
        out = server.chat(content, model=model, max_tokens=10, temperature=0, logprobs=True, top_logprobs=2, return_tokens_as_token_ids=True, ignore_eos=True)
        assert out["model"] == model
        return out["choices"][0]["message"]["content"], out["choices"][0]["logprobs"]["content"]

    base_text, base_lp = greedy("policy")
    status, text = server.request("POST", "/v1/load_lora_adapter", {"lora_name": "critic", "lora_path": str(one)})
    assert status == 200 and "critic" in text
    loaded = server.wait_event("adapter")
    assert loaded["name"] == "critic" and loaded["action"] == "loaded" and loaded["models"] == ["policy", "critic"]
    status, models = server.request("GET", "/v1/models")
    assert [(m["id"], m["parent"]) for m in models["data"]] == [("policy", None), ("critic", "policy")]

    lora_text, lora_lp = greedy("critic")
    assert [e["logprob"] for e in lora_lp] != [e["logprob"] for e in base_lp]
    prompt = reference.chat_prompt_ids(content)
    assert_logprobs_match(Reference(tiny_model, one), prompt, lora_lp)  # the adapter's weights, exactly
    assert same_reply(greedy("policy"), (base_text, base_lp))  # the base is untouched while an adapter is loaded

    # Same name again: replaced by the new weights.
    assert server.request("POST", "/v1/load_lora_adapter", {"lora_name": "critic", "lora_path": str(two)})[0] == 200
    replaced_text, replaced_lp = greedy("critic")
    assert [e["logprob"] for e in replaced_lp] != [e["logprob"] for e in lora_lp]
    assert_logprobs_match(Reference(tiny_model, two), prompt, replaced_lp)
    status, models = server.request("GET", "/v1/models")
    assert [m["id"] for m in models["data"]] == ["policy", "critic"]

    # Bad loads are 400s that leave everything as it was.
    status, err = server.request("POST", "/v1/load_lora_adapter", {"lora_name": "other", "lora_path": str(tmp_path / "missing")})
    assert status == 400 and "missing" in err["error"]["message"] and err["error"]["param"] == "lora_path"
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "adapter_config.json").write_text((two / "adapter_config.json").read_text())
    (broken / "adapter_model.safetensors").write_bytes(b"not a safetensors file")
    status, err = server.request("POST", "/v1/load_lora_adapter", {"lora_name": "critic", "lora_path": str(broken)})
    assert status == 400 and "cannot load" in err["error"]["message"]
    assert same_reply(greedy("critic"), (replaced_text, replaced_lp)) and same_reply(greedy("policy"), (base_text, base_lp))

    # Unload: gone from the list, 404 for requests, base unchanged.
    status, text = server.request("POST", "/v1/unload_lora_adapter", {"lora_name": "critic"})
    assert status == 200
    status, models = server.request("GET", "/v1/models")
    assert [m["id"] for m in models["data"]] == ["policy"]
    status, err = server.request("POST", "/v1/chat/completions", {"model": "critic", "messages": [{"role": "user", "content": "x"}]})
    assert status == 404
    assert server.request("POST", "/v1/unload_lora_adapter", {"lora_name": "critic"})[0] == 404
    assert same_reply(greedy("policy"), (base_text, base_lp))
    # And it loads again after everything was unloaded.
    assert server.request("POST", "/v1/load_lora_adapter", {"lora_name": "again", "lora_path": str(one)})[0] == 200
    assert same_reply(greedy("again"), (lora_text, lora_lp))
    assert server.request("POST", "/v1/unload_lora_adapter", {"lora_name": "again"})[0] == 200


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": -1}, "max_tokens"),
        ("/v1/chat/completions", {"messages": "hi"}, "messages"),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}, "temperature"),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "n": 0}, "n"),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "n": 2.5}, "n"),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "stop": [1]}, "stop"),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "top_logprobs": 3}, "top_logprobs"),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "stream": True}, "stream"),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": 5}]}, "messages.0.content"),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5000}, "max_tokens"),
        ("/v1/chat/completions", {}, "messages"),
        ("/v1/completions", {"prompt": "hi", "logprobs": True}, "logprobs"),
        ("/v1/completions", {"prompt": [], "max_tokens": 2}, "prompt"),
        ("/v1/completions", {"prompt": [1, 99999]}, "prompt"),
        ("/v1/load_lora_adapter", {"lora_name": "x"}, "lora_path"),
    ],
)
def test_bad_requests_are_400_naming_the_field(server: Server, path: str, body: dict[str, Any], param: str):
    status, out = server.request("POST", path, {"model": "policy", **body})
    assert status == 400, out
    error = out["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["param"] == param and param.split(".")[0] in error["message"]


def test_unknown_model_is_404_listing_served_names(server: Server):
    status, out = server.request("POST", "/v1/chat/completions", {"model": "gpt-9", "messages": [{"role": "user", "content": "hi"}]})
    assert status == 404
    assert "gpt-9" in out["error"]["message"] and "policy" in out["error"]["message"] and out["error"]["param"] == "model"
    status, out = server.request("POST", "/v1/completions", {"model": "gpt-9", "prompt": "hi"})
    assert status == 404


def test_unknown_fields_are_accepted_and_invalid_json_is_400(server: Server):
    out = server.chat(max_tokens=2, user="someone", response_format={"type": "text"}, frequency_penalty=0, tool_choice="none", metadata={"a": 1})
    assert len(out["choices"]) == 1
    status, out = server.request("POST", "/v1/chat/completions", raw=b"{not json")
    assert status == 400 and "JSON" in out["error"]["message"]


def test_flags_at_start_free_event_loop_and_sigterm_exits_zero(tiny_model: Path, adapters: tuple[Path, Path], tmp_path: Path):
    one, _ = adapters
    srv = Server(tiny_model, tmp_path / "server.log", "--served-model-name", "base", "--adapters", f"critic={one}", "--seed", "7")
    try:
        assert srv.ready["models"] == ["base", "critic"]
        assert srv.chat(model="base", max_tokens=2)["model"] == "base"
        status, _ = srv.request("POST", "/v1/chat/completions", {"model": "policy", "messages": [{"role": "user", "content": "x"}]})
        assert status == 404
        # A long generation runs in a worker thread: the server still answers meanwhile.
        result: dict[str, Any] = {}

        def long_request() -> None:
            try:
                result["reply"] = srv.request("POST", "/v1/completions", {"model": "critic", "prompt": "Go", "max_tokens": 1900, "ignore_eos": True})
            except OSError as err:  # the server may close the connection as it shuts down
                result["error"] = err

        worker = threading.Thread(target=long_request)
        worker.start()
        time.sleep(0.5)
        t0 = time.monotonic()
        status, health = srv.request("GET", "/health", timeout=10)
        assert status == 200 and time.monotonic() - t0 < 2.0
        assert worker.is_alive(), "the long generation ended too soon to show anything"
    except BaseException:
        srv.proc.kill()
        raise
    t0 = time.monotonic()
    assert srv.stop(timeout=60) == 0, srv.log.read_text()
    assert time.monotonic() - t0 < 30
    worker.join(timeout=30)
    assert srv.wait_event("done")["requests"] >= 2
    # The generation in progress was cut short ("abort"), not left to run its 1900 tokens.
    if "reply" in result:
        status, reply = result["reply"]
        assert status == 200 and reply["choices"][0]["finish_reason"] == "abort"
        assert reply["usage"]["completion_tokens"] < 1900
    assert "Traceback" not in srv.log.read_text()


def test_user_errors_exit_2(tmp_path: Path):
    result = run_cli("serve", "--model", str(tmp_path / "nope"), "--adapters", "critic")
    assert result.returncode == 2 and result.stderr.strip().splitlines() == ["error: --adapters: expected name=path, got 'critic'"]
    from tenet_trainer.common import UserError
    from tenet_trainer.serve import Config

    for bad, flag in (({"port": 70000}, "--port"), ({"adapters": "policy=/x"}, "--adapters"), ({"adapters": "a=/x,a=/y"}, "--adapters"), ({"model": ""}, "--model"), ({"batch_wait_ms": -1}, "--batch-wait-ms"), ({"batch_wait_ms": float("nan")}, "--batch-wait-ms")):
        with pytest.raises(UserError, match=flag):
            Config(**{"model": "m", **bad}).validate()
    assert Config(model="m", adapters=" a=/x , b=/y ").adapter_specs() == [("a", "/x"), ("b", "/y")]
