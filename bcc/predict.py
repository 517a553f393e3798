"""`python -m bcc.predict checkpoint=<ckpt|onnx> input=<dir|image> output=<dir> [key=value ...]`: triage.

Scores every file under `input` and writes to `output`:

- ``triage.csv`` — the worklist ranked by p_bcc (highest first): ``rank, image, p_bcc,
  diagnosis_verdict`` (diagnosis head at the operating threshold), ``rule_verdict`` (clinical rule over
  the detected patterns), ``review`` (1 where the two verdicts disagree or p_bcc lies within the
  uncertainty band around the threshold), ``review_reason``, ``patterns`` (detected, e.g.
  ``AT 0.91; ON 0.64``), ``p_PN … p_AT``, ``status`` (``ok``/``skipped``), ``note`` (what was done to
  read the image, or why it was skipped). Skipped inputs (not an image, empty, corrupt, truncated, too
  large, unsupported pixel format) follow the ranked rows; the rest of the batch always completes.
- ``report.html`` — ``bcc.triage_report``: one self-contained page, Grad-CAM overlays included.

Scores come from the torch checkpoint or, for ``checkpoint=<file>.onnx`` (``bcc.export``), from ONNX
Runtime; explanations always use torch (the ONNX model's ``source_checkpoint`` metadata, or
``explain_checkpoint=``). Options: ``threshold``, ``band``, ``pattern_threshold`` (all codes) or
``pattern_thresholds.<CODE>``, ``thresholds=<json>``, ``explain=false``, ``report=false``,
``batch_size`` (32), ``threads`` (2), ``max_megapixels`` (100; larger images are skipped),
``progress`` (a tqdm bar; default: only on a terminal).

Images are read once (EXIF orientation applied, CMYK/greyscale/16-bit/alpha/palette converted to 8-bit
RGB, anything larger than 1024 px scaled down) and every image written out — the report's pictures — is
re-encoded from those pixels, so no EXIF, GPS, ICC profile, comment or text chunk of an input is ever
copied. ``triage.csv`` and ``report.html`` are written atomically (a temporary file renamed into place).

Thresholds (later wins): defaults (0.5, band 0.1) → the model's own (checkpoint key ``"thresholds"``,
or the ONNX ``bcc.thresholds`` metadata) → ``thresholds.json`` beside the model file (``make eval``
writes it) → ``thresholds=<file>`` → the options above. The format (all keys optional)::

    {"bcc": 0.42, "patterns": {"PN": 0.5, "U": 0.5, "ON": 0.5, "MG": 0.5, "ML": 0.5, "SW": 0.5, "AT": 0.5},
     "uncertainty_band": 0.1, "source": "free text: who set them and how"}
"""
from __future__ import annotations

import json
import sys
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from scipy.special import expit

from bcc.inference import CheckpointError, to_input
from bcc.patterns import CODES, OUTPUTS, clinical_rule

THRESHOLDS_FILE = "thresholds.json"
DISPLAY_SIDE = 1024  # images are kept at most this large (longest side) once read
VERDICTS = {1: "BCC", 0: "non-BCC"}


# ---- thresholds -----------------------------------------------------------------------------------------
@dataclass
class Thresholds:
    bcc: float = 0.5
    patterns: dict[str, float] = field(default_factory=lambda: {c: 0.5 for c in CODES})
    band: float = 0.1
    source: str = "defaults"

    def update(self, d: Mapping[str, Any] | None, source: str) -> Thresholds:
        if not d:
            return self
        unknown = set(d) - {"bcc", "patterns", "uncertainty_band", "band", "source"}
        if unknown:
            raise ValueError(f"{source}: unknown threshold key(s) {sorted(unknown)}")
        if d.get("bcc") is not None:
            self.bcc = _unit(d["bcc"], f"{source}: bcc")
        for code, v in dict(d.get("patterns") or {}).items():
            if code not in CODES:
                raise ValueError(f"{source}: unknown pattern code {code!r}; codes are {CODES}")
            self.patterns[code] = _unit(v, f"{source}: patterns.{code}")
        band = d.get("uncertainty_band", d.get("band"))
        if band is not None:
            self.band = _unit(band, f"{source}: uncertainty_band")
        self.source = f"{self.source} + {source}" if self.source != "defaults" else source
        if d.get("source"):
            self.source += f" ({d['source']})"
        return self

    def as_dict(self) -> dict[str, Any]:
        return {"bcc": self.bcc, "patterns": dict(self.patterns), "uncertainty_band": self.band,
                "source": self.source}


