"""Batched generation (`generation.Batch`, and `serve`'s scheduler over real HTTP): a request's tokens
and logprobs are the ones it gets alone, whatever shares its forward passes, and whether its prompt's
beginning comes from the prefix cache or not.

Rows join a running batch (prompts of other lengths, so the cache is left-padded) and leave it at
different steps; each keeps its own temperature / top-p / top-k / seed / logprobs. Greedy tokens must
match the single-request run exactly and logprobs within 1e-4 (batched kernels round differently,
~1e-6 in fp32; the tiny model's top logits are far more than that apart). Seeded sampling reproduces.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import torch
from test_serve import Reference, Server, make_adapter, token_ids

from tenet_trainer import generation as gen

TOL = 1e-4

PROMPTS = {
    "short": "Hi",
    "long": "Please explain step by step why water is wet and fire is hot, then write a short poem about tea and the river.",
    "mid": "Count to ten, please.",
    "other": "Which is better, A or B?",
}


@pytest.fixture(scope="module")
def lm(tiny_model: Path):
    from tenet_trainer.models import load_causal_lm, load_tokenizer

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as serve runs in tests (two threads spin against each other on a busy 2-core machine)
    tokenizer = load_tokenizer(str(tiny_model))
    model = load_causal_lm(str(tiny_model), torch.device("cpu"), torch.float32).eval()
    yield model, tokenizer, gen.end_token_ids(tokenizer, model)
    torch.set_num_threads(threads)


def encode(tokenizer: Any, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=True)["input_ids"]


def assert_same_generation(batched: gen.Generation, alone: gen.Generation) -> None:
    assert len(batched.choices) == len(alone.choices)
    for b, a in zip(batched.choices, alone.choices):
        assert b.token_ids == a.token_ids
        assert (b.text, b.finish_reason, b.stop_reason) == (a.text, a.finish_reason, a.stop_reason)
        assert (b.logprobs is None) == (a.logprobs is None)
        for x, y in zip(b.logprobs or [], a.logprobs or []):
            assert x.token_id == y.token_id and abs(x.logprob - y.logprob) <= TOL, (x, y)
            assert len(x.top) == len(y.top)
            assert all(abs(vx - vy) <= TOL for (_, vx), (_, vy) in zip(x.top, y.top))
            theirs = dict(y.top)
            assert all(abs(v - theirs[t]) <= TOL for t, v in x.top if t in theirs)
    if alone.prompt_logprobs is not None:
        assert batched.prompt_logprobs is not None
        for x, y in zip(batched.prompt_logprobs, alone.prompt_logprobs):
            assert (x is None) == (y is None)
            if x is not None and y is not None:
                assert x.token_id == y.token_id and abs(x.logprob - y.logprob) <= TOL


def test_rows_that_join_and_leave_a_batch_get_what_they_get_alone(lm):
    model, tokenizer, ends = lm
    short, long, mid, other = (encode(tokenizer, PROMPTS[k]) for k in ("short", "long", "mid", "other"))
    assert len(short) < len(mid) < len(long)
    free = gen.generate(model, tokenizer, other, gen.SamplingParams(max_tokens=24, temperature=1.0, seed=31, ignore_eos=True), ends)
    text = free.choices[0].text
    stop = next(text[i : i + 2] for i in range(2, len(text) - 1) if text[i : i + 2].isascii() and text[i : i + 2].isprintable())
    work = [
        (short, gen.SamplingParams(max_tokens=14, temperature=0, logprobs=3, ignore_eos=True)),
        (long, gen.SamplingParams(max_tokens=20, temperature=1.0, top_p=0.9, seed=5, logprobs=2, ignore_eos=True)),
        (mid, gen.SamplingParams(max_tokens=6, temperature=0.7, top_k=8, seed=9, n=3, logprobs=0, ignore_eos=True)),
        (other, gen.SamplingParams(max_tokens=24, temperature=1.0, seed=31, stop=(stop,), ignore_eos=True)),
        (long, gen.SamplingParams(max_tokens=0, prompt_logprobs=2)),  # scoring a prompt (echo)
        (mid, gen.SamplingParams(max_tokens=1, temperature=0, logprobs=2)),  # a rater's one-token verdict
        (short, gen.SamplingParams(max_tokens=9, temperature=1.5, seed=77, logprobs=1, ignore_eos=False)),
        (encode(tokenizer, PROMPTS["long"] + " And tea?"), gen.SamplingParams(max_tokens=10, temperature=0, logprobs=2, ignore_eos=True)),
    ]
    alone = [gen.generate(model, tokenizer, ids, p, ends) for ids, p in work]
    assert alone[3].choices[0].finish_reason == "stop" and alone[3].choices[0].stop_reason == stop

    batch = gen.Batch(model, tokenizer, ends, prefixes=gen.PrefixCache())
    seen = {"rows": 0, "padded": False}

    def step() -> None:
        if len(batch.rows) > 1:
            seen["padded"] |= bool((batch.mask == 0).any())
        seen["rows"] = max(seen["rows"], len(batch.rows))
        batch.step()

    jobs = [batch.add(*work[0])]
    step()
    step()
    jobs.append(batch.add(*work[1]))  # longer than the batch: the running row is padded on the left
    step()
    jobs += [batch.add(*w) for w in work[2:4]]  # shorter: they are padded
    for _ in range(4):
        step()
    jobs += [batch.add(*w) for w in work[4:]]
    assert jobs[4].done  # max_tokens 0: answered by the prefill alone
    while not all(j.done for j in jobs):
        step()
    assert not batch.rows and seen["padded"] and seen["rows"] >= 6
    # The last prompt begins like the second: its prefill started from that one's cached KV.
    assert jobs[-1].generation.cached_prompt_tokens >= len(long) - 2 and jobs[1].generation.cached_prompt_tokens == 0
    for j, a in zip(jobs, alone):
        assert_same_generation(j.generation, a)


def test_seeded_sampling_reproduces_in_any_company(lm):
    model, tokenizer, ends = lm
    prompt = encode(tokenizer, PROMPTS["mid"])
    params = gen.SamplingParams(max_tokens=16, temperature=1.0, seed=1234, logprobs=1, ignore_eos=True)
    alone = gen.generate(model, tokenizer, prompt, params, ends)
    batch = gen.Batch(model, tokenizer, ends)
    crowd = [batch.add(encode(tokenizer, PROMPTS[k]), gen.SamplingParams(max_tokens=10 + i, temperature=1.0, seed=i, ignore_eos=True)) for i, k in enumerate(("long", "short", "other"))]
    twins = [batch.add(prompt, params), batch.add(prompt, params)]  # the same seed twice in one batch
    others = [batch.add(prompt, gen.SamplingParams(**{**params.__dict__, "seed": s})) for s in (1, 2, 3)]
    while not all(j.done for j in crowd + twins + others):
        batch.step()
    for twin in twins:
        assert_same_generation(twin.generation, alone)
    assert any(o.generation.choices[0].token_ids != alone.choices[0].token_ids for o in others)


# ------------------------------------------------------------------------------------- over HTTP


@pytest.fixture(scope="module")
def adapters(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("batching-adapters")
    return make_adapter(tiny_model, folder / "one", seed=11), make_adapter(tiny_model, folder / "two", seed=12)


def _requests() -> list[tuple[str, dict[str, Any]]]:
    chat = "/v1/chat/completions"

    def msg(text: str) -> list[dict[str, str]]:
        return [{"role": "user", "content": text}]

    return [
        (chat, {"model": "policy", "messages": msg(PROMPTS["long"]), "max_tokens": 48, "temperature": 0, "logprobs": True, "top_logprobs": 3, "ignore_eos": True}),
        (chat, {"model": "policy", "messages": msg(PROMPTS["short"]), "max_tokens": 40, "temperature": 1.0, "top_p": 0.9, "seed": 7, "logprobs": True, "ignore_eos": True}),
        (chat, {"model": "critic", "messages": msg(PROMPTS["other"]), "max_tokens": 44, "temperature": 0, "logprobs": True, "top_logprobs": 2, "ignore_eos": True}),
        (chat, {"model": "critic", "messages": msg(PROMPTS["mid"]), "max_tokens": 36, "temperature": 0.8, "top_k": 20, "seed": 3, "n": 2, "logprobs": True, "ignore_eos": True}),
        (chat, {"model": "policy", "messages": msg(PROMPTS["mid"]), "max_tokens": 1, "temperature": 0, "logprobs": True, "top_logprobs": 2}),
        ("/v1/completions", {"model": "policy", "prompt": [PROMPTS["mid"], PROMPTS["long"]], "n": 2, "max_tokens": 30, "seed": 5, "logprobs": 2, "ignore_eos": True}),
        ("/v1/completions", {"model": "policy", "prompt": PROMPTS["other"], "max_tokens": 0, "echo": True, "logprobs": 1}),
        ("/v1/completions", {"model": "critic", "prompt": PROMPTS["short"], "max_tokens": 32, "temperature": 1.2, "seed": 9, "logprobs": 0}),
    ]


def assert_same_reply(batched: dict[str, Any], alone: dict[str, Any]) -> None:
    usage = ("prompt_tokens", "completion_tokens", "total_tokens")
    assert [batched["usage"][k] for k in usage] == [alone["usage"][k] for k in usage]
    for b, a in zip([dict(c) for c in batched["choices"]], [dict(c) for c in alone["choices"]], strict=True):
        lb, la = b.pop("logprobs"), a.pop("logprobs")
        assert b == a  # text / message, finish and stop reasons
        if la is None:
            assert lb is None
            continue
        if "content" in la:  # chat
            assert [e["token"] for e in lb["content"]] == [e["token"] for e in la["content"]]
            pairs = [(x["logprob"], y["logprob"]) for x, y in zip(lb["content"], la["content"])]
            pairs += [(p["logprob"], q["logprob"]) for x, y in zip(lb["content"], la["content"]) for p, q in zip(x["top_logprobs"], y["top_logprobs"], strict=True)]
        else:  # legacy completions
            assert lb["tokens"] == la["tokens"] and lb["text_offset"] == la["text_offset"]
            pairs = [(x, y) for x, y in zip(lb["token_logprobs"], la["token_logprobs"]) if x is not None or y is not None]
        assert all(x is not None and y is not None and abs(x - y) <= TOL for x, y in pairs), pairs


def test_concurrent_requests_share_steps_and_answer_as_alone(tiny_model: Path, adapters: tuple[Path, Path], tmp_path: Path):
    one, two = adapters
    srv = Server(tiny_model, tmp_path / "server.log", "--adapters", f"critic={one}")
    try:
        requests = _requests()
        alone = [srv.post(path, body) for path, body in requests]
        replies: list[Any] = [None] * len(requests)
        start = threading.Barrier(len(requests))

        def send(i: int) -> None:
            start.wait()
            replies[i] = srv.request("POST", requests[i][0], requests[i][1])

        threads = [threading.Thread(target=send, args=(i,)) for i in range(len(requests))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        for (status, body), solo in zip(replies, alone):
            assert status == 200, body
            assert_same_reply(body, solo)
        # The same prompts again: served from the prefix cache (all but the last prompt token), same answers.
        assert replies[0][1]["usage"]["prompt_tokens_details"]["cached_tokens"] == replies[0][1]["usage"]["prompt_tokens"] - 1
        assert alone[0]["usage"]["prompt_tokens_details"]["cached_tokens"] == 0

        # An adapter replaced while a request runs on it: the request keeps the weights it started with.
        long_body = {"model": "critic", "prompt": "Go", "max_tokens": 1500, "temperature": 0, "ignore_eos": True, "logprobs": 0, "return_tokens_as_token_ids": True}
        result: dict[str, Any] = {}
        runner = threading.Thread(target=lambda: result.update(reply=srv.request("POST", "/v1/completions", long_body, timeout=600)))
        runner.start()
        threading.Event().wait(0.3)
        srv.chat(model="critic", max_tokens=2)  # admitted after the long one (first come, first admitted)
        assert srv.request("POST", "/v1/load_lora_adapter", {"lora_name": "critic", "lora_path": str(two)})[0] == 200
        assert runner.is_alive(), "the long request ended before the adapter was replaced: nothing was shown"
        content = "Which is better, A or B?"
        new = srv.chat(content, model="critic", max_tokens=6, temperature=0, logprobs=True, top_logprobs=2, return_tokens_as_token_ids=True)
        reference_two = Reference(tiny_model, two)
        prompt = reference_two.chat_prompt_ids(content)
        table = reference_two.logprobs(prompt, token_ids(new["choices"][0]["logprobs"]["content"]))
        assert all(abs(e["logprob"] - table[j, t].item()) <= TOL for j, (e, t) in enumerate(zip(new["choices"][0]["logprobs"]["content"], token_ids(new["choices"][0]["logprobs"]["content"]))))
        runner.join(timeout=600)
        status, reply = result["reply"]
        assert status == 200 and reply["usage"]["completion_tokens"] == 1500
        lp = reply["choices"][0]["logprobs"]
        completion = [int(t.removeprefix("token_id:")) for t in lp["tokens"]]
        reference_one = Reference(tiny_model, one)
        prompt_ids = reference_one.tokenizer("Go")["input_ids"]
        expected = reference_one.logprobs(prompt_ids, completion)
        assert max(abs(v - expected[j, t].item()) for j, (v, t) in enumerate(zip(lp["token_logprobs"], completion))) <= TOL
    except BaseException:
        srv.proc.kill()
        raise
    assert srv.stop() == 0, srv.log.read_text()
    done = srv.wait_event("done")
    # The concurrent round shared forward passes: at least the requests on one set of weights decoded together.
    assert done["max_batch_rows"] >= 4, done
    assert done["decode_steps"] < done["completion_tokens"], done
    assert "Traceback" not in srv.log.read_text()


def test_inverse_cdf_sampling_follows_the_distribution_and_never_picks_probability_zero():
    probs = torch.tensor([[0.0, 0.5, 0.25, 0.0, 0.15, 0.1, 0.0]])
    draws = 40_000
    g = torch.Generator().manual_seed(3)
    picked = gen._inverse_cdf(probs.expand(draws, -1), torch.rand(draws, generator=g, dtype=torch.float64))
    freq = torch.bincount(picked, minlength=probs.shape[1]).double() / draws
    p = probs[0].double()
    sigma = (p * (1 - p) / draws).sqrt()  # a frequency's standard deviation; 5 sigma: no seed fails by chance
    assert bool(((freq - p).abs() <= 5 * sigma + 1e-12).all()), (freq, p)
    assert freq[p == 0].sum().item() == 0.0
    # The extremes of the draw land on the first and the last token of nonzero probability.
    edges = gen._inverse_cdf(probs.expand(2, -1), torch.tensor([0.0, 1.0 - 2.0**-53], dtype=torch.float64))
    assert edges.tolist() == [1, 5]


def test_decode_steps_write_the_kv_cache_in_place(lm):
    model, tokenizer, ends = lm
    batch = gen.Batch(model, tokenizer, ends)
    job = batch.add(encode(tokenizer, PROMPTS["mid"]), gen.SamplingParams(max_tokens=12, temperature=0, ignore_eos=True))
    batch.step()  # the first step moves the prefill's cache into buffers with room to grow
    batch.step()
    layer = batch.cache.layers[0]
    where, length = layer.keys.data_ptr(), layer.keys.shape[-2]
    batch.step()
    assert layer.keys.shape[-2] == length + 1 and layer.keys.data_ptr() == where  # no copy of the whole cache
    while not job.done:
        batch.step()
    assert_same_generation(job.generation, gen.generate(model, tokenizer, encode(tokenizer, PROMPTS["mid"]), gen.SamplingParams(max_tokens=12, temperature=0, ignore_eos=True), ends))


def test_column_major_weights_give_the_same_logits(tiny_model: Path):
    from tenet_trainer.models import load_causal_lm

    plain = load_causal_lm(str(tiny_model), torch.device("cpu"), torch.float32).eval()
    changed = load_causal_lm(str(tiny_model), torch.device("cpu"), torch.float32).eval()
    assert gen.column_major_linears(changed) > 0 and gen.column_major_linears(changed) == 0  # once only
    ids = torch.tensor([list(range(3, 40)), list(range(40, 77))])
    with torch.inference_mode():
        a, b = plain(input_ids=ids).logits, changed(input_ids=ids).logits
    assert (a - b).abs().max().item() <= TOL


def test_prompts_prefilled_together_get_what_they_get_alone(lm):
    """Prompts of different lengths share one right-padded prefill (`Batch.add_many`): first-token
    logprobs, greedy continuations and seeded samples are those of each prompt alone."""
    model, tokenizer, ends = lm
    texts = [
        "Please explain why water is wet and fire is hot.",
        "Count to ten, please, and then count back down.",
        "Which is better, A or B?",
        "Name three rivers.",
    ]
    prompts = [encode(tokenizer, t) for t in texts]
    lengths = [len(p) for p in prompts]
    assert len(set(lengths)) == len(lengths) and gen.prefill_groups(lengths) == [sorted(range(4), key=lambda i: -lengths[i])]
    greedy = gen.SamplingParams(max_tokens=12, temperature=0, logprobs=3, ignore_eos=True)
    work = [
        (prompts[0], greedy),
        (prompts[1], gen.SamplingParams(max_tokens=10, temperature=1.0, top_p=0.9, seed=21, n=2, logprobs=1, ignore_eos=True)),
        (prompts[2], greedy),
        (prompts[3], gen.SamplingParams(max_tokens=0)),
    ]
    alone = [gen.generate(model, tokenizer, ids, p, ends) for ids, p in work]
    calls = {"n": 0}

    def count(*_: Any) -> None:
        calls["n"] += 1

    hook = model.register_forward_hook(count)
    try:
        batch = gen.Batch(model, tokenizer, ends)
        running = batch.add(encode(tokenizer, PROMPTS["long"]), greedy)  # a longer row already decoding
        batch.step()
        before = calls["n"]
        jobs = batch.add_many(work)
        assert calls["n"] == before + 1  # the four prompts shared one forward pass
        assert jobs[3].done and len(batch.rows) == 1 + 1 + 2 + 1 and bool((batch.mask == 0).any())
        while not all(j.done for j in jobs + [running]):
            batch.step()
    finally:
        hook.remove()
    for job, a in zip(jobs, alone):
        assert job.generation.forward_passes == a.forward_passes
        assert_same_generation(job.generation, a)
    assert_same_generation(running.generation, gen.generate(model, tokenizer, encode(tokenizer, PROMPTS["long"]), greedy, ends))
    # Into an empty batch, and a prompt asking for prompt logprobs is prefilled on its own.
    batch = gen.Batch(model, tokenizer, ends)
    echo = gen.SamplingParams(max_tokens=3, temperature=0, prompt_logprobs=2, logprobs=1)
    jobs = batch.add_many([(prompts[2], greedy), (prompts[1], echo), (prompts[0], greedy)])
    while not all(j.done for j in jobs):
        batch.step()
    for job, (ids, p) in zip(jobs, [(prompts[2], greedy), (prompts[1], echo), (prompts[0], greedy)]):
        assert_same_generation(job.generation, gen.generate(model, tokenizer, ids, p, ends))

    # Prompts that begin like a prefix-cache entry (a shared template) start from its KV, together.
    template = "You are a careful assistant. Answer in one line, plainly and briefly: "
    batch = gen.Batch(model, tokenizer, ends, prefixes=gen.PrefixCache())
    seed_job = batch.add(encode(tokenizer, template + "what is tea?"), greedy)
    work = [(encode(tokenizer, template + t), p) for t, (_, p) in zip(texts, work)]
    calls["n"] = 0
    hook = model.register_forward_hook(count)
    try:
        jobs = batch.add_many(work)
    finally:
        hook.remove()
    assert calls["n"] == 1
    common = len(encode(tokenizer, template)) - 2
    assert all(j.generation.cached_prompt_tokens >= common for j in jobs)
    while not all(j.done for j in jobs + [seed_job]):
        batch.step()
    for job, (ids, p) in zip(jobs, work):
        assert_same_generation(job.generation, gen.generate(model, tokenizer, ids, p, ends))
    # The same prompts asked again: each is in the cache whole, so each prefills its last token alone.
    calls["n"] = 0
    hook = model.register_forward_hook(count)
    try:
        again = batch.add_many(work[:3])
    finally:
        hook.remove()
    assert calls["n"] == 3 and [j.generation.cached_prompt_tokens for j in again] == [len(ids) - 1 for ids, _ in work[:3]]
    while not all(j.done for j in again):
        batch.step()
    for job, (ids, p) in zip(again, work):
        assert_same_generation(job.generation, gen.generate(model, tokenizer, ids, p, ends))


def test_prefill_groups_bound_padding_and_size():
    assert gen.prefill_groups([10, 9, 8]) == [[0, 1, 2]]
    assert gen.prefill_groups([3, 40, 38]) == [[1, 2, 0]]  # padding 37 + 2 ≤ the 81 real tokens
    assert gen.prefill_groups([40, 1, 1]) == [[0, 1], [2]]  # a third row of 39 padding would exceed the 42 real tokens
    assert gen.prefill_groups([30, 30, 30], budget=60) == [[0, 1], [2]]
    assert gen.prefill_groups([]) == []


class _OneModel:
    """The scheduler's host for one set of weights: the real tiny model, no adapters."""

    def __init__(self, model: Any, tokenizer: Any, end_ids: set[int]):
        self.model, self.tokenizer, self.end_ids, self.stopping = model, tokenizer, end_ids, False

    def acquire(self, name: str) -> str:
        return name

    def release(self, key: Any) -> None:
        pass

    def weights(self, key: Any):
        import contextlib

        return contextlib.nullcontext()

    def record(self, generations: list[gen.Generation]) -> None:
        pass


