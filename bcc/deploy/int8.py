"""int8 copies of an exported model, kept only when they keep the fp32 model's BCC accuracy.

``quantize=int8`` also writes ``<name>.int8.onnx``: ONNX Runtime static QDQ quantisation (int8 weights per
channel, uint8 activations, MinMax calibration). Calibration images: ``calibration=<dataset dir>``, else
the checkpoint's own training folds (dataset and fold from the Hydra config saved beside it), else
synthetic lesions. The int8 model is then checked on the checkpoint's test fold (or ``check_data=``,
``check_fold=``): it is kept only if its BCC accuracy there stays within ``max_accuracy_drop`` (1 point)
of the fp32 model's, at the operating threshold; ``force=true`` keeps it anyway. The figures are printed
and stored in its ``bcc.int8_check`` metadata. Where no test fold can be found the check is skipped, and
said so. A model with Grad-CAM maps in its graph keeps them; how far the int8 maps are from the fp32
ones on the same images (the check's, else the calibration images), post-processed as the overlays are
(``bcc.explanation.gradcam.postprocess`` to the input size, values in [0, 1]), is printed and stored in
``bcc.maps`` as ``int8_vs_fp32`` (:func:`compare_maps`).

Why the check matters: int8 noise is small for a well-trained network but is amplified by a badly
conditioned one. The smoke checkpoints (32 px, two epochs from scratch, BatchNorm statistics from two
batches) are such: ±0.5/255 input noise alone moves their p(BCC) by 0.085 on average, and int8 flips a
third of their decisions, so there the export refuses the int8 model.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from onnxruntime.quantization import CalibrationDataReader
from scipy.special import expit

from bcc.core.classification import binary_metrics
from bcc.core.errors import BadInput, UsageError
from bcc.core.io import atomic_path
from bcc.core.log import get_logger
from bcc.core.patterns import CODES
from bcc.data.cache import decoded_images
from bcc.data.contract import load_image_table
from bcc.data.images import Preprocess, to_input
from bcc.data.synthetic import render
from bcc.data.table import aspects, read_table
from bcc.deploy.model_card import ModelCard
from bcc.deploy.onnx_export import dataset_root_of, test_fold_of
from bcc.deploy.onnx_model import (
    INPUT_NAME,
    MAPS_NAME,
    ExportError,
    correlation_words,
    ort_logits,
    ort_session,
    save_model,
)
from bcc.explanation.gradcam import postprocess

log = get_logger(__name__)


def fold_data(root: str | Path, fold: int, size: Preprocess | int, n_train: int = 64, allow_outside: bool = False
              ) -> dict[str, np.ndarray]:
    """``test`` images (fold `fold`) with their consensus ``y_bcc`` (labels.csv), and up to `n_train`
    ``train`` images (other folds, spread evenly; for calibration), as float32 (n, 3, size, size) arrays
    in [0, 1], resized and cached as in training (``bcc.data.cache``)."""
    table = read_table(root, allow_outside=allow_outside)
    test = (table["fold"] == int(fold)).to_numpy()
    if not test.any():
        raise BadInput(f"{Path(root) / 'splits.csv'}: no image in fold {fold}")
    u8 = decoded_images(Path(root), list(table["image"].astype(str)), size,  # (n, S, S, 3) uint8
                        allow_outside=allow_outside, aspects=aspects(table))

    def floats(idx: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(u8[idx].transpose(0, 3, 1, 2), dtype=np.float32) / 255.0

    train = np.flatnonzero(~test)
    train = train[np.linspace(0, len(train) - 1, min(n_train, len(train))).round().astype(int)] if len(train) else train
    return {"test": floats(np.flatnonzero(test)), "y_bcc": table["bcc"].to_numpy()[test].astype(int),
            "train": floats(train)}


def synthetic_calibration_images(n: int, preprocess: Preprocess | int, seed: int = 1) -> np.ndarray:
    """(n, 3, size, size) float32 synthetic lesions (random pattern sets), never from the training files."""
    preprocess = Preprocess.of(preprocess)
    size = preprocess.size
    rng = np.random.default_rng(seed)
    out = np.empty((n, 3, size, size), dtype=np.float32)
    for i in range(n):
        patterns = (rng.random(len(CODES)) < 0.25).astype(int)
        rgb = render(rng, patterns, size=max(size, 64))[0]
        out[i] = to_input(rgb, preprocess).numpy()
    return out


def dataset_images(root: str | Path, size: Preprocess | int, n: int | None = None, rows: Sequence[int] | None = None,
                   allow_outside: bool = False) -> np.ndarray:
    """(n, 3, size, size) float32 in [0, 1]: the dataset's images (``images.csv`` order, the first `n` or
    `rows`), resized and cached as in training (``bcc.image_cache``)."""
    table = load_image_table(Path(root), check_files=False, allow_outside=allow_outside)
    rels, ratios = list(table["image"]), aspects(table)
    rows = list(rows) if rows is not None else list(range(len(rels)))[: n or len(rels)]
    imgs = decoded_images(Path(root), [rels[i] for i in rows], size, allow_outside=allow_outside,
                          aspects=[ratios[i] for i in rows])
    return np.ascontiguousarray(imgs.transpose(0, 3, 1, 2), dtype=np.float32) / 255.0


class ArrayReader(CalibrationDataReader):
    """onnxruntime CalibrationDataReader over an (n, 3, S, S) array, in batches."""

    def __init__(self, images: np.ndarray, batch_size: int = 8):
        self.batches = iter([images[i:i + batch_size] for i in range(0, len(images), batch_size)])

    def get_next(self) -> dict | None:
        batch = next(self.batches, None)
        return None if batch is None else {INPUT_NAME: batch}


@dataclass
class AccuracyCheck:
    """Held-out images and labels on which an int8 model must keep the fp32 model's BCC accuracy."""

    images: np.ndarray          # (n, 3, S, S) float32 in [0, 1]
    y_bcc: np.ndarray           # (n,) 0/1
    where: str                  # e.g. "fold 0 of /data/synthetic (312 images)"
    threshold: float = 0.5      # the operating threshold on p(BCC)
    max_drop: float = 0.01      # |accuracy(int8) − accuracy(fp32)| allowed (the issue: 1 point)