def _unit(v: Any, what: str) -> float:
    v = float(v)
    if not 0.0 <= v <= 1.0:
        raise ValueError(f"{what} = {v} is not in [0, 1]")
    return v


def _model_thresholds(model_path: Path) -> dict | None:
    if model_path.suffix == ".onnx":
        from bcc.export import read_metadata

        raw = read_metadata(model_path).get("thresholds")
        try:
            return json.loads(raw) if raw else None
        except ValueError as e:
            raise CheckpointError(f"{model_path}: metadata bcc.thresholds is not valid JSON ({e})") from None
    from bcc.inference import read_checkpoint

    return read_checkpoint(model_path).get("thresholds")


def _read_json(f: Path) -> dict:
    try:
        d = json.loads(f.read_text())
    except ValueError as e:
        raise ValueError(f"{f}: not valid JSON ({e})") from None
    if not isinstance(d, dict):
        raise ValueError(f"{f}: expected a JSON object like {{\"bcc\": 0.42, \"uncertainty_band\": 0.1}}")  # noqa: TRY004
    return d


def load_thresholds(model_path: str | Path, file: str | Path | None = None,
                    overrides: Mapping[str, Any] | None = None) -> Thresholds:
    """Thresholds for a model file: defaults → model metadata → thresholds.json beside it → `file` → overrides."""
    model_path = Path(model_path)
    th = Thresholds()
    th.update(_model_thresholds(model_path), f"{model_path.name} metadata")
    beside = model_path.parent / THRESHOLDS_FILE
    if beside.is_file():
        th.update(_read_json(beside), str(beside))
    if file:
        if not Path(file).is_file():
            raise FileNotFoundError(f"thresholds={file}: no such file")
        th.update(_read_json(Path(file)), str(file))
    th.update({k: v for k, v in (overrides or {}).items() if v is not None}, "command line")
    return th


# ---- reading images -------------------------------------------------------------------------------------
class Skipped(Exception):
    """An input that cannot be scored; the message is the reason shown in triage.csv and the report."""


def read_lesion(path: Path, max_megapixels: float = 100.0, side: int = DISPLAY_SIDE) -> tuple[np.ndarray, str]:
    """``(RGB uint8 (H, W, 3) with longest side ≤ side, note)`` or raises Skipped with the reason.

    Handles EXIF orientation, CMYK, greyscale, palette, alpha, 16-bit and multi-frame files; refuses empty,
    unrecognised, corrupt or truncated files and images over `max_megapixels`.
    """
    size = path.stat().st_size
    if size == 0:
        raise Skipped("empty file (0 bytes)")
    notes: list[str] = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)
        with im:
            w, h = im.size
            if w * h > max_megapixels * 1e6:
                raise Skipped(f"image too large ({w}x{h} = {w * h / 1e6:.0f} megapixels > max_megapixels="
                              f"{max_megapixels:g})")
            if getattr(im, "n_frames", 1) > 1:
                notes.append(f"first of {im.n_frames} frames")
            fmt, mode = im.format, im.mode
            if fmt == "JPEG" and mode in ("RGB", "L"):
                im.draft(mode, (side, side))  # decode huge JPEGs at a reduced scale
            im.load()
            if im.getexif().get(0x0112, 1) not in (1, None):
                notes.append("EXIF orientation applied")
            im = ImageOps.exif_transpose(im)
            rgb = _to_rgb(im, notes)
    except Skipped:
        raise
    except Image.DecompressionBombError as e:
        raise Skipped(f"image too large ({e})") from None
    except UnidentifiedImageError:
        kind = _signature(path)
        raise Skipped(f"corrupt {kind} image (unreadable after its {kind} signature)" if kind
                      else "not an image (format not recognised)") from None
    except (OSError, SyntaxError, EOFError, ValueError) as e:  # what Pillow's decoders raise on bad data
        raise Skipped(f"corrupt or truncated image ({e})") from None
    except MemoryError:
        raise Skipped("image too large to decode in the memory available") from None
    except Exception as e:  # noqa: BLE001 — any other decoder failure skips this file, the batch goes on
        raise Skipped(f"could not be read ({type(e).__name__}: {e})") from None
    if max(rgb.shape[:2]) > side:
        pil = Image.fromarray(rgb)
        pil.thumbnail((side, side), Image.Resampling.LANCZOS)
        notes.append(f"{w}x{h} reduced to {pil.width}x{pil.height}")
        rgb = np.asarray(pil)
    if min(rgb.shape[:2]) < 8:
        raise Skipped(f"image too small ({rgb.shape[1]}x{rgb.shape[0]} pixels)")
    return np.ascontiguousarray(rgb, dtype=np.uint8), "; ".join([f"{fmt} {mode}"] + notes)


