"""An exported ONNX model as bcc reads it: input/output names, a CPU session, the ``bcc.*`` metadata.

Input ``image`` (N, 3, S, S) float32 RGB in [0, 1]; outputs ``logits`` (N, 8) and, where the backbone
allows a closed form, ``cams`` (N, 8, h, w): the raw Grad-CAM maps (``bcc.deploy.onnx_export``); a fold
ensemble also ``fold_logits`` (N, K, 8), every member's logits (``bcc.deploy.ensemble``).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bcc.core.patterns import OUTPUTS

INPUT_NAME, OUTPUT_NAME, MAPS_NAME, FOLDS_NAME = "image", "logits", "cams", "fold_logits"


def ort_session(path: str | Path, threads: int | None = None):
    """A CPU ONNX Runtime session with `threads` intra-op threads (default: torch's current setting)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads or torch.get_num_threads())
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def read_metadata(path: str | Path) -> dict[str, str]:
    """The ``bcc.*`` metadata_props of an exported model, keys without the ``bcc.`` prefix."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return {p.key.removeprefix("bcc."): p.value for p in model.metadata_props if p.key.startswith("bcc.")}


def set_metadata(model, meta: dict[str, Any]) -> None:
    """Replace a model's metadata_props with ``bcc.<key>`` entries (strings; JSON where structured)."""
    del model.metadata_props[:]
    for k, v in meta.items():
        entry = model.metadata_props.add()
        entry.key = f"bcc.{k}"
        entry.value = v if isinstance(v, str) else json.dumps(v)


def ort_logits(model: str | Path, images: np.ndarray, batch_size: int = 32, threads: int | None = None
               ) -> np.ndarray:
    """(n, 8) logits of an ONNX model on (n, 3, S, S) float32 images, in batches."""
    sess = ort_session(model, threads)
    if len(images) == 0:
        return np.zeros((0, len(OUTPUTS)), np.float32)
    return np.concatenate([sess.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(images[i:i + batch_size])})[0]
                           for i in range(0, len(images), batch_size)])


def correlation_words(m: dict) -> str:
    """How the int8 maps correlate with fp32's, in words ("none to compare" when every map is blank in one)."""
    if m.get("median_correlation") is None:
        return "correlation: no map both models draw to compare"
    return f"correlation median {m['median_correlation']:.3f}, lowest {m['min_correlation']:.3f}"