def compare_bcc_accuracy(fp32: str | Path, int8: str | Path, images: np.ndarray, y_bcc: np.ndarray,
                         threshold: float = 0.5) -> dict[str, Any]:
    """BCC accuracy of both models on the same images, the difference and how many decisions agree."""
    y = np.asarray(y_bcc).astype(int)
    p32, p8 = (expit(ort_logits(m, images)[:, 0]) for m in (fp32, int8))
    d32, d8 = p32 >= threshold, p8 >= threshold
    acc32, acc8 = (float(binary_metrics(y, d)["accuracy"]) if len(y) else float("nan") for d in (d32, d8))
    return {"n": len(y), "threshold": threshold, "accuracy_fp32": acc32, "accuracy_int8": acc8,
            "delta": acc8 - acc32, "decisions_agree": int((d32 == d8).sum()),
            "max_abs_dp_bcc": float(np.abs(p8 - p32).max()) if len(y) else 0.0}


def compare_maps(fp32: str | Path, int8: str | Path, images: np.ndarray, batch_size: int = 16) -> dict[str, Any]:
    """The int8 model's Grad-CAM maps against the fp32 model's on the same images, as the overlays see them
    (post-processed to the input size, in [0, 1]): mean and largest |difference|, the Pearson correlation
    of each of the 8 maps per image (median and lowest, over the maps neither model leaves blank), and how
    many maps are blank (all 0: no positive evidence) in exactly one of the two."""
    s32, s8 = ort_session(fp32), ort_session(int8)
    size = images.shape[-2:]
    diffs, worst, corr, one_blank = [], 0.0, [], 0
    for i in range(0, len(images), batch_size):
        x = {INPUT_NAME: np.ascontiguousarray(images[i:i + batch_size])}
        a, b = (postprocess(torch.from_numpy(s.run([MAPS_NAME], x)[0]), size).flatten(2) for s in (s32, s8))
        d = (a - b).abs()
        diffs.append(d.mean(dim=2).flatten())
        worst = max(worst, float(d.max()))
        one_blank += int(((a.amax(dim=2) == 0) != (b.amax(dim=2) == 0)).sum())
        a, b = a - a.mean(dim=2, keepdim=True), b - b.mean(dim=2, keepdim=True)
        corr.append(((a * b).sum(2) / (a.norm(dim=2) * b.norm(dim=2))).flatten())
    r = torch.cat(corr).numpy()
    r = r[np.isfinite(r)]  # a blank map has no correlation; with none left there is none to state (null, not NaN)
    return {"images": len(images), "maps": len(images) * 8, "mean_abs_diff": float(torch.cat(diffs).mean()),
            "max_abs_diff": worst, "median_correlation": float(np.median(r)) if len(r) else None,
            "min_correlation": float(r.min()) if len(r) else None, "blank_in_one_only": one_blank}