SIGNATURES = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG", b"GIF8": "GIF", b"II*\x00": "TIFF",
              b"MM\x00*": "TIFF", b"BM": "BMP"}


def _signature(path: Path) -> str | None:
    """The image format a file's first bytes announce (to tell a corrupt image from a non-image)."""
    with open(path, "rb") as f:
        head = f.read(12)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    return next((kind for magic, kind in SIGNATURES.items() if head.startswith(magic)), None)


def _to_rgb(im: Image.Image, notes: list[str]) -> np.ndarray:
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        a = np.asarray(im).astype(np.float64)
        bits = 16 if mode.startswith("I;16") or a.max() > 255 else 8
        a = np.clip(a / (257.0 if bits == 16 else 1.0), 0, 255)
        notes.append(f"{bits}-bit greyscale scaled to 8-bit")
        return np.repeat(np.round(a).astype(np.uint8)[..., None], 3, axis=2)
    if mode == "F":
        raise Skipped("unsupported pixel format (32-bit float)")
    if mode == "CMYK":
        notes.append("CMYK converted to RGB")
    elif mode in ("L", "LA", "1"):
        notes.append("greyscale")
    elif mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in im.info):
        notes.append("alpha dropped")
    return np.asarray(im.convert("RGB"), dtype=np.uint8)


def list_inputs(path: str | Path, exclude: Path | None = None) -> tuple[Path, list[Path]]:
    """``(root, files)``: the single file, or every non-hidden file under the folder (sorted)."""
    path = Path(path)
    if path.is_file():
        return path.parent, [path]
    if not path.is_dir():
        raise FileNotFoundError(f"input={path}: no such file or folder")
    ex = exclude.resolve() if exclude else None
    files = sorted(p for p in path.rglob("*") if p.is_file() and not any(s.startswith(".") for s in
                   p.relative_to(path).parts) and (ex is None or ex not in p.resolve().parents))
    return path, files


# ---- scoring --------------------------------------------------------------------------------------------
class TorchScorer:
    """Probabilities (N, 8) from the torch checkpoint (channels_last, inference_mode)."""

    kind = "torch"

    def __init__(self, checkpoint: str | Path):
        from bcc.inference import load_network

        self.net = load_network(checkpoint, channels_last=True)
        self.size = int(self.net.image_size)
        self.describe = f"{self.net.backbone_name} (torch, {Path(checkpoint).name})"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            t = torch.from_numpy(x).contiguous(memory_format=torch.channels_last)
            return torch.sigmoid(self.net(t)).numpy()


