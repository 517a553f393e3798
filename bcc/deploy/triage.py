"""Triage of new images: read, score (and explain) a folder, rank the worklist, write it and the report.

``run_triage`` is what ``python -m bcc.predict checkpoint=<ckpt|onnx> input=<dir|image> output=<dir>``
does (options: ``conf/predict.yaml``, checked first by ``bcc.deploy.option_checks``: a wrong value, or
``output=`` being or lying inside a folder ``input=``, is refused before anything is read or written).
It writes to `output`:

- ``triage.csv`` — the worklist ranked by p_bcc (highest first): ``rank, image, p_bcc,
  diagnosis_verdict`` (diagnosis head at the operating threshold), ``rule_verdict`` (clinical rule over
  the detected patterns), ``review`` (1 where the two verdicts disagree or p_bcc lies within the
  uncertainty band around the threshold), ``review_reason`` (a JSON list of the reasons), ``patterns``
  (detected, e.g. ``AT 0.91; ON 0.64``), ``p_PN … p_AT``, ``status`` (``ok``/``skipped``), ``note`` (what was done to
  read the image, or why it was skipped). Every input is listed (``bcc.explanation.batch``: inputs,
  their names, the skip reasons); skipped ones follow the ranked rows and the rest of the batch always
  completes. Text cells a spreadsheet would run as a formula (a file named ``=HYPERLINK(…).png``) get a
  leading ``'`` (``csv_safe``, OWASP's rule); the numbers are written as numbers.
- ``report.html`` — ``bcc.deploy.report_html``: one self-contained page; the eight Grad-CAM maps per lesion are
  kept raw and drawn by the page (``bcc.deploy.maps_js``), also saved as ``maps.npy``; ``run.json`` says what
  ``bcc.review import`` needs (input folder, model, thresholds, the model's sensitivity guarantee).
- an ensemble's members (``bcc.deploy.ensemble``) flag a case whose p(BCC) they put on both sides of the
  threshold (``fold_spread``: their max − min).

Scores come from the torch checkpoint or, for ``checkpoint=<file>.onnx`` (``bcc.export``), from ONNX
Runtime; the Grad-CAM maps from the same pass — the torch network's, or the ONNX model's own ``cams``
output — else from the torch source checkpoint (``bcc.deploy.scorers.explainer``); thresholds from
``bcc.deploy.thresholds``. Images are read once by the one reader (``bcc.data.images.read_rgb``: EXIF
orientation applied, CMYK/greyscale/16-bit/alpha/palette converted, exactly as training reads them), the
network input is made from the full image as in training, and the copy kept for the report is at most
1024 px. Every image written out is re-encoded from pixels, so no EXIF, GPS, ICC profile, comment or
text chunk of an input is ever copied. ``triage.csv`` and ``report.html`` are written atomically (a
temporary file renamed into place).
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from bcc.core.io import OutputSet, atomic_path, csv_safe, shown, write_csv, write_json
from bcc.core.jobs import file_sha256
from bcc.core.log import get_logger
from bcc.core.patterns import CODES, OUTPUTS, clinical_rule, rule_defined
from bcc.data.images import Preprocess, UnreadableImage, shrink, to_input, view_box
from bcc.deploy.option_checks import input_and_output
from bcc.deploy.report_html import lesion_figures, write_report
from bcc.deploy.scorers import OnnxScorer, TorchScorer, explainer, make_scorer, torch_threads
from bcc.deploy.thresholds import Thresholds, load_thresholds
from bcc.explanation.batch import input_name, list_inputs, read_input

log = get_logger(__name__)

DISPLAY_SIDE = 1024  # the copy of an image kept for the report: longest side at most this
SHRINK_WARNING = 8   # an image this many times larger than the model's input is said to lose its fine detail
MAPS, RUN = "maps.npy", "run.json"
VERDICTS = {1: "BCC", 0: "non-BCC"}
RULE_UNAVAILABLE = "n/a (no BCC pattern trained)"


def read_lesion(path: Path, preprocess: Preprocess, max_megapixels: float) -> tuple[np.ndarray, np.ndarray, str]:
    """``(network input, RGB for the report (≤ DISPLAY_SIDE), note)``; raises UnreadableImage."""
    rgb, note = read_input(path, max_megapixels)
    x = to_input(rgb, preprocess).numpy()
    size = preprocess.size
    if max(rgb.shape[:2]) >= SHRINK_WARNING * size:
        note += (f"; {rgb.shape[1]}x{rgb.shape[0]} scored at the model's {size}x{size} px input "
                 f"({max(rgb.shape[:2]) / size:.0f}x smaller: finer detail is lost)")
    small = shrink(rgb, DISPLAY_SIDE)
    if small is not rgb:
        note += f"; {rgb.shape[1]}x{rgb.shape[0]} reduced to {small.shape[1]}x{small.shape[0]} for the report"
    return x, np.ascontiguousarray(small), note


# ---- the worklist ---------------------------------------------------------------------------------------
def verdicts(probs: np.ndarray, th: Thresholds, folds: np.ndarray | None = None) -> pd.DataFrame:
    """Per image: verdicts, review flag and reason, detected patterns. `probs` (N, 8) in OUTPUTS order,
    NaN for an output the model was not trained on (never detected, left out of the rule); `folds` (N, K):
    each member's p(BCC) when the model is a fold ensemble.

    ``review`` is 1 where the diagnosis head (p_bcc ≥ th.bcc) and the clinical rule over the detected
    patterns disagree, where |p_bcc − th.bcc| < th.band (the uncertainty band), or where the ensemble's
    members fall on both sides of th.bcc (their disagreement: an uncertainty the mean hides).
    ``fold_spread`` is the members' max − min p(BCC) (blank for a single model).
    """
    probs = np.asarray(probs, dtype=np.float64).reshape(-1, len(OUTPUTS))
    p_bcc = probs[:, 0]
    detected = th.detect(probs)
    diag = (p_bcc >= th.bcc).astype(int)
    known = np.isfinite(probs[:, 1:]).all(axis=0) if len(probs) else np.ones(len(CODES), bool)
    known = np.asarray(known)
    has_rule = rule_defined(known)
    rule = clinical_rule(detected.astype(int), known)
    rows = []
    for i in range(len(probs)):
        reasons = []
        if has_rule and diag[i] != rule[i]:
            reasons.append(f"diagnosis head says {VERDICTS[diag[i]]} but the clinical rule over the patterns "
                           f"says {VERDICTS[rule[i]]}")
        if abs(p_bcc[i] - th.bcc) < th.band:
            reasons.append(f"p_bcc {p_bcc[i]:.2f} is within {th.band:.2f} of the operating threshold {th.bcc:.2f}")
        spread = np.nan
        if folds is not None:
            f = np.asarray(folds[i], dtype=np.float64)
            spread = float(f.max() - f.min())
            if (f >= th.bcc).any() and (f < th.bcc).any():
                reasons.append(f"the {len(f)} fold models disagree: p_bcc from {f.min():.2f} to {f.max():.2f}, on "
                               f"both sides of the operating threshold {th.bcc:.2f}")
        order = np.argsort(-probs[i, 1:], kind="stable")
        pats = [f"{CODES[j]} {probs[i, 1 + j]:.2f}" for j in order if detected[i, j]]
        rows.append({"p_bcc": float(p_bcc[i]), "diagnosis_verdict": VERDICTS[diag[i]],
                     "rule_verdict": VERDICTS[rule[i]] if has_rule else RULE_UNAVAILABLE, "review": int(bool(reasons)),
                     "review_reason": reasons, "patterns": "; ".join(pats),
                     **{f"p_{c}": float(probs[i, 1 + j]) for j, c in enumerate(CODES)}, "fold_spread": spread})
    return pd.DataFrame(rows, columns=COLUMNS[2:-2])


COLUMNS = ["rank", "image", "p_bcc", "diagnosis_verdict", "rule_verdict", "review", "review_reason", "patterns",
           *[f"p_{c}" for c in CODES], "fold_spread", "status", "note"]


@dataclass
class Lesion:
    """One input file: its name relative to the input folder, what reading it said, its scores, the
    report's picture (a data URI, so that no full-size pixels stay in memory) and the raw Grad-CAM maps
    (8 x h x w: the page draws them, ``bcc.deploy.maps_js``)."""

    image: str
    note: str
    probs: np.ndarray | None = None
    figures: dict[str, str] = field(default_factory=dict)  # "image" → data URI
    cams: np.ndarray | None = None      # (8, h, w) float32 raw Grad-CAM, OUTPUTS order
    view: tuple[float, ...] = (0.0, 0.0, 1.0, 1.0)  # the part of the picture the network saw (fractions)
    folds: np.ndarray | None = None     # (K,) each ensemble member's p(BCC)
    sha256: str | None = None           # the scored file's content ("sha256:<hex>"): bcc.review checks it


def _progress(total: int, enabled: bool | None):
    # enabled=None: tqdm decides (on when stderr is a terminal, off in logs and tests)
    return tqdm(total=total, unit="img", desc="bcc.predict", disable=None if enabled is None else not enabled,
                dynamic_ncols=True)


def triage(files: Sequence[Path], root: Path, scorer: TorchScorer | OnnxScorer, th: Thresholds,
           explainer: TorchScorer | OnnxScorer | None = None, batch_size: int = 32, max_megapixels: float = 100.0,
           render: bool = True, progress: bool | None = None) -> tuple[pd.DataFrame, list[Lesion]]:
    """Read, score (and explain) `files` in batches; returns the ranked table and the lesions in its order.

    `explainer` (``bcc.deploy.scorers.explainer``) adds the raw Grad-CAM maps; when it is the scorer
    itself, scores and maps come from the same pass. `render` encodes the report's picture of each lesion
    as it goes; the maps are kept raw (8 x h x w floats) and drawn by the page, so they cost triage next
    to nothing. Outside the scorer's and explainer's own calls torch runs on one thread: what is left for
    it is too small to share, and on a busy machine 2 threads made it far slower (docs/speed.md).
    """
    lesions: list[Lesion] = []
    with _progress(len(files), progress) as bar, torch_threads(1):
        for start in range(0, len(files), batch_size):
            batch: list[tuple[Lesion, np.ndarray, np.ndarray]] = []
            for p in files[start:start + batch_size]:
                name, remark = input_name(p, root)
                try:
                    x, rgb, note = read_lesion(p, scorer.preprocess, max_megapixels)
                    batch.append((Lesion(name, "; ".join(filter(None, [note, remark])), sha256=file_sha256(p)), x,
                                  rgb))
                except UnreadableImage as e:
                    lesions.append(Lesion(name, "; ".join(filter(None, [str(e), remark]))))
                    (log.info if bar.disable else bar.write)(f"[bcc.predict] skipped {name}: {e}")
            if batch:
                x = np.stack([x for _, x, _ in batch])
                explain = render and explainer is not None
                probs, cams, folds = scorer.score(x, maps=explain and explainer is scorer)
                probs = np.where(scorer.trained, probs, np.nan)  # an untrained head's output is no finding
                if explain and explainer is not None and explainer is not scorer:
                    cams = explainer(x, maps=True)[1]
                for i, (les, _, rgb) in enumerate(batch):
                    les.probs = np.asarray(probs[i], dtype=np.float64)
                    les.folds = None if folds is None else folds[i]
                    if cams is not None:
                        les.cams = np.asarray(cams[i], dtype=np.float32)
                    if render:
                        les.figures = lesion_figures(rgb)
                        left, top, right, bottom = view_box(rgb.shape[1], rgb.shape[0], scorer.preprocess.resize)
                        les.view = (left / rgb.shape[1], top / rgb.shape[0], right / rgb.shape[1],
                                    bottom / rgb.shape[0])
                    lesions.append(les)
            bar.update(min(batch_size, len(files) - start))
    return worklist(lesions, th)


def worklist(lesions: list[Lesion], th: Thresholds) -> tuple[pd.DataFrame, list[Lesion]]:
    """Scored lesions ranked by p_bcc (highest first; ties by name), then the skipped ones by name."""
    ok = sorted((les for les in lesions if les.probs is not None),
                key=lambda les: (-float(cast(np.ndarray, les.probs)[0]), les.image))
    skipped = sorted((les for les in lesions if les.probs is None), key=lambda les: les.image)
    folds = np.stack([cast(np.ndarray, les.folds) for les in ok]) if ok and ok[0].folds is not None else None
    table = verdicts(np.stack([cast(np.ndarray, les.probs) for les in ok]) if ok else np.empty((0, len(OUTPUTS))), th, folds)
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


def write_worklist(out: Path, table: pd.DataFrame, lesions: list[Lesion], info: Mapping[str, Any],
                   report: bool = True) -> None:
    """``triage.csv`` (formula-leading text cells neutralised, each row's review reasons a JSON list), with
    `report` ``report.html``, with maps ``maps.npy`` ((n, 8, h, w) float32 raw Grad-CAM of the scored rows,
    in ``triage.csv`` order), then ``run.json``: `info`, whether this run wrote maps, and each scored row's
    exact name and content hash (``cases``) — what ``bcc.review`` imports (a ``maps.npy`` left by an
    earlier run is not this run's: run.json says so; a picture changed since is refused by its hash)."""
    out.mkdir(parents=True, exist_ok=True)
    scored = [les for les in lesions if les.probs is not None]
    maps = bool(scored) and all(les.cams is not None for les in scored)
    if maps:
        with atomic_path(out / MAPS) as tmp, open(tmp, "wb") as f:
            np.save(f, np.stack([cast(np.ndarray, les.cams) for les in scored]))
    reasons = table["review_reason"].map(lambda r: json.dumps(r, ensure_ascii=False) if isinstance(r, list) else r)
    write_csv(csv_safe(table.assign(review_reason=reasons)), out / "triage.csv", float_format="%.4f")
    if report:
        write_report(out / "report.html", table, lesions, info)
    write_json({**{k: v for k, v in info.items() if k != "seconds"}, "maps": maps, "scored": len(scored),
                "cases": [{"image": les.image, "sha256": les.sha256} for les in scored]}, out / RUN)


def guarantee_status(g: Mapping[str, Any] | None, th: Thresholds) -> dict[str, Any] | None:
    """The model's exported guarantee (``bcc.deploy.guarantee_calibration.attach_guarantee``) and whether this run keeps
    it: an operating threshold other than the guaranteed one (thresholds.json, ``threshold=``) voids it."""
    if not g:
        return None
    applies = abs(th.bcc - float(g["threshold"])) < 1e-9
    return {**g, "applies": applies,
            "why": "" if applies else (f"the operating threshold {th.bcc:.4f} ({th.source}) is not the guaranteed "
                                        f"{float(g['threshold']):.4f}: the guarantee does not hold for this run")}


# ---- the command ----------------------------------------------------------------------------------------
def run_triage(a: Mapping[str, Any]) -> pd.DataFrame:
    """``python -m bcc.predict``'s work for options `a` (``conf/predict.yaml``, checked against ``core.settings.PredictConfig``);
    returns the worklist (``triage.csv`` holds it with formula-leading text cells neutralised)."""
    t0 = time.perf_counter()
    inp, out = input_and_output(a)
    root, files = list_inputs(inp)
    outputs = OutputSet(out, "bcc.predict", ["triage.csv", MAPS, RUN, *(["report.html"] if a["report"] else [])],
                        a["overwrite"])
    scorer = make_scorer(a["checkpoint"], a["threads"])
    pats = {c: a["pattern_threshold"] for c in CODES} if a["pattern_threshold"] is not None else {}
    pats.update({c: v for c, v in dict(a["pattern_thresholds"] or {}).items() if v is not None})
    th = load_thresholds(a["checkpoint"], a["thresholds"],
                         {"bcc": a["threshold"], "uncertainty_band": a["band"], "patterns": pats or None})
    ex, explain_note = None, "off (explain=false)" if a["report"] else "off (report=false)"
    if a["explain"] and a["report"]:
        ex, explain_note = explainer(scorer, a["explain_checkpoint"], a["threads"])
        if ex is None:
            log.info(f"[bcc.predict] Grad-CAM {explain_note}")
    if not files:
        log.info(f"[bcc.predict] input={shown(inp)}: no files in it")
    table, lesions = triage(files, root, scorer, th, ex, a["batch_size"], a["max_megapixels"],
                            render=a["report"], progress=a["progress"])
    seconds = time.perf_counter() - t0
    shrunk = int(table["note"].str.contains("scored at the model's", regex=False).sum())
    if shrunk:
        log.info(f"[bcc.predict] warning: {shrunk} image(s) are {SHRINK_WARNING}x or more larger than the model's "
                 f"{scorer.preprocess.size} px input (what it was trained at): their fine detail is lost (note in "
                 f"triage.csv)")
    untrained = [o for o, t in zip(OUTPUTS, scorer.trained, strict=True) if not t]
    info = {"model": scorer.describe, "input": shown(inp), "input_path": os.fsdecode(inp.resolve()),
            "thresholds": th.as_dict(), "explanations": explain_note, "seconds": seconds,
            "input_size": scorer.preprocess.size, "preprocess": scorer.preprocess.as_dict(), "not_trained": untrained,
            "guarantee": guarantee_status(scorer.guarantee, th)}
    with outputs.staging() as staged:
        write_worklist(staged, table, lesions, info, report=a["report"])
    ok = table["status"].eq("ok")
    log.info(f"[bcc.predict] {int(ok.sum())} scored, {int((~ok).sum())} skipped (reasons in triage.csv), "
             f"{int((table['diagnosis_verdict'] == 'BCC').sum())} likely BCC, {int(table['review'].eq(1).sum())} "
             f"flagged for review → {shown(out / 'triage.csv')}"
             + (f", {shown(out / 'report.html')}" if a["report"] else "") + f" ({seconds:.1f} s)")
    return table
