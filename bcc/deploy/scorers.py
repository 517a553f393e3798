"""What scores a batch in triage: the torch checkpoint, or the exported ONNX model on ONNX Runtime.

Both take (N, 3, S, S) float32 images in [0, 1] and return (N, 8) probabilities in OUTPUTS order.
Grad-CAM always uses torch: the scorer's own network, ``explain_checkpoint=``, or the ONNX model's
``source_checkpoint`` metadata (``explainer_net``).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from scipy.special import expit

from bcc.core.patterns import OUTPUTS
from bcc.deploy.onnx_model import INPUT_NAME, OUTPUT_NAME, ort_session, read_metadata
from bcc.models.checkpoint import CheckpointError, load_network
from bcc.models.network import MultitaskNet


class TorchScorer:
    """Probabilities (N, 8) from the torch checkpoint (channels_last, inference_mode)."""

    kind = "torch"

    def __init__(self, checkpoint: str | Path):
        self.net = load_network(checkpoint, channels_last=True)
        self.size = int(self.net.image_size)
        self.describe = f"{self.net.backbone_name} (torch, {Path(checkpoint).name})"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            t = torch.from_numpy(x).contiguous(memory_format=torch.channels_last)
            return torch.sigmoid(self.net(t)).numpy()


class OnnxScorer:
    """Probabilities (N, 8) from an exported model (``bcc.deploy.onnx_export``) on ONNX Runtime's CPU provider."""

    kind = "onnx"

    def __init__(self, path: str | Path, threads: int = 2):
        try:
            self.meta = read_metadata(path)
            self.session = ort_session(path, threads)
        except Exception as e:  # noqa: BLE001 — onnx/onnxruntime raise their own types for a bad file
            raise CheckpointError(f"{path}: not a readable ONNX model ({type(e).__name__}: "
                                  f"{str(e).splitlines()[0] if str(e) else ''})") from None
        outputs = json.loads(self.meta.get("outputs", "null") or "null")
        if outputs is not None and tuple(outputs) != OUTPUTS:
            raise CheckpointError(f"{path}: outputs {outputs} are not in this version's order {OUTPUTS}")
        names = [i.name for i in self.session.get_inputs()], [o.name for o in self.session.get_outputs()]
        if INPUT_NAME not in names[0] or OUTPUT_NAME not in names[1]:
            raise CheckpointError(f"{path}: expected input {INPUT_NAME!r} and output {OUTPUT_NAME!r} "
                                  f"(a model written by python -m bcc.export), found {names}")
        self.size = int(self.meta.get("input_size") or self.session.get_inputs()[0].shape[-1])
        self.describe = (f"{self.meta.get('backbone', '?')} (ONNX Runtime, {Path(path).name}, "
                         f"{self.meta.get('quantization', 'fp32')})")
        check = json.loads(self.meta.get("int8_check") or "null")
        if check:
            self.describe += (f"; int8 check on {check.get('data')}: BCC accuracy fp32 {check['accuracy_fp32']:.3f}, "
                              f"int8 {check['accuracy_int8']:.3f}")

    def __call__(self, x: np.ndarray) -> np.ndarray:
        logits = self.session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(x, dtype=np.float32)})[0]
        return expit(logits)


def make_scorer(model: str | Path, threads: int = 2) -> TorchScorer | OnnxScorer:
    model = Path(model)
    if not model.is_file():
        raise CheckpointError(f"checkpoint={model}: no such file")
    return OnnxScorer(model, threads) if model.suffix == ".onnx" else TorchScorer(model)


def explainer_net(scorer, explain_checkpoint: str | Path | None) -> MultitaskNet:
    """The torch network for Grad-CAM: `explain_checkpoint`, the scorer's own, or the ONNX source checkpoint."""
    if explain_checkpoint:
        return load_network(explain_checkpoint, channels_last=True)
    if isinstance(scorer, TorchScorer):
        return scorer.net
    src = scorer.meta.get("source_checkpoint")
    if src and Path(src).is_file():
        return load_network(src, channels_last=True)
    raise CheckpointError(f"no torch checkpoint for Grad-CAM (the ONNX model's source_checkpoint {src!r} is not "
                          f"there); pass explain_checkpoint=<best.ckpt> or explain=false")