class OnnxScorer:
    """Probabilities (N, 8) from an exported model (``bcc.export``) on ONNX Runtime's CPU provider."""

    kind = "onnx"

    def __init__(self, path: str | Path, threads: int = 2):
        from bcc.export import INPUT_NAME, OUTPUT_NAME, ort_session, read_metadata

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
        self.io = (INPUT_NAME, OUTPUT_NAME)
        self.size = int(self.meta.get("input_size") or self.session.get_inputs()[0].shape[-1])
        self.describe = (f"{self.meta.get('backbone', '?')} (ONNX Runtime, {Path(path).name}, "
                         f"{self.meta.get('quantization', 'fp32')})")
        check = json.loads(self.meta.get("int8_check") or "null")
        if check:
            self.describe += (f"; int8 check on {check.get('data')}: BCC accuracy fp32 {check['accuracy_fp32']:.3f}, "
                              f"int8 {check['accuracy_int8']:.3f}")

    def __call__(self, x: np.ndarray) -> np.ndarray:
        logits = self.session.run([self.io[1]], {self.io[0]: np.ascontiguousarray(x, dtype=np.float32)})[0]
        return expit(logits)


def make_scorer(model: str | Path, threads: int = 2) -> TorchScorer | OnnxScorer:
    model = Path(model)
    if not model.is_file():
        raise CheckpointError(f"checkpoint={model}: no such file")
    return OnnxScorer(model, threads) if model.suffix == ".onnx" else TorchScorer(model)


def explainer_net(scorer, explain_checkpoint: str | Path | None):
    """The torch network for Grad-CAM: `explain_checkpoint`, the scorer's own, or the ONNX source checkpoint."""
    from bcc.inference import load_network

    if explain_checkpoint:
        return load_network(explain_checkpoint, channels_last=True)
    if isinstance(scorer, TorchScorer):
        return scorer.net
    src = scorer.meta.get("source_checkpoint")
    if src and Path(src).is_file():
        return load_network(src, channels_last=True)
    raise CheckpointError(f"no torch checkpoint for Grad-CAM (the ONNX model's source_checkpoint {src!r} is not "
                          f"there); pass explain_checkpoint=<best.ckpt> or explain=false")


# ---- the worklist ---------------------------------------------------------------------------------------
def verdicts(probs: np.ndarray, th: Thresholds) -> pd.DataFrame:
    """Per image: verdicts, review flag and reason, detected patterns. `probs` (N, 8) in OUTPUTS order.

    ``review`` is 1 where the diagnosis head (p_bcc ≥ th.bcc) and the clinical rule over the detected
    patterns disagree, or where |p_bcc − th.bcc| < th.band (the uncertainty band).
    """
    probs = np.asarray(probs, dtype=np.float64).reshape(-1, len(OUTPUTS))
    p_bcc = probs[:, 0]
    detected = detect(probs, th)
    diag = (p_bcc >= th.bcc).astype(int)
    rule = clinical_rule(detected.astype(int))
    rows = []
    for i in range(len(probs)):
        reasons = []
        if diag[i] != rule[i]:
            reasons.append(f"diagnosis head says {VERDICTS[diag[i]]} but the clinical rule over the patterns "
                           f"says {VERDICTS[rule[i]]}")
        if abs(p_bcc[i] - th.bcc) < th.band:
            reasons.append(f"p_bcc {p_bcc[i]:.2f} is within {th.band:.2f} of the operating threshold {th.bcc:.2f}")
        order = np.argsort(-probs[i, 1:], kind="stable")
        pats = [f"{CODES[j]} {probs[i, 1 + j]:.2f}" for j in order if detected[i, j]]
        rows.append({"p_bcc": float(p_bcc[i]), "diagnosis_verdict": VERDICTS[diag[i]],
                     "rule_verdict": VERDICTS[rule[i]], "review": int(bool(reasons)),
                     "review_reason": "; ".join(reasons), "patterns": "; ".join(pats),
                     **{f"p_{c}": float(probs[i, 1 + j]) for j, c in enumerate(CODES)}})
    return pd.DataFrame(rows, columns=COLUMNS[2:-2])


def detect(probs: np.ndarray, th: Thresholds) -> np.ndarray:
    """(N, 7) bool: pattern probability ≥ its threshold, CODES order."""
    return np.asarray(probs)[:, 1:] >= np.array([th.patterns[c] for c in CODES])


COLUMNS = ["rank", "image", "p_bcc", "diagnosis_verdict", "rule_verdict", "review", "review_reason", "patterns",
           *[f"p_{c}" for c in CODES], "status", "note"]


