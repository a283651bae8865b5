"""Can a small model judge by likelihood where it cannot judge by answering? A one-off measurement
behind the README's "Rater evaluation" (not part of `npm run bench`): each gold pair's two responses
are scored by the judge model's own log-probabilities instead of by asking it which is better, and the
share of pairs where the gold-chosen response scores higher is printed, overall and per category.

Scores of a response R to a prompt P (ChatML, as the rater sees it; the end-of-turn token included):
  sum           log p(R | P)
  mean          log p(R | P) per token
  sys-mean      per token, with a system prompt that states the pair's principle (its revision request)
  sys-contrast  sys-mean − mean: how much stating the principle makes R more likely
  pmi-mean      mean − per-token log p(R | empty user turn): how much the prompt makes R more likely
  pmi-sum       the same, summed

    .venv/bin/python bench/rater_likelihood.py --model .tenet/models/smollm2-135m-instruct
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path

import torch
import yaml
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a model folder (e.g. the demo's converted SmolLM2-135M-Instruct)")
    parser.add_argument("--gold", default=str(ROOT / "constitutions/gold/default.jsonl"))
    parser.add_argument("--constitution", default=str(ROOT / "constitutions/default.yaml"))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if not (Path(args.model) / "config.json").is_file():
        sys.exit(f"--model {args.model}: not a model folder (no config.json)")
    torch.set_num_threads(args.threads)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).eval()
    principles = {p["id"]: p for p in yaml.safe_load(Path(args.constitution).read_text())["principles"]}
    gold = [json.loads(line) for line in Path(args.gold).read_text().splitlines() if line.strip()]

    def logprobs(messages: list[dict[str, str]], response: str) -> tuple[float, float]:
        context = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        head = tokenizer(context, add_special_tokens=False).input_ids
        tail = tokenizer(response + "<|im_end|>", add_special_tokens=False).input_ids
        ids = torch.tensor([head + tail])
        with torch.no_grad():
            logits = model(ids).logits[0, :-1].log_softmax(-1)
        token = logits.gather(1, ids[0, 1:, None])[:, 0][len(head) - 1 :]
        return token.sum().item(), token.mean().item()

    right: dict[str, dict[str, list[float]]] = collections.defaultdict(lambda: collections.defaultdict(list))
    for n, pair in enumerate(gold, 1):
        principle = principles.get(pair.get("principle", ""))
        system = "You are a helpful, honest and harmless assistant." + (f" {principle['revision'].strip()}" if principle else "")
        turns = [{"role": "user", "content": pair["prompt"]}] if "prompt" in pair else [m for m in pair["messages"] if m["role"] != "system"]
        score = {}
        for side in ("chosen", "rejected"):
            plain = logprobs(turns, pair[side])
            stated = logprobs([{"role": "system", "content": system}, *turns], pair[side])
            empty = logprobs([{"role": "user", "content": ""}], pair[side])
            score[side] = {
                "sum": plain[0],
                "mean": plain[1],
                "sys-mean": stated[1],
                "sys-contrast": stated[1] - plain[1],
                "pmi-mean": plain[1] - empty[1],
                "pmi-sum": plain[0] - empty[0],
            }
        for name in score["chosen"]:
            better = score["chosen"][name] - score["rejected"][name]
            hit = 1.0 if better > 0 else 0.5 if better == 0 else 0.0
            right[name]["all"].append(hit)
            right[name][pair["category"]].append(hit)
        if n % 20 == 0:
            print(f"{n}/{len(gold)} pairs", file=sys.stderr)

    names = list(right)
    categories = [*sorted(c for c in right["sum"] if c != "all"), "all"]
    print(f"accuracy against the gold label, {args.model}, {len(gold)} pairs of {args.gold}")
    print("category".ljust(22) + "pairs".rjust(6) + "".join(f"{name:>14}" for name in names))
    for c in categories:
        print(c.ljust(22) + f"{len(right['sum'][c]):>6}" + "".join(f"{sum(right[name][c]) / len(right[name][c]):>14.2f}" for name in names))


if __name__ == "__main__":
    main()
