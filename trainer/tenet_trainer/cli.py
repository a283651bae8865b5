"""`python -m tenet_trainer <command> [--flags]`: one CLI for every job.

Each command's module holds a `Config` dataclass (its flags) and `run(config)`. User errors (bad
config, data or paths) print one line `error: ...` on stderr and exit 2, without a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys

from tenet_trainer.common import UserError, limit_cpu_threads
from tenet_trainer.config import add_arguments, load_config

COMMANDS: dict[str, tuple[str, str]] = {
    "reward-model": ("tenet_trainer.reward_model", "train a Bradley-Terry reward model on preferences and export it to ONNX"),
    "sft": ("tenet_trainer.sft", "supervised fine-tune on SL-CAI revisions"),
    "dpo": ("tenet_trainer.dpo", "DPO / IPO / cDPO on preferences, reference = base with adapters disabled"),
    "rl": ("tenet_trainer.rl", "one online update (GRPO / RLOO) from scored rollouts, KL to the reference"),
    "serve": ("tenet_trainer.serve", "OpenAI-compatible server for a local model with hot-loadable LoRA adapters"),
    "kl": ("tenet_trainer.measure", "measure KL(policy adapter || base) and length on completions the policy wrote"),
    "make-tiny": ("tenet_trainer.make_tiny", "write a tiny random-initialised causal LM and tokenizer to a folder"),
    "convert-gguf": ("tenet_trainer.convert_gguf", "convert a GGUF model (default: the packaged SmolLM2-135M-Instruct) into an fp32 HF folder"),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: python -m tenet_trainer <command> [--help] [options]", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    module = importlib.import_module(COMMANDS[name][0])
    parser = argparse.ArgumentParser(prog=f"python -m tenet_trainer {name}", description=COMMANDS[name][1])
    add_arguments(parser, module.Config)
    namespace = parser.parse_args(rest)
    try:
        limit_cpu_threads()
        config = load_config(module.Config, namespace)
        module.run(config)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.stderr.flush()
        print(json.dumps({"event": "error", "message": str(err)}), flush=True)
        return 2
    return 0
