"""`python -m bcc.export checkpoint=<ckpt> format=onnx [quantize=int8] [output=<file.onnx>]`: CPU deployment.

Writes ``<checkpoint stem>.onnx`` beside the checkpoint (or ``output=``): input ``image`` float32
(N, 3, S, S) RGB in [0, 1] with a dynamic batch N, output ``logits`` (N, 8) in ``bcc.patterns.OUTPUTS``
order (normalisation happens inside the graph, as in ``MultitaskNet``). The export is checked against
torch on random images (max |Δlogit| ≤ ``tolerance``, 1e-4) before it is kept.

``quantize=int8`` also writes ``<name>.int8.onnx``: ONNX Runtime static QDQ quantisation (int8 weights per
channel, uint8 activations, MinMax calibration). Calibration images: ``calibration=<dataset dir>``, else
the checkpoint's own training folds (dataset and fold from the Hydra config saved beside it), else
synthetic lesions. The int8 model is then checked on the checkpoint's test fold (or ``check_data=``,
``check_fold=``): it is kept only if its BCC accuracy there stays within ``max_accuracy_drop`` (1 point)
of the fp32 model's, at the operating threshold; ``force=true`` keeps it anyway. The figures are printed
and stored in its ``bcc.int8_check`` metadata. Where no test fold can be found the check is skipped, and
said so.

Why the check matters: int8 noise is small for a well-trained network but is amplified by a badly
conditioned one. The smoke checkpoints (32 px, two epochs from scratch, BatchNorm statistics from two
batches) are such: ±0.5/255 input noise alone moves their p(BCC) by 0.085 on average, and int8 flips a
third of their decisions, so there the export refuses the int8 model.

Metadata (``onnx`` ``metadata_props``, strings; JSON where structured) — what ``bcc.predict`` reads:
``bcc.backbone``, ``bcc.timm_name``, ``bcc.input_size``, ``bcc.input`` (layout and range),
``bcc.normalisation`` (``{"mean": [...], "std": [...], "applied": "inside the model"}``),
``bcc.outputs`` (code order), ``bcc.thresholds`` (``bcc.predict`` thresholds format),
``bcc.training_data_hash`` (SHA-256 over the training dataset's CSVs and image files, or ``unknown``;
the dataset is found from the Hydra ``.hydra/config.yaml`` beside the checkpoint, or ``data_root=``),
``bcc.training_data`` (its path), ``bcc.source_checkpoint`` (absolute path; explanations need the torch
weights), ``bcc.stage``, ``bcc.opset``, ``bcc.quantization``. Read them back with :func:`read_metadata`.

Writes are atomic (a temporary file renamed into place only after the checks pass).
"""
from __future__ import annotations

import hashlib
import json
import sys
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException
from onnxruntime.quantization import CalibrationDataReader
from scipy.special import expit

from bcc.inference import CheckpointError, load_network, read_checkpoint
from bcc.patterns import CODES, OUTPUTS

OPSET = 17
INPUT_NAME, OUTPUT_NAME = "image", "logits"
DATA_FILES = ("images.csv", "annotations.csv", "labels.csv", "splits.csv")


class ExportError(RuntimeError):
    """The export failed its own check (torch and ONNX Runtime disagree) or cannot be done."""


# ---- training-data hash ---------------------------------------------------------------------------------
def _hydra_config(checkpoint: str | Path):
    cfg_file = Path(checkpoint).parent / ".hydra" / "config.yaml"
    return OmegaConf.load(cfg_file) if cfg_file.is_file() else None


def dataset_root_of(checkpoint: str | Path) -> Path | None:
    """The dataset a checkpoint was trained on, from the Hydra config saved beside it (``.hydra/config.yaml``)."""
    try:
        cfg = _hydra_config(checkpoint)
        root = None if cfg is None else Path(str(OmegaConf.select(cfg, "data.root", throw_on_missing=True)))
    except (OmegaConfBaseException, OSError, ValueError):  # unresolvable, missing key: hash unknown
        return None
    return root if root is not None and root.is_dir() else None


def test_fold_of(checkpoint: str | Path) -> int | None:
    """The fold a checkpoint was tested on (``fold`` in its saved Hydra config), or None."""
    try:
        cfg = _hydra_config(checkpoint)
        fold = None if cfg is None else OmegaConf.select(cfg, "fold", default=None)
        return None if fold is None else int(fold)
    except (OmegaConfBaseException, OSError, ValueError, TypeError):
        return None