@dataclass
class Lesion:
    """One input file: its name relative to the input folder, what reading it said, its scores and the
    report's pictures (data URIs, so that no full-size pixels or float maps stay in memory)."""

    image: str
    note: str
    probs: np.ndarray | None = None
    figures: dict[str, str] = field(default_factory=dict)  # "image" and OUTPUTS names → data URI


def _progress(total: int, enabled: bool | None):
    from tqdm.auto import tqdm

    # enabled=None: tqdm decides (on when stderr is a terminal, off in logs and tests)
    return tqdm(total=total, unit="img", desc="bcc.predict", disable=None if enabled is None else not enabled,
                dynamic_ncols=True)


def triage(files: Sequence[Path], root: Path, scorer, th: Thresholds, net=None, batch_size: int = 32,
           max_megapixels: float = 100.0, log=print, render: bool = True,
           progress: bool | None = None) -> tuple[pd.DataFrame, list[Lesion]]:
    """Read, score (and explain) `files` in batches; returns the ranked table and the lesions in its order.

    `net` (a torch ``MultitaskNet``) adds Grad-CAM overlays; when it is the scorer's own network, the
    scores come from the same forward pass. `render` encodes the report's pictures as it goes.
    """
    from bcc.triage_report import lesion_figures

    same_net = net is not None and isinstance(scorer, TorchScorer) and net is scorer.net
    lesions: list[Lesion] = []
    with _progress(len(files), progress) as bar:
        for start in range(0, len(files), batch_size):
            batch: list[tuple[Lesion, np.ndarray]] = []
            for p in files[start:start + batch_size]:
                name = p.relative_to(root).as_posix() if root in p.parents else p.name
                try:
                    rgb, note = read_lesion(p, max_megapixels)
                    batch.append((Lesion(name, note), rgb))
                except Skipped as e:
                    lesions.append(Lesion(name, str(e)))
                    (log if bar.disable else bar.write)(f"[bcc.predict] skipped {name}: {e}")
            if batch:
                x = torch.stack([to_input(rgb, scorer.size) for _, rgb in batch])
                cams = None
                if net is not None:
                    from bcc.explain import raw_cams

                    cams, logits = raw_cams(net, x)
                    probs = torch.sigmoid(logits).numpy() if same_net else scorer(x.numpy())
                else:
                    probs = scorer(x.numpy())
                shown = np.column_stack([np.ones(len(probs), bool), detect(probs, th)])  # bcc + detected codes
                for i, (les, rgb) in enumerate(batch):
                    les.probs = np.asarray(probs[i], dtype=np.float64)
                    if render:
                        les.figures = lesion_figures(rgb, None if cams is None else cams[i],
                                                     [o for o, s in zip(OUTPUTS, shown[i]) if s])
                    lesions.append(les)
            bar.update(min(batch_size, len(files) - start))
    return worklist(lesions, th)


def worklist(lesions: list[Lesion], th: Thresholds) -> tuple[pd.DataFrame, list[Lesion]]:
    """Scored lesions ranked by p_bcc (highest first; ties by name), then the skipped ones by name."""
    ok = sorted((les for les in lesions if les.probs is not None), key=lambda les: (-float(les.probs[0]), les.image))
    skipped = sorted((les for les in lesions if les.probs is None), key=lambda les: les.image)
    table = verdicts(np.stack([les.probs for les in ok]) if ok else np.empty((0, len(OUTPUTS))), th)
    table.insert(0, "image", [les.image for les in ok])
    table.insert(0, "rank", range(1, len(ok) + 1))
    table["status"] = "ok"
    table["note"] = [les.note for les in ok]
    if skipped:
        skipped_rows = pd.DataFrame({"image": [les.image for les in skipped], "status": "skipped",
                                     "note": [les.note for les in skipped]})
        table = pd.concat([table, skipped_rows], ignore_index=True) if len(table) else skipped_rows
    table = table.reindex(columns=COLUMNS)
    table["rank"] = table["rank"].astype("Int64")
    table["review"] = table["review"].astype("Int64")
    return table, ok + skipped


