"""A ``bcc.predict`` output folder into the review database.

``read_run`` reads and checks what the import needs — ``run.json`` (the input folder, the model, its
thresholds and guarantee, whether maps were written, each scored row's exact name and content hash),
``triage.csv`` and ``maps.npy`` (one (8, h, w) map stack per scored row, in its order) — and refuses
(exit 2, naming the file and the fix) anything malformed, before the database is touched.
``import_worklist`` then re-reads each scored image through the one reader, keeping a ≤ 1024 px JPEG
re-encoded from pixels; a picture whose content is no longer what ``bcc.predict`` scored (its SHA-256
differs: replaced or edited since) is refused, as is one that is gone. Names come from ``run.json``,
never from ``triage.csv``'s display-guarded cells, so ``=x.png`` and ``'=x.png`` stay two names.
"""
from __future__ import annotations

import io
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bcc.core.errors import BadInput
from bcc.core.io import csv_safe, sha256_file, shown
from bcc.core.log import get_logger
from bcc.core.patterns import CODES, OUTPUTS
from bcc.data.images import UnreadableImage, shrink, view_box
from bcc.deploy.report_html import Guarantee
from bcc.deploy.thresholds import Thresholds
from bcc.deploy.triage import MAPS, RUN
from bcc.explanation.batch import input_name, list_inputs, read_input
from bcc.review.db import Case, Worklist, now, npy_bytes

log = get_logger(__name__)

DISPLAY_SIDE = 1024
COLUMNS = ["rank", "image", "p_bcc", "diagnosis_verdict", "rule_verdict", "review_reason", "status",
           *[f"p_{c}" for c in CODES]]
RERUN = "re-run bcc.predict into a new output folder and import that"


@dataclass
class Run:
    """A checked bcc.predict output: its run.json, the scored rows of triage.csv, their maps (or None)."""

    info: dict[str, Any]
    table: pd.DataFrame
    maps: np.ndarray | None
    thresholds: Thresholds
    guarantee: Guarantee | None


def _jpeg(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(shrink(rgb, DISPLAY_SIDE), dtype=np.uint8), "RGB").save(buf, "JPEG",
                                                                                                   quality=90)
    return buf.getvalue()


def _run_json(path: Path) -> dict[str, Any]:
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise BadInput(f"{shown(path)}: not valid JSON ({e}); {RERUN}") from None
    if not isinstance(info, dict):
        raise BadInput(f"{shown(path)}: holds a JSON {type(info).__name__}, not the object bcc.predict writes; {RERUN}")
    cases = info.get("cases")
    if not isinstance(cases, list) or not all(
            isinstance(c, Mapping) and isinstance(c.get("image"), str) and isinstance(c.get("sha256"), str)
            and c["sha256"].startswith("sha256:") for c in cases):
        raise BadInput(f"{shown(path)}: no list of the scored pictures' names and content hashes (\"cases\"; "
                       f"written by bcc.predict since the review checks that a picture is the one scored); {RERUN}")
    if not isinstance(info.get("input_path"), str) or not info["input_path"]:
        raise BadInput(f"{shown(path)}: no input_path (the folder bcc.predict read); {RERUN}")
    untrained = info.get("not_trained") or []
    if not isinstance(untrained, list) or set(map(str, untrained)) - set(OUTPUTS):
        raise BadInput(f"{shown(path)}: not_trained = {untrained!r} is not a list of outputs {list(OUTPUTS)}; {RERUN}")
    return info


def _triage_csv(path: Path) -> pd.DataFrame:
    try:
        table = pd.read_csv(path, keep_default_na=False, na_values=[""], dtype={"image": str})
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as e:
        raise BadInput(f"{shown(path)}: not a readable CSV ({e}); {RERUN}") from None
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise BadInput(f"{shown(path)}: missing column(s) {', '.join(missing)} (not a bcc.predict worklist, or "
                       f"edited); {RERUN}")
    table = table[table["status"] == "ok"].reset_index(drop=True)
    numbers = ["rank", "p_bcc", *[f"p_{c}" for c in CODES]]
    bad = [c for c in numbers if not pd.api.types.is_numeric_dtype(table[c])] + \
          (["rank"] if table["rank"].isna().any() or (table["p_bcc"].isna()).any() else [])
    if bad:
        raise BadInput(f"{shown(path)}: column {bad[0]} holds text or blanks where numbers belong; {RERUN}")
    reasons = []
    for i, cell in enumerate(table["review_reason"]):
        try:
            value = [] if pd.isna(cell) else json.loads(str(cell))
        except ValueError:
            value = None
        if not isinstance(value, list) or not all(isinstance(r, str) for r in value):
            raise BadInput(f"{shown(path)}: review_reason of scored row {i + 1} is not a JSON list of reasons; "
                           f"{RERUN}")
        reasons.append(value)
    return table.assign(review_reason=reasons)


def _maps(path: Path, n: int) -> np.ndarray:
    want = f"one (8, h, w) map stack per scored row of triage.csv ({n})"
    if not path.is_file():
        raise BadInput(f"{shown(path)}: missing, though run.json says the run wrote maps; {RERUN}")
    try:
        maps = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:  # pickled objects, a truncated or foreign file
        raise BadInput(f"{shown(path)}: not a plain .npy array ({e}); it should hold {want}; {RERUN}") from None
    if not isinstance(maps, np.ndarray) or maps.ndim != 4 or len(maps) != n or maps.shape[1] != len(OUTPUTS) \
            or not np.issubdtype(maps.dtype, np.floating):
        raise BadInput(f"{shown(path)}: does not hold {want}; {RERUN}")
    return maps


