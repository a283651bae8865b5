"""`make-tiny`: a tiny random-initialised causal LM (Llama architecture) and a byte-level BPE
tokenizer with a chat template, written offline to a folder. For tests and offline demos: its
outputs are not meaningful, but every code path (LoRA, DPO, RL, serving, logprobs) runs on it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from tenet_trainer.common import UserError, emit, seed_everything
from tenet_trainer.config import require
from tenet_trainer.loop import publish

SPECIAL_TOKENS = ["<|pad|>", "<|endoftext|>", "<|im_start|>", "<|im_end|>"]

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_WORDS = (
    "the a an and or but if then because so is are was were be been being have has had do does did "
    "i you he she it we they me him her us them my your his its our their this that these those "
    "what which who whom whose when where why how all any both each few more most other some such "
    "no nor not only own same than too very can will just should now help answer question please "
    "thank sorry safe harm honest helpful kind careful explain step number add subtract multiply "
    "divide equal result true false yes maybe good bad better best worse worst water fire earth "
    "one two three four five six seven eight nine ten zero hundred thousand code test function "
    "return value list word sentence story poem write read learn teach person people world time"
).split()


def _corpus(seed: int) -> list[str]:
    g = torch.Generator().manual_seed(seed)
    lines = []
    for _ in range(2000):
        n = int(torch.randint(4, 16, (1,), generator=g))
        idx = torch.randint(0, len(_WORDS), (n,), generator=g).tolist()
        number = int(torch.randint(0, 1000, (1,), generator=g))
        lines.append(" ".join(_WORDS[i] for i in idx).capitalize() + f" {number}. (A) or (B)? Answer: yes!")
    return lines


def build_tokenizer(vocab_size: int, seed: int) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(seed), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<|pad|>",
        eos_token="<|im_end|>",
        unk_token=None,
        bos_token=None,
        additional_special_tokens=["<|endoftext|>", "<|im_start|>"],
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.model_max_length = 2048
    return fast


@dataclass
class Config:
    output: str = ""
    """Folder to write (created; replaced if it holds an earlier tiny model)."""
    seed: int = 0
    vocab_size: int = 512
    hidden_size: int = 64
    intermediate_size: int = 128
    layers: int = 2
    heads: int = 4
    kv_heads: int = 2
    max_positions: int = 2048

    def validate(self) -> None:
        require(self, "output")
        if self.vocab_size < 300:
            raise UserError("--vocab-size: must be at least 300 (256 bytes plus special tokens and merges)")
        if self.hidden_size % self.heads or self.heads % self.kv_heads:
            raise UserError("--hidden-size must divide by --heads, and --heads by --kv-heads")


def run(config: Config) -> None:
    seed_everything(config.seed)
    tokenizer = build_tokenizer(config.vocab_size, config.seed)
    model_config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.layers,
        num_attention_heads=config.heads,
        num_key_value_heads=config.kv_heads,
        max_position_embeddings=config.max_positions,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    torch.manual_seed(config.seed)
    model = LlamaForCausalLM(model_config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id

    def write(folder: Path) -> None:
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        (folder / "tenet-tiny.json").write_text(json.dumps({"note": "random weights: outputs are not meaningful", "seed": config.seed}))

    output = Path(config.output)
    if output.exists() and any(output.iterdir()) and not (output / "tenet-tiny.json").is_file():
        raise UserError(f"{output}: exists and does not hold a tiny model; refusing to replace it")
    output.parent.mkdir(parents=True, exist_ok=True)
    # publish() writes next to the target and moves it into place.
    tmp_parent = output.parent
    folder = publish(tmp_parent, write, name=output.name)
    params = sum(p.numel() for p in model.parameters())
    emit("done", output=str(folder), parameters=params, vocab_size=len(tokenizer))