@pytest.mark.parametrize("wait", [0.0, 2.0])
def test_an_idle_scheduler_waits_for_a_burst_to_prefill_it_together(lm, wait: float):
    """Three requests arriving 50 ms apart at an idle scheduler: with a 2 s batch wait they are admitted
    together and every decode step carries all three rows (steps == max_tokens, each step 3 rows);
    without it the first starts alone, so its steps are more than max_tokens. Either way each answer is
    what it is alone. (Timing margin: 100 ms of arrivals against a 2 s window.)"""
    from tenet_trainer.batching import Scheduler

    model, tokenizer, end_ids = lm
    params = gen.SamplingParams(max_tokens=12, temperature=0, ignore_eos=True, logprobs=0)
    prompts = [encode(tokenizer, PROMPTS[name]) for name in ("short", "mid", "other")]
    scheduler = Scheduler(_OneModel(model, tokenizer, end_ids), max_num_seqs=3, batch_wait=wait)
    try:
        futures = []
        for prompt in prompts:
            futures.append(scheduler.submit("policy", [prompt], [params]))
            threading.Event().wait(0.05)
        answers = [f.result(timeout=300)[0] for f in futures]
        if wait > 0:
            assert (scheduler.steps, scheduler.max_rows) == (params.max_tokens, 3)
        else:
            assert scheduler.steps > params.max_tokens
        alone = Scheduler(_OneModel(model, tokenizer, end_ids), max_num_seqs=1)
        try:
            for prompt, answer in zip(prompts, answers):
                assert_same_generation(answer, alone.submit("policy", [prompt], [params]).result(timeout=300)[0])
        finally:
            alone.close()
    finally:
        scheduler.close()
