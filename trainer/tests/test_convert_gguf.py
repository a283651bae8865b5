"""`convert-gguf`: bad GGUF files are one-line errors that write nothing; the packaged SmolLM2-135M-Instruct
converts into a folder that loads as an ordinary HF model and computes the same logits as the GGUF."""

import json
from pathlib import Path

import gguf
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from conftest import run_cli
from tenet_trainer import convert_gguf
from tenet_trainer.common import UserError


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("missing.gguf", None, "no such file"),
        ("noise.gguf", bytes(range(256)) * 64, "cannot load it as a GGUF model"),
        ("truncated.gguf", b"GGUF\x03\x00\x00\x00garbage", "cannot load it as a GGUF model"),
    ],
    ids=["missing", "noise", "truncated"],
)
def test_a_bad_gguf_is_one_error_naming_it_and_nothing_is_written(tmp_path: Path, name: str, content: bytes | None, message: str):
    source = tmp_path / "in" / name
    source.parent.mkdir()
    if content is not None:
        source.write_bytes(content)
    with pytest.raises(UserError) as caught:
        convert_gguf.run(convert_gguf.Config(gguf=str(source), output=str(tmp_path / "models" / "converted")))
    assert str(caught.value).startswith(f"--gguf {source}: {message}")
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "models").exists()


def test_the_cli_prints_one_error_line(tmp_path: Path):
    result = run_cli("convert-gguf", "--gguf", str(tmp_path / "nope.gguf"), "--output", str(tmp_path / "out"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: --gguf {tmp_path / 'nope.gguf'}: no such file"]
    assert [p.name for p in tmp_path.iterdir()] == []


def test_refuses_to_replace_a_folder_that_is_not_a_conversion(tmp_path: Path):
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "data.txt").write_text("keep me")
    with pytest.raises(UserError, match="does not hold a converted model"):
        convert_gguf.run(convert_gguf.Config(gguf=str(tmp_path / "any.gguf"), output=str(tmp_path / "precious")))
    assert [p.name for p in (tmp_path / "precious").iterdir()] == ["data.txt"]


def test_the_packaged_model_converts_into_a_folder_with_the_gguf_logits(tmp_path: Path):
    out = tmp_path / "smollm2"
    result = run_cli("convert-gguf", "--output", str(out))
    assert result.returncode == 0, result.stderr
    done = result.last("done")
    assert done["output"] == str(out) and done["parameters"] > 100_000_000
    # The converter loaded the folder back and compared its logits on a chat with the GGUF-loaded model's:
    # the same fp32 weights and kernels, so equal up to float rounding (it refuses above 1e-3).
    assert 0 <= done["largest_logit_gap"] < 1e-4
    config = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in config and config["architectures"] == ["LlamaForCausalLM"]
    assert [p.name for p in tmp_path.iterdir()] == ["smollm2"]  # no temp folder left beside it

    tokenizer = AutoTokenizer.from_pretrained(out)
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "Name a colour."}], add_generation_prompt=True, return_tensors="pt")
    ids = ids if torch.is_tensor(ids) else ids["input_ids"]
    assert tokenizer.decode(ids[0]).startswith("<|im_start|>system")  # SmolLM2's ChatML template came along
    converted = AutoModelForCausalLM.from_pretrained(out).eval()
    assert converted.dtype == torch.float32
    # Independently of transformers' GGUF loader (which the converter used), the gguf package's own
    # dequantisation of two tensors, one per quantisation type in the file (Q8_0 embedding, Q4_1 layers),
    # equals the folder's weights. Loading the whole GGUF again here would cost ~20 s of the suite.
    reader = gguf.GGUFReader(convert_gguf.packaged_gguf())
    tensors = {t.name: t for t in reader.tensors}
    for name, weight in [("token_embd.weight", converted.get_input_embeddings().weight), ("blk.0.ffn_down.weight", converted.model.layers[0].mlp.down_proj.weight)]:
        tensor = tensors[name]
        assert torch.equal(torch.from_numpy(gguf.quants.dequantize(tensor.data, tensor.tensor_type).copy()), weight.detach()), name
    with torch.no_grad():
        logits = converted(input_ids=ids).logits
    assert logits.std().item() > 1 and torch.isfinite(logits).all()