def quantize_int8(fp32: str | Path, output: str | Path | None = None, calibration: np.ndarray | None = None,
                  n_calibration: int = 64, verbose: bool = True, check: AccuracyCheck | None = None,
                  force: bool = False, calibration_source: str = "given images") -> Path:
    """Static QDQ int8 copy of an exported model (per-channel int8 weights, uint8 activations).

    `calibration`: (n, 3, S, S) images (default: `n_calibration` synthetic lesions). With `check`, the
    int8 model is kept only if its BCC accuracy on ``check.images`` stays within ``check.max_drop`` of the
    fp32 model's (``ExportError`` otherwise, unless `force`); the figures go into the ``bcc.int8_check``
    metadata either way. A model with maps gets ``bcc.maps`` ``int8_vs_fp32`` (:func:`compare_maps`).
    """
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    fp32 = Path(fp32)
    output = Path(output) if output else fp32.with_suffix(".int8.onnx")
    card = ModelCard.read(fp32)
    source = "synthetic lesions (bcc.data.synthetic.render)" if calibration is None else calibration_source
    if calibration is None:
        calibration = synthetic_calibration_images(n_calibration, card.preprocess)
    t0 = time.perf_counter()
    pre = output.with_name(f".{output.stem}.pre.onnx")
    result = None
    maps = dict(card.maps)
    try:
        with atomic_path(output) as tmp:  # a failed quantisation or check never leaves a model behind
            quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
            quantize_static(str(pre), str(tmp), ArrayReader(calibration), quant_format=QuantFormat.QDQ,
                            per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
            if maps.get("output") == MAPS_NAME:
                maps["int8_vs_fp32"] = compare_maps(fp32, tmp, check.images if check is not None else calibration)
                maps["int8_vs_fp32"]["data"] = check.where if check is not None else f"the calibration images ({source})"
            if check is not None:
                result = compare_bcc_accuracy(fp32, tmp, check.images, check.y_bcc, check.threshold)
                result["data"] = check.where
                if abs(result["delta"]) > check.max_drop and not force:
                    raise ExportError(
                        f"int8 changes BCC accuracy on {check.where} by {100 * result['delta']:+.1f} points "
                        f"(fp32 {result['accuracy_fp32']:.3f}, int8 {result['accuracy_int8']:.3f}; decisions agree "
                        f"on {result['decisions_agree']}/{result['n']}) — more than {100 * check.max_drop:g}; "
                        f"{output.name} not written. The fp32 model {fp32.name} is unaffected; force=true keeps the "
                        f"int8 one anyway")
            quantization = (f"int8 static QDQ (per-channel int8 weights, uint8 activations), calibrated on "
                            f"{len(calibration)} {source}")
            save_model(onnx.load(str(tmp)), tmp, card.but(quantization=quantization, maps=maps, int8_check=result))
    finally:
        pre.unlink(missing_ok=True)
    if verbose:
        log.info(f"[bcc.export] {output} ({output.stat().st_size / 1e6:.1f} MB, {time.perf_counter() - t0:.1f} s, "
                 f"{len(calibration)} calibration images)")
        if "int8_vs_fp32" in maps:
            m = maps["int8_vs_fp32"]
            log.info(f"[bcc.export] int8 Grad-CAM maps against fp32 on {m['data']}: "
                     f"mean |Δ| {m['mean_abs_diff']:.3f}, max |Δ| {m['max_abs_diff']:.3f} (maps in [0, 1] at the "
                     f"input size); {correlation_words(m)}; "
                     f"{m['blank_in_one_only']} of {m['maps']} maps blank in one model only")
        if check is not None and result is not None:
            log.info(f"[bcc.export] int8 check on {check.where}: BCC accuracy fp32 {result['accuracy_fp32']:.3f}, "
                     f"int8 {result['accuracy_int8']:.3f} ({100 * result['delta']:+.1f} points, allowed "
                     f"±{100 * check.max_drop:g}); decisions agree on {result['decisions_agree']}/{result['n']}")
    return output


def check_source(a: dict) -> tuple[Path | None, int | None]:
    """The dataset and test fold the int8 model is checked on: the options, else the checkpoint's own job."""
    root = a["check_data"] or a["data_root"] or dataset_root_of(a["checkpoint"])
    fold = a["check_fold"] if a["check_fold"] is not None else test_fold_of(a["checkpoint"])
    return root, fold


def require_check(a: dict) -> None:
    """Before anything is written: an int8 model is kept unchecked only when asked (``force=true``)."""
    root, fold = check_source(a)
    if (root is None or fold is None) and not a["force"]:
        raise UsageError(f"quantize=int8: no dataset and test fold to check the int8 model's accuracy on "
                         f"({a['checkpoint']} has no training job config beside it naming them); pass "
                         f"check_data=<dataset dir> check_fold=<k>, or force=true to keep an unchecked int8 model")


def int8_inputs(a: dict, fp32: Path) -> tuple[np.ndarray | None, str, AccuracyCheck | None]:
    """Calibration images (None: synthetic), what they are, and the accuracy check for ``quantize=int8``:
    from the options, else from the checkpoint's own Hydra config (its training folds calibrate, its test
    fold checks)."""
    card = ModelCard.read(fp32)
    size = card.preprocess
    root, fold = check_source(a)
    calib, source = None, ""
    if a["calibration"]:
        calib = dataset_images(a["calibration"], size, n=int(a["n_calibration"]), allow_outside=a["allow_outside"])
        source = f"images of {a['calibration']}"
    if root is None or fold is None:
        return calib, source, None
    data = fold_data(root, int(fold), size, n_train=int(a["n_calibration"]), allow_outside=a["allow_outside"])
    check = AccuracyCheck(data["test"], data["y_bcc"], f"test fold {fold} of {root} ({len(data['y_bcc'])} images)",
                          float(card.thresholds.get("bcc", 0.5)), float(a["max_accuracy_drop"]))
    if calib is None and len(data["train"]):
        calib, source = data["train"], f"training-fold images of {root}"
    return calib, source, check
