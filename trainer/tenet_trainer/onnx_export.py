"""Export a scalar-head model (AutoModelForSequenceClassification, num_labels=1) to ONNX and check it.

torch 2.13's dynamo exporter (torch.export + onnxscript) is used: the legacy TorchScript exporter
(`dynamo=False`) bakes the example's sequence length into the attention-mask arithmetic of BERT-like
models and gives wrong scores on other lengths, so it is not an option.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

OPSET = 18
OUTPUT = "score"
EXTERNAL_DATA_BYTES = 1_500_000_000
"""Above this many bytes of fp32 weights, they go to `<file>.data` next to the graph (protobuf's 2 GB limit)."""


class ScoreHead(torch.nn.Module):
    """`model(...).logits[:, 0]` in float32: the exported graph's one output, `score` of shape [batch]."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        return self.model(input_ids=input_ids, attention_mask=attention_mask, **extra).logits[:, 0].float()


def torch_scores(model: torch.nn.Module, inputs: dict[str, np.ndarray]) -> np.ndarray:
    """Scores of one encoded batch with the PyTorch model (on the model's device)."""
    device = next(model.parameters()).device
    head = ScoreHead(model).eval()
    with torch.no_grad():
        return head(**{name: torch.from_numpy(array).to(device) for name, array in inputs.items()}).cpu().numpy()


def export(model: torch.nn.Module, input_names: Sequence[str], example: dict[str, np.ndarray], path: Path) -> None:
    """Write `path` with int64 inputs `input_names` [batch, sequence] (both axes dynamic) and float32 `score` [batch].

    `example` must have at least 2 rows and 2 columns, or torch.export specialises the axis to that size.
    """
    if any(example[name].shape[0] < 2 or example[name].shape[1] < 2 for name in input_names):
        raise ValueError("the export example needs at least 2 rows of at least 2 tokens")
    head = ScoreHead(model).eval()
    args = tuple(torch.from_numpy(example[name]).to(torch.int64) for name in input_names)
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    weight_bytes = sum(p.numel() * 4 for p in model.parameters())
    # The exporter reports progress on stdout, which belongs to the JSON progress lines.
    with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            head,
            args,
            str(path),
            input_names=list(input_names),
            output_names=[OUTPUT],
            opset_version=OPSET,
            dynamo=True,
            dynamic_shapes={name: {0: batch, 1: sequence} for name in input_names},
            external_data=weight_bytes > EXTERNAL_DATA_BYTES,
            verbose=False,
        )


def session(path: Path) -> "onnxruntime.InferenceSession":  # type: ignore[name-defined]  # noqa: F821
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_scores(sess: "onnxruntime.InferenceSession", inputs: dict[str, np.ndarray]) -> np.ndarray:  # type: ignore[name-defined]  # noqa: F821
    feed = {i.name: inputs[i.name].astype(np.int64) for i in sess.get_inputs()}
    return sess.run([OUTPUT], feed)[0]


def max_abs_diff(model: torch.nn.Module, path: Path, batches: Sequence[dict[str, np.ndarray]]) -> float:
    """Largest |torch − onnxruntime| score difference over `batches`; a wrong output shape or dtype is an error."""
    sess = session(path)
    worst = 0.0
    for inputs in batches:
        expected = torch_scores(model, inputs)
        got = onnx_scores(sess, inputs)
        rows = next(iter(inputs.values())).shape[0]
        if got.shape != (rows,) or got.dtype != np.float32:
            raise RuntimeError(f"ONNX export: output {OUTPUT!r} has shape {got.shape} and dtype {got.dtype}, expected ({rows},) float32")
        worst = max(worst, float(np.max(np.abs(expected - got))))
    return worst
