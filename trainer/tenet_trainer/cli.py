"""`python -m tenet_trainer <command> [--flags]`: one CLI for every job.

Each command's module holds a `Config` dataclass (its flags) and `run(config)`. User errors (bad
config, data or paths) print one line `error: ...` on stderr and exit 2, without a traceback.

The training commands also take `--nproc N`: N processes train data-parallel with FSDP2 (one per
GPU on CUDA, gloo on CPU; see `distributed`). They run the same way under `torchrun`.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys

from tenet_trainer import distributed
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

TRAINING = ("reward-model", "sft", "dpo", "rl")
"""The commands that run `loop.run`, and so can run in several processes."""


def _without_nproc(args: list[str]) -> list[str]:
    out: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out


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
    if name in TRAINING:
        parser.add_argument("--nproc", type=int, default=None, metavar="N", help="train in N processes (one per GPU; gloo on CPU) with FSDP2")
    namespace = parser.parse_args(rest)
    nproc = getattr(namespace, "nproc", None)
    try:
        limit_cpu_threads()
        config = load_config(module.Config, namespace)
        if nproc is not None:
            distributed.check_nproc(nproc, getattr(config, "device", "auto"), getattr(config, "batch_size", nproc))
            if nproc > 1:
                return distributed.launch([name, *_without_nproc(rest)], nproc)
        if distributed.active():
            if name not in TRAINING:
                raise UserError(f"{name} runs in one process: launch it without torchrun (WORLD_SIZE is set)")
            distributed.init()
        module.run(config)
    except UserError as err:
        # Any rank's user error is reported (the others are stopped by the launcher).
        print(f"error: {err}", file=sys.stderr)
        sys.stderr.flush()
        print(json.dumps({"event": "error", "message": str(err)}), flush=True)
        return 2
    finally:
        distributed.finish()
    return 0