def read_run(folder: Path) -> Run:
    """The checked contents of a bcc.predict output folder (module docstring); BadInput naming the file."""
    for name in (RUN, "triage.csv"):
        if not (folder / name).is_file():
            raise BadInput(f"{shown(folder / name)}: missing; import the output= folder of a `python -m bcc.predict` "
                           f"run (with report=true)")
    info = _run_json(folder / RUN)
    table = _triage_csv(folder / "triage.csv")
    if len(info["cases"]) != len(table) or any(
            csv_safe(pd.DataFrame({"n": [c["image"]]}))["n"][0] != shown_name
            for c, shown_name in zip(info["cases"], table["image"].astype(str), strict=False)):
        raise BadInput(f"{shown(folder / RUN)}: its cases do not match the scored rows of triage.csv (one of them "
                       f"edited, or from another run); {RERUN}")
    th = Thresholds.from_dict(info.get("thresholds"), f"{shown(folder / RUN)}: thresholds")
    guarantee = Guarantee.read(info.get("guarantee"), shown(folder / RUN))
    maps = _maps(folder / MAPS, len(table)) if info.get("maps") else None
    return Run(info, table, maps, th, guarantee)


@dataclass
class Loaded:
    """A checked bcc.predict output with each case ready to be written (pictures re-read, hashes checked)."""

    folder: Path
    run: Run
    cases: list[dict[str, Any]]


def load_worklist(folder: str | Path, max_megapixels: float = 100.0) -> Loaded:
    """Read and check everything an import writes, before any database is opened: the output folder
    (:func:`read_run`), and each scored picture, which must still be there with the content bcc.predict
    scored."""
    folder = Path(folder)
    run = read_run(folder)
    source = Path(run.info["input_path"])
    if not source.exists():
        raise BadInput(f"{shown(folder / RUN)}: the input {shown(source)} is gone; import right after bcc.predict, "
                       f"before the inbox is emptied")
    root, files = list_inputs(source)
    by_name: dict[str, list[Path]] = {}
    for p in files:
        by_name.setdefault(input_name(p, root)[0], []).append(p)
    resize = str((run.info.get("preprocess") or {}).get("resize", "square"))
    cases = []
    for i, (row, scored) in enumerate(zip(run.table.to_dict("records"), run.info["cases"], strict=True)):
        path, digest = _the_scored_file(by_name.get(scored["image"], []), scored, source)
        try:
            rgb, _ = read_input(path, max_megapixels)
        except (UnreadableImage, OSError) as e:
            raise BadInput(f"{shown(path)}: cannot be read again ({e})") from None
        h, w = rgb.shape[:2]
        left, top, right, bottom = view_box(w, h, resize)
        cases.append({"rank": int(row["rank"]), "image": scored["image"], "sha256": digest,
                      "p_bcc": float(row["p_bcc"]), "view": [left / w, top / h, right / w, bottom / h],
                      "scores": {o: None if pd.isna(row[f"p_{o}"]) else float(row[f"p_{o}"]) for o in OUTPUTS},
                      "diagnosis_verdict": str(row["diagnosis_verdict"]), "rule_verdict": str(row["rule_verdict"]),
                      "review_reasons": row["review_reason"], "jpeg": _jpeg(rgb),
                      "maps": None if run.maps is None else npy_bytes(run.maps[i])})
    return Loaded(folder, run, cases)


def import_worklist(sessions: sessionmaker[Session], folder: str | Path | Loaded, name: str | None = None,
                    max_megapixels: float = 100.0) -> int:
    """Import a ``bcc.predict`` output folder (or what :func:`load_worklist` read of it) as worklist `name`
    (default: the folder's name); returns the number of cases. A name already imported is refused (the
    verdicts recorded on it stay as they are); nothing is written unless every case imports."""
    loaded = folder if isinstance(folder, Loaded) else load_worklist(folder, max_megapixels)
    run = loaded.run
    name = name or loaded.folder.resolve().name
    with sessions() as s:
        if s.scalar(select(Worklist).where(Worklist.name == name)) is not None:
            raise BadInput(f"worklist {name!r} is already in the database; import under another --name")
        wl = Worklist(name=name, imported=now(), model=str(run.info.get("model", "")),
                      thresholds=run.thresholds.as_dict(), guarantee=run.info.get("guarantee"),
                      not_trained=list(run.info.get("not_trained") or []))
        s.add(wl)
        s.add_all(Case(worklist=wl, **c) for c in loaded.cases)
        s.commit()
    log.info(f"[bcc.review] imported {len(loaded.cases)} cases from {shown(loaded.folder)} as worklist {name!r}"
             + ("" if run.maps is not None else " (no Grad-CAM maps: that run had explain=false)"))
    return len(loaded.cases)


def _the_scored_file(candidates: list[Path], scored: Mapping[str, str], source: Path) -> tuple[Path, str]:
    """The file bcc.predict scored as `scored` ("image", "sha256"): among those shown under its name, the one
    whose content is unchanged, with its SHA-256 (hex, as the database keeps it); BadInput when it is gone or
    changed."""
    if not candidates:
        raise BadInput(f"{scored['image']} is not in {shown(source)} any more; import right after bcc.predict, "
                       f"before the inbox is emptied")
    digests = {p: sha256_file(p) for p in candidates}
    recorded = scored["sha256"].removeprefix("sha256:")  # run.json records "sha256:<hex>"
    for p, d in digests.items():
        if d == recorded:
            return p, d
    raise BadInput(f"{shown(candidates[0])}: changed since bcc.predict scored it (its content hash is "
                   f"sha256:{digests[candidates[0]][:12]}…, the run scored {scored['sha256'][:19]}…): its scores "
                   f"and maps are not this picture's; re-run bcc.predict on the inbox, then import")
