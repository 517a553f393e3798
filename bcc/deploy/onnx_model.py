"""An exported ONNX model as bcc writes and reads it: input/output names, the one export-and-check step,
a CPU session.

Input ``image`` (N, 3, S, S) float32 RGB in [0, 1]; outputs ``logits`` (N, 8) and, where the backbone
allows a closed form, ``cams`` (N, 8, h, w): the raw Grad-CAM maps (``bcc.deploy.onnx_export``); a fold
ensemble also ``fold_logits`` (N, K, 8), every member's logits (``bcc.deploy.ensemble``). What the model
says about itself is its card (``bcc.deploy.model_card``).

:func:`export_checked` is every export's one path, after timm's ``utils/onnx.py``: ``torch.onnx.export``
(the TorchScript exporter, its deprecation warning filtered) into a temporary file, the parity check of
ONNX Runtime against torch on random images at batch 1 and 5, the card, ONNX's checker, and the rename
into place only when all passed (:func:`save_model`, which the int8 copy and the guarantee use too).
"""
from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from bcc.core.io import atomic_path
from bcc.core.patterns import OUTPUTS
from bcc.deploy.model_card import OPSET, ModelCard

INPUT_NAME, OUTPUT_NAME, MAPS_NAME, FOLDS_NAME = "image", "logits", "cams", "fold_logits"


class ExportError(RuntimeError):
    """The export failed its own check (torch and ONNX Runtime disagree) or cannot be done."""


def ort_session(path: str | Path, threads: int | None = None):
    """A CPU ONNX Runtime session with `threads` intra-op threads (default: torch's current setting)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads or torch.get_num_threads())
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def parity(path: str | Path, reference: Callable[[np.ndarray], dict[str, np.ndarray]], size: int,
           seed: int = 0) -> dict[str, float]:
    """Largest |ONNX Runtime − `reference`| per output of the model at `path` on random images at batch 1
    and 5; `reference` gives torch's outputs by name for a batch."""
    sess = ort_session(path)
    names = [o.name for o in sess.get_outputs()]
    rng = np.random.default_rng(seed)
    worst = dict.fromkeys(names, 0.0)
    for n in (1, 5):
        x = rng.random((n, 3, size, size), dtype=np.float32)
        got = dict(zip(names, sess.run(names, {INPUT_NAME: x}), strict=True))
        want = reference(x)
        worst = {k: max(worst[k], float(np.abs(got[k] - want[k]).max())) for k in names}
    return worst


def save_model(model, path: Path, card: ModelCard, doc: str | None = None) -> None:
    """Write `card` into the ``onnx.ModelProto`` `model` (and `doc` as its doc string), check it with ONNX's
    checker and save it at `path` (a temporary: the caller renames it into place)."""
    import onnx

    card.write(model)
    if doc is not None:
        model.doc_string = doc
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def export_checked(module: torch.nn.Module, output: Path, size: int, names: Sequence[str],
                   reference: Callable[[np.ndarray], dict[str, np.ndarray]], card: ModelCard, doc: str,
                   tolerance: float = 1e-4) -> tuple[dict[str, float], ModelCard]:
    """Export `module` (images (N, 3, `size`, `size`) → the outputs `names`, dynamic batch) to `output`,
    kept only if ONNX Runtime agrees with `reference` within `tolerance` on every output (else
    :class:`ExportError`, nothing written). Returns the differences and the card as written (with the
    maps' difference, where the model has maps)."""
    import onnx

    with atomic_path(output) as tmp:
        with warnings.catch_warnings():  # the TorchScript exporter is deprecated; dynamo needs onnxscript
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(module.eval(), (torch.rand(2, 3, size, size),), str(tmp), input_names=[INPUT_NAME],
                              output_names=list(names), dynamic_axes={k: {0: "batch"} for k in (INPUT_NAME, *names)},
                              opset_version=OPSET, do_constant_folding=True, dynamo=False)
        diff = parity(tmp, reference, size)
        if max(diff.values()) > tolerance:
            raise ExportError(f"{output}: ONNX Runtime and torch disagree by "
                              + ", ".join(f"{v:.2e} ({k})" for k, v in diff.items())
                              + f" > {tolerance:.0e}; export discarded")
        if MAPS_NAME in diff:
            card = card.but(maps={**card.maps, "max_abs_diff_torch": diff[MAPS_NAME]})
        save_model(onnx.load(str(tmp)), tmp, card, doc)
    return diff, card


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
