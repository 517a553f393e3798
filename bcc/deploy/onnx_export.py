"""The fp32 ONNX export of a checkpoint (``python -m bcc.export``; int8: ``bcc.deploy.int8``).

Writes ``<checkpoint stem>.onnx`` beside the checkpoint (or ``output=``): input ``image`` float32
(N, 3, S, S) RGB in [0, 1] with a dynamic batch N, output ``logits`` (N, 8) in ``bcc.core.patterns.OUTPUTS``
order (normalisation happens inside the graph, as in ``MultitaskNet``). The export is checked against
torch on random images (max |Δlogit| ≤ ``tolerance``, 1e-4) before it is kept.

Metadata (``onnx`` ``metadata_props``, strings; JSON where structured) — what ``bcc.predict`` reads:
``bcc.backbone``, ``bcc.timm_name``, ``bcc.input_size``, ``bcc.input`` (layout and range),
``bcc.normalisation`` (``{"mean": [...], "std": [...], "applied": "inside the model"}``),
``bcc.outputs`` (code order), ``bcc.thresholds`` (``bcc.predict`` thresholds format),
``bcc.training_data_hash`` (SHA-256 over the training dataset's CSVs and image files, or ``unknown``;
the dataset is found from the Hydra ``.hydra/config.yaml`` beside the checkpoint, or ``data_root=``),
``bcc.training_data`` (its path), ``bcc.source_checkpoint`` (absolute path; explanations need the torch
weights), ``bcc.stage``, ``bcc.opset``, ``bcc.quantization``. Read them back with ``bcc.deploy.onnx_model.read_metadata``.

Writes are atomic (a temporary file renamed into place only after the checks pass).
"""
from __future__ import annotations

import hashlib
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from bcc.core.layout import read_job_config
from bcc.core.patterns import CODES, OUTPUTS
from bcc.deploy.onnx_model import INPUT_NAME, OUTPUT_NAME, ort_session, set_metadata
from bcc.deploy.scorers import load_torch_network
from bcc.deploy.thresholds import load_thresholds
from bcc.models.checkpoint import read_checkpoint

OPSET = 17
DATA_FILES = ("images.csv", "annotations.csv", "labels.csv", "splits.csv")


class ExportError(RuntimeError):
    """The export failed its own check (torch and ONNX Runtime disagree) or cannot be done."""


# ---- the checkpoint's training data ---------------------------------------------------------------------
def dataset_root_of(checkpoint: str | Path) -> Path | None:
    """The dataset a checkpoint was trained on, from the Hydra config saved beside it (``.hydra/config.yaml``)."""
    try:
        cfg = read_job_config(Path(checkpoint).parent)
        root = None if cfg is None else Path(str(OmegaConf.select(cfg, "data.root", throw_on_missing=True)))
    except (OmegaConfBaseException, OSError, ValueError):  # unresolvable, missing key: hash unknown
        return None
    return root if root is not None and root.is_dir() else None


def test_fold_of(checkpoint: str | Path) -> int | None:
    """The fold a checkpoint was tested on (``fold`` in its saved Hydra config), or None."""
    try:
        cfg = read_job_config(Path(checkpoint).parent)
        fold = None if cfg is None else OmegaConf.select(cfg, "fold", default=None)
        return None if fold is None else int(fold)
    except (OmegaConfBaseException, OSError, ValueError, TypeError):
        return None


def training_data_hash(root: str | Path | None) -> str:
    """``sha256:<hex>`` over the dataset's CSV files and the bytes of every image images.csv lists."""
    if root is None or not (Path(root) / "images.csv").is_file():
        return "unknown"
    root = Path(root)
    h = hashlib.sha256()
    for name in DATA_FILES:
        if (root / name).is_file():
            h.update(name.encode() + b"\0" + (root / name).read_bytes())
    for rel in sorted(pd.read_csv(root / "images.csv", usecols=["image"])["image"].astype(str)):
        p = root / rel
        if p.is_file():
            h.update(rel.encode() + b"\0" + hashlib.sha256(p.read_bytes()).digest())
    return "sha256:" + h.hexdigest()


# ---- export ---------------------------------------------------------------------------------------------
def _torch_logits(net: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return net(torch.from_numpy(x)).numpy()


def export_onnx(checkpoint: str | Path, output: str | Path | None = None, thresholds: dict | None = None,
                data_root: str | Path | None = None, tolerance: float = 1e-4, verbose: bool = True) -> Path:
    """Export the checkpoint's network to ONNX (fp32), embed metadata, check it against torch; return the path."""
    import onnx

    checkpoint = Path(checkpoint)
    output = Path(output) if output else checkpoint.with_suffix(".onnx")
    net = load_torch_network(checkpoint, channels_last=False)
    size = int(net.image_size)
    dummy = torch.rand(2, 3, size, size)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.tmp")
    hp = dict(read_checkpoint(checkpoint).get("hyper_parameters") or {})
    th = thresholds if thresholds is not None else load_thresholds(checkpoint).as_dict()
    root = Path(data_root) if data_root else dataset_root_of(checkpoint)
    meta = {
        "backbone": net.backbone_name, "timm_name": str(net.spec.get("timm_name") or ""),
        "input_size": str(size), "input": "float32 NCHW RGB in [0, 1], dynamic batch",
        "normalisation": {"mean": net.mean.flatten().tolist(), "std": net.std.flatten().tolist(),
                          "applied": "inside the model"},
        "outputs": list(OUTPUTS), "codes": list(CODES), "thresholds": th,
        "training_data_hash": training_data_hash(root), "training_data": str(root.resolve()) if root else "unknown",
        "source_checkpoint": str(checkpoint.resolve()), "stage": str(hp.get("stage", "")),
        "quantization": "none (fp32)", "opset": str(OPSET),
    }
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():  # the TorchScript exporter is deprecated; dynamo needs onnxscript
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(net, (dummy,), str(tmp), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                              opset_version=OPSET, do_constant_folding=True, dynamo=False)
        model = onnx.load(str(tmp))
        set_metadata(model, meta)
        model.doc_string = "bcc multitask BCC network: logits (N, 8) in order " + ",".join(OUTPUTS)
        onnx.checker.check_model(model)
        onnx.save(model, str(tmp))
        diff = max_abs_diff(net, tmp, size)
        if diff > tolerance:
            raise ExportError(f"{checkpoint}: ONNX Runtime and torch disagree by {diff:.2e} > {tolerance:.0e}; "
                              f"export discarded")
        tmp.replace(output)  # atomic: only a checked model ever appears under its name
    finally:
        tmp.unlink(missing_ok=True)
    if verbose:
        print(f"[bcc.export] {output} ({output.stat().st_size / 1e6:.1f} MB, {time.perf_counter() - t0:.1f} s): "
              f"max |logit(ORT) - logit(torch)| = {diff:.2e} on random images (batch 1 and 5)")
    return output


def max_abs_diff(net: torch.nn.Module, onnx_path: str | Path, size: int, seed: int = 0) -> float:
    """Largest |logit difference| between torch and ONNX Runtime on random images, at batch 1 and 5."""
    sess = ort_session(onnx_path)
    rng = np.random.default_rng(seed)
    worst = 0.0
    for n in (1, 5):
        x = rng.random((n, 3, size, size), dtype=np.float32)
        ort_out = sess.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
        worst = max(worst, float(np.abs(ort_out - _torch_logits(net, x)).max()))
    return worst