def fold_data(root: str | Path, fold: int, size: int, n_train: int = 64) -> dict[str, np.ndarray]:
    """``test`` images (fold `fold`) with their consensus ``y_bcc`` (labels.csv), and up to `n_train`
    ``train`` images (other folds, spread evenly; for calibration), as float32 (n, 3, size, size) arrays
    in [0, 1], resized and cached as in training (``bcc.image_cache``)."""
    import pandas as pd

    root = Path(root)
    for name in ("images.csv", "labels.csv", "splits.csv"):
        if not (root / name).is_file():
            raise FileNotFoundError(f"{root / name}: missing (python -m bcc.consensus / bcc.folds write it)")
    table = (pd.read_csv(root / "images.csv").merge(pd.read_csv(root / "labels.csv")[["image_id", "bcc"]],
                                                     on="image_id")
             .merge(pd.read_csv(root / "splits.csv"), on="image_id"))
    test = (table["fold"] == int(fold)).to_numpy()
    if not test.any():
        raise ValueError(f"{root / 'splits.csv'}: no image in fold {fold}")
    from bcc.image_cache import load_images

    u8 = load_images(root, list(table["image"].astype(str)), size)  # (n, S, S, 3) uint8

    def floats(idx: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(u8[idx].transpose(0, 3, 1, 2), dtype=np.float32) / 255.0

    train = np.flatnonzero(~test)
    train = train[np.linspace(0, len(train) - 1, min(n_train, len(train))).round().astype(int)] if len(train) else train
    return {"test": floats(np.flatnonzero(test)), "y_bcc": table["bcc"].to_numpy()[test].astype(int),
            "train": floats(train)}


def training_data_hash(root: str | Path | None) -> str:
    """``sha256:<hex>`` over the dataset's CSV files and the bytes of every image images.csv lists."""
    if root is None or not (Path(root) / "images.csv").is_file():
        return "unknown"
    root = Path(root)
    h = hashlib.sha256()
    for name in DATA_FILES:
        if (root / name).is_file():
            h.update(name.encode() + b"\0" + (root / name).read_bytes())
    import pandas as pd

    for rel in sorted(pd.read_csv(root / "images.csv", usecols=["image"])["image"].astype(str)):
        p = root / rel
        if p.is_file():
            h.update(rel.encode() + b"\0" + hashlib.sha256(p.read_bytes()).digest())
    return "sha256:" + h.hexdigest()


# ---- export ---------------------------------------------------------------------------------------------
def _torch_logits(net: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return net(torch.from_numpy(x)).numpy()


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


def _set_metadata(model, meta: dict[str, Any]) -> None:
    del model.metadata_props[:]
    for k, v in meta.items():
        entry = model.metadata_props.add()
        entry.key = f"bcc.{k}"
        entry.value = v if isinstance(v, str) else json.dumps(v)


def export_onnx(checkpoint: str | Path, output: str | Path | None = None, thresholds: dict | None = None,
                data_root: str | Path | None = None, tolerance: float = 1e-4, verbose: bool = True) -> Path:
    """Export the checkpoint's network to ONNX (fp32), embed metadata, check it against torch; return the path."""
    import onnx

    from bcc.predict import load_thresholds

    checkpoint = Path(checkpoint)
    output = Path(output) if output else checkpoint.with_suffix(".onnx")
    net = load_network(checkpoint, channels_last=False)
    size = int(net.image_size)
    dummy = torch.rand(2, 3, size, size)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.tmp")
    hp = dict(read_checkpoint(checkpoint).get("hyper_parameters") or {})
    backbone = dict(hp.get("backbone") or {})
    th = thresholds if thresholds is not None else load_thresholds(checkpoint).as_dict()
    root = Path(data_root) if data_root else dataset_root_of(checkpoint)
    meta = {
        "backbone": str(backbone.get("name", net.backbone_name)), "timm_name": str(backbone.get("timm_name", "")),
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
        _set_metadata(model, meta)
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


# ---- int8 -----------------------------------------------------------------------------------------------
def synthetic_calibration_images(n: int, size: int, seed: int = 1) -> np.ndarray:
    """(n, 3, size, size) float32 synthetic lesions (random pattern sets), never from the training files."""
    from bcc.data.synthetic import render
    from bcc.inference import to_input

    rng = np.random.default_rng(seed)
    out = np.empty((n, 3, size, size), dtype=np.float32)
    for i in range(n):
        patterns = (rng.random(len(CODES)) < 0.25).astype(int)
        rgb = render(rng, patterns, size=max(size, 64))[0]
        out[i] = to_input(rgb, size).numpy()
    return out


def dataset_images(root: str | Path, size: int, n: int | None = None, rows: Sequence[int] | None = None
                   ) -> np.ndarray:
    """(n, 3, size, size) float32 in [0, 1]: the dataset's images (``images.csv`` order, the first `n` or
    `rows`), resized and cached as in training (``bcc.image_cache``)."""
    import pandas as pd

    from bcc.image_cache import load_images

    rels = list(pd.read_csv(Path(root) / "images.csv")["image"].astype(str))
    rows = list(rows) if rows is not None else list(range(len(rels)))[: n or len(rels)]
    imgs = load_images(Path(root), [rels[i] for i in rows], size)
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
    acc32, acc8 = float((d32 == y).mean()), float((d8 == y).mean())
    return {"n": len(y), "threshold": threshold, "accuracy_fp32": acc32, "accuracy_int8": acc8,
            "delta": acc8 - acc32, "decisions_agree": int((d32 == d8).sum()),
            "max_abs_dp_bcc": float(np.abs(p8 - p32).max()) if len(y) else 0.0}


def quantize_int8(fp32: str | Path, output: str | Path | None = None, calibration: np.ndarray | None = None,
                  n_calibration: int = 64, verbose: bool = True, check: AccuracyCheck | None = None,
                  force: bool = False, calibration_source: str = "given images") -> Path:
    """Static QDQ int8 copy of an exported model (per-channel int8 weights, uint8 activations).

    `calibration`: (n, 3, S, S) images (default: `n_calibration` synthetic lesions). With `check`, the
    int8 model is kept only if its BCC accuracy on ``check.images`` stays within ``check.max_drop`` of the
    fp32 model's (``ExportError`` otherwise, unless `force`); the figures go into the ``bcc.int8_check``
    metadata either way.
    """
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    fp32 = Path(fp32)
    output = Path(output) if output else fp32.with_suffix(".int8.onnx")
    meta = read_metadata(fp32)
    size = int(meta.get("input_size", 224))
    source = "synthetic lesions (bcc.data.synthetic.render)" if calibration is None else calibration_source
    if calibration is None:
        calibration = synthetic_calibration_images(n_calibration, size)
    t0 = time.perf_counter()
    pre = output.with_name(f".{output.stem}.pre.onnx")
    tmp = output.with_name(f".{output.name}.tmp")
    result = None
    try:
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        quantize_static(str(pre), str(tmp), ArrayReader(calibration), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        qmeta = {**meta, "quantization": f"int8 static QDQ (per-channel int8 weights, uint8 activations), "
                                         f"calibrated on {len(calibration)} {source}"}
        if check is not None:
            result = compare_bcc_accuracy(fp32, tmp, check.images, check.y_bcc, check.threshold)
            result["data"] = check.where
            qmeta["int8_check"] = result
            if abs(result["delta"]) > check.max_drop and not force:
                raise ExportError(
                    f"int8 changes BCC accuracy on {check.where} by {100 * result['delta']:+.1f} points "
                    f"(fp32 {result['accuracy_fp32']:.3f}, int8 {result['accuracy_int8']:.3f}; decisions agree on "
                    f"{result['decisions_agree']}/{result['n']}) — more than {100 * check.max_drop:g}; {output.name} "
                    f"not written. The fp32 model {fp32.name} is unaffected; force=true keeps the int8 one anyway")
        model = onnx.load(str(tmp))
        _set_metadata(model, qmeta)
        onnx.save(model, str(tmp))
        tmp.replace(output)  # atomic: a failed quantisation never leaves a half-written model
    finally:
        pre.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)
    if verbose:
        print(f"[bcc.export] {output} ({output.stat().st_size / 1e6:.1f} MB, {time.perf_counter() - t0:.1f} s, "
              f"{len(calibration)} calibration images)")
        if result is not None:
            print(f"[bcc.export] int8 check on {check.where}: BCC accuracy fp32 {result['accuracy_fp32']:.3f}, "
                  f"int8 {result['accuracy_int8']:.3f} ({100 * result['delta']:+.1f} points, allowed "
                  f"±{100 * check.max_drop:g}); decisions agree on {result['decisions_agree']}/{result['n']}")
    return output


def ort_logits(model: str | Path, images: np.ndarray, batch_size: int = 32, threads: int | None = None
               ) -> np.ndarray:
    """(n, 8) logits of an ONNX model on (n, 3, S, S) float32 images, in batches."""
    sess = ort_session(model, threads)
    if len(images) == 0:
        return np.zeros((0, len(OUTPUTS)), np.float32)
    return np.concatenate([sess.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(images[i:i + batch_size])})[0]
                           for i in range(0, len(images), batch_size)])


def bcc_accuracy(onnx_path: str | Path, images: np.ndarray, y_bcc: np.ndarray, threshold: float = 0.5,
                 batch_size: int = 32) -> float:
    """BCC accuracy of an ONNX model: sigmoid(logit_bcc) ≥ threshold against 0/1 labels."""
    pred = (expit(ort_logits(onnx_path, images, batch_size)[:, 0]) >= threshold).astype(int)
    return float((pred == np.asarray(y_bcc).astype(int)).mean())


# ---- CLI ------------------------------------------------------------------------------------------------
DEFAULTS = {"checkpoint": None, "format": "onnx", "quantize": None, "output": None, "data_root": None,
            "calibration": None, "n_calibration": 64, "tolerance": 1e-4, "check_data": None, "check_fold": None,
            "max_accuracy_drop": 0.01, "force": False}
USAGE = ("usage: python -m bcc.export checkpoint=<best.ckpt> format=onnx [quantize=int8] [output=<file.onnx>] "
         "[data_root=<dataset>] [calibration=<dataset>] [n_calibration=64] [check_data=<dataset>] "
         "[check_fold=<k>] [max_accuracy_drop=0.01] [force=false] [tolerance=1e-4]")


def parse_args(argv: Iterable[str], defaults: dict) -> dict:
    """``key=value`` arguments over `defaults` (values parsed like Hydra's: numbers, booleans, null)."""
    argv = list(argv)
    bad = [a for a in argv if "=" not in a]
    if bad:
        raise SystemExit(f"arguments are key=value; not understood: {bad}")
    given = OmegaConf.to_container(OmegaConf.from_dotlist(argv), resolve=True)
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise SystemExit(f"unknown option(s) {unknown}; options are {sorted(defaults)}")
    return {**defaults, **given}


def int8_inputs(a: dict, fp32: Path) -> tuple[np.ndarray | None, str, AccuracyCheck | None]:
    """Calibration images (None: synthetic), what they are, and the accuracy check for ``quantize=int8``:
    from the options, else from the checkpoint's own Hydra config (its training folds calibrate, its test
    fold checks)."""
    meta = read_metadata(fp32)
    size = int(meta["input_size"])
    root = a["check_data"] or a["data_root"] or dataset_root_of(a["checkpoint"])
    fold = a["check_fold"] if a["check_fold"] is not None else test_fold_of(a["checkpoint"])
    calib, source = None, ""
    if a["calibration"]:
        calib = dataset_images(a["calibration"], size, n=int(a["n_calibration"]))
        source = f"images of {a['calibration']}"
    if root is None or fold is None:
        return calib, source, None
    data = fold_data(root, int(fold), size, n_train=int(a["n_calibration"]))
    th = json.loads(meta.get("thresholds") or "{}").get("bcc", 0.5)
    check = AccuracyCheck(data["test"], data["y_bcc"], f"test fold {fold} of {root} ({len(data['y_bcc'])} images)",
                          float(th), float(a["max_accuracy_drop"]))
    if calib is None and len(data["train"]):
        calib, source = data["train"], f"training-fold images of {root}"
    return calib, source, check


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(k in ("-h", "--help") for k in argv):
        print(USAGE + "\n\n" + (__doc__ or ""))
        return
    a = parse_args(argv, DEFAULTS)
    if not a["checkpoint"]:
        raise SystemExit(USAGE)
    if a["format"] != "onnx":
        raise SystemExit(f"format={a['format']}: only format=onnx is supported")
    if a["quantize"] not in (None, "int8"):
        raise SystemExit(f"quantize={a['quantize']}: only quantize=int8 is supported")
    try:
        path = export_onnx(a["checkpoint"], a["output"], data_root=a["data_root"], tolerance=float(a["tolerance"]))
        if a["quantize"] == "int8":
            calib, source, check = int8_inputs(a, path)
            if check is None:
                print("[bcc.export] WARNING: int8 accuracy NOT checked: no dataset and test fold found for this "
                      "checkpoint (pass check_data=<dataset dir> check_fold=<k>)")
            quantize_int8(path, calibration=calib, n_calibration=int(a["n_calibration"]), check=check,
                          force=bool(a["force"]), calibration_source=source)
    except (CheckpointError, ExportError, OSError, ValueError) as e:
        raise SystemExit(f"bcc.export: {e}") from None


if __name__ == "__main__":
    main()
