"""One dataclass per command. Fields become `--flags`; `--config FILE` (JSON or YAML) sets them too,
and flags given on the command line win. Unknown keys and wrong types are user errors."""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from tenet_trainer.common import UserError

C = TypeVar("C")


@dataclass
class TrainConfig:
    """Fields shared by every training command."""

    model: str = ""
    """Base model: a local folder or a Hugging Face hub id (loaded offline when HF_HUB_OFFLINE=1)."""
    data: str = ""
    """Training data (JSONL)."""
    output: str = ""
    """Output folder: checkpoints/ while training, then the final artifact."""
    adapter: str | None = None
    """Start from this LoRA adapter (e.g. the previous iteration's policy) instead of a fresh one."""
    seed: int = 0
    lr: float = 1e-4
    weight_decay: float = 0.0
    warmup_steps: int = 0
    batch_size: int = 8
    grad_accum: int = 1
    """Micro-batches per optimizer step."""
    epochs: float = 1.0
    max_steps: int | None = None
    """Optimizer steps; overrides epochs."""
    max_grad_norm: float = 1.0
    max_length: int = 512
    checkpoint_every: int = 50
    """Optimizer steps between checkpoints (0: only on SIGTERM)."""
    keep_checkpoints: int = 2
    resume_from: str | None = None
    """A checkpoint folder to resume from; by default the newest under OUTPUT/checkpoints."""
    full_finetune: bool = False
    """Train every weight instead of a LoRA adapter."""
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    lora_target_modules: str = "all-linear"
    """Comma-separated module names, or all-linear."""
    device: str = "auto"
    dtype: str = "auto"
    eval_fraction: float = 0.0
    """Share of the data held out for evaluation (chosen by seed)."""
    log_every: int = 1


def _is_optional(tp: Any) -> tuple[bool, Any]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return True, args[0]
    return False, tp


def _coerce(name: str, tp: Any, value: Any, source: str) -> Any:
    """`source: name: problem` for a config file, `--flag: problem` for a flag."""
    if source.startswith("--"):
        source, name = source, ""
    where = f"{source}: {name}" if name else source
    optional, inner = _is_optional(tp)
    if value is None:
        if optional:
            return None
        raise UserError(f"{where}: must not be null")
    if typing.get_origin(inner) is Literal:
        choices = typing.get_args(inner)
        if value not in choices:
            raise UserError(f"{where}: expected one of {', '.join(map(str, choices))}, got {value!r}")
        return value
    try:
        if inner is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
                return value.lower() in ("true", "1", "yes")
            raise ValueError
        if inner is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if inner is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if inner is str:
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise ValueError
            return str(value)
    except (TypeError, ValueError):
        raise UserError(f"{where}: expected {getattr(inner, '__name__', inner)}, got {value!r}") from None
    return value


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def add_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    parser.add_argument("--config", help="JSON or YAML file with any of the options below (flags win)")
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        _, inner = _is_optional(hints[f.name])
        if inner is bool:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None)
        elif typing.get_origin(inner) is Literal:
            parser.add_argument(flag, dest=f.name, choices=typing.get_args(inner), default=None)
        else:
            parser.add_argument(flag, dest=f.name, default=None, metavar=f.name.upper())


def load_config(cls: type[C], args: argparse.Namespace) -> C:
    """Defaults, then the config file, then flags."""
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    values: dict[str, Any] = {}
    if getattr(args, "config", None):
        path = Path(args.config)
        if not path.is_file():
            raise UserError(f"{path}: no such config file")
        try:
            text = path.read_text(encoding="utf-8")
            raw = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (json.JSONDecodeError, yaml.YAMLError) as err:
            raise UserError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {str(err).splitlines()[0]}") from None
        if not isinstance(raw, dict):
            raise UserError(f"{path}: expected a mapping of options")
        for key, value in raw.items():
            name = str(key).replace("-", "_")
            if name not in names:
                hint = difflib.get_close_matches(name, names, n=1)
                raise UserError(f"{path}: unknown option {key!r}" + (f" (did you mean {hint[0]!r}?)" if hint else ""))
            values[name] = _coerce(name, hints[name], value, str(path))
    for name in names:
        value = getattr(args, name, None)
        if value is not None:
            values[name] = _coerce(name, hints[name], value, "--" + name.replace("_", "-"))
    config = cls(**values)
    validate = getattr(config, "validate", None)
    if callable(validate):
        validate()
    return config


def require(config: Any, *names: str) -> None:
    missing = [n for n in names if not getattr(config, n)]
    if missing:
        raise UserError("missing " + ", ".join("--" + n.replace("_", "-") for n in missing))


def check_train_config(config: TrainConfig) -> None:
    require(config, "model", "data", "output")
    for name in ("batch_size", "grad_accum", "max_length", "lora_r", "keep_checkpoints"):
        if getattr(config, name) < 1:
            raise UserError(f"--{name.replace('_', '-')}: must be at least 1")
    if config.lr <= 0:
        raise UserError("--lr: must be positive")
    if config.max_steps is not None and config.max_steps < 1:
        raise UserError("--max-steps: must be at least 1")
    if config.epochs <= 0:
        raise UserError("--epochs: must be positive")
    if not 0 <= config.eval_fraction < 1:
        raise UserError("--eval-fraction: must be in [0, 1)")
    if config.checkpoint_every < 0:
        raise UserError("--checkpoint-every: must be 0 or more")


def as_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


__all__ = ["TrainConfig", "add_arguments", "load_config", "require", "check_train_config", "as_dict", "field"]