# ---- CLI ------------------------------------------------------------------------------------------------
DEFAULTS: dict[str, Any] = {
    "checkpoint": None, "input": None, "output": None, "threshold": None, "band": None,
    "pattern_threshold": None, "pattern_thresholds": None, "thresholds": None, "explain": True, "report": True,
    "explain_checkpoint": None, "batch_size": 32, "threads": 2, "max_megapixels": 100.0, "progress": None,
}
USAGE = ("usage: python -m bcc.predict checkpoint=<best.ckpt|model.onnx> input=<dir|image> output=<dir> "
         "[threshold=0.5] [band=0.1] [pattern_threshold=0.5] [pattern_thresholds.AT=0.4] [thresholds=<json>] "
         "[explain=true] [explain_checkpoint=<ckpt>] [report=true] [batch_size=32] [threads=2] "
         "[max_megapixels=100] [progress=true|false]")


def run(a: Mapping[str, Any], log=print) -> pd.DataFrame:
    """The CLI's work for parsed options `a` (``DEFAULTS`` keys); returns the triage table as written."""
    a = {**DEFAULTS, **a}
    threads = torch.get_num_threads()
    torch.set_num_threads(int(a["threads"]))
    try:
        return _run(a, log)
    finally:
        torch.set_num_threads(threads)


def _run(a: Mapping[str, Any], log) -> pd.DataFrame:
    t0 = time.perf_counter()
    out = Path(a["output"])
    root, files = list_inputs(a["input"], exclude=out)
    scorer = make_scorer(a["checkpoint"], int(a["threads"]))
    pats = {c: a["pattern_threshold"] for c in CODES} if a["pattern_threshold"] is not None else {}
    pats.update(dict(a["pattern_thresholds"] or {}))
    th = load_thresholds(a["checkpoint"], a["thresholds"],
                         {"bcc": a["threshold"], "uncertainty_band": a["band"], "patterns": pats or None})
    net, explain_note = None, "off (explain=false)" if a["report"] else "off (report=false)"
    if a["explain"] and a["report"]:
        try:
            net = explainer_net(scorer, a["explain_checkpoint"])
            explain_note = f"Grad-CAM (torch) from {getattr(net, 'checkpoint_path', 'the torch checkpoint')}"
        except CheckpointError as e:
            explain_note = f"unavailable: {e}"
            log(f"[bcc.predict] Grad-CAM {explain_note}")
    if not files:
        log(f"[bcc.predict] input={a['input']}: no files in it")
    out.mkdir(parents=True, exist_ok=True)
    table, lesions = triage(files, root, scorer, th, net, int(a["batch_size"]), float(a["max_megapixels"]), log,
                            render=bool(a["report"]), progress=a["progress"])
    from bcc.io import write_csv

    write_csv(table, out / "triage.csv", float_format="%.4f")
    seconds = time.perf_counter() - t0
    if a["report"]:
        from bcc.triage_report import write_report

        info = {"model": scorer.describe, "input": str(a["input"]), "thresholds": th.as_dict(),
                "explanations": explain_note, "seconds": seconds}
        write_report(out / "report.html", table, lesions, info)
    ok = table["status"].eq("ok")
    log(f"[bcc.predict] {int(ok.sum())} scored, {int((~ok).sum())} skipped, "
        f"{int((table['diagnosis_verdict'] == 'BCC').sum())} likely BCC, {int(table['review'].eq(1).sum())} "
        f"flagged for review → {out / 'triage.csv'}" + (f", {out / 'report.html'}" if a["report"] else "")
        + f" ({seconds:.1f} s)")
    return table


def main(argv: Iterable[str] | None = None) -> int:
    from bcc.export import parse_args

    argv = list(sys.argv[1:] if argv is None else argv)
    if any(x in ("-h", "--help") for x in argv):
        print(USAGE + "\n\n" + __doc__)
        return 0
    a = parse_args(argv, DEFAULTS)
    missing = [k for k in ("checkpoint", "input", "output") if not a[k]]
    if missing:
        print(f"{USAGE}\nmissing: {missing}", file=sys.stderr)
        return 2
    try:
        run(a)
    except (CheckpointError, OSError, ValueError) as e:  # OSError: FileNotFoundError, PermissionError, …
        print(f"bcc.predict: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
