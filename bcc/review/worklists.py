"""Into and out of the review database: a ``bcc.predict`` output folder in, the reviewers' verdicts out
as raters of ``annotations.csv``.

``import_worklist`` reads ``run.json`` (the input folder, the model, thresholds, guarantee, whether maps
were written), ``triage.csv`` and ``maps.npy`` (one (8, h, w) map stack per scored row, in its order) and
re-reads each scored image through the one reader, keeping a ≤ 1024 px JPEG re-encoded from pixels.

``export_annotations`` writes the verdicts in the dataset contract's ``annotations.csv`` form — one row
per (image, reviewer), the seven codes 1/0 — so ``bcc.consensus`` weighs each dermatologist as one more
rater (Dawid–Skene estimates their sensitivity and specificity like anyone else's). With a dataset, a case
is matched to its ``image_id`` by the SHA-256 of the image file's bytes (names differ between an inbox
and a dataset; content does not), and the dataset's own annotations come first, so the file can replace
the dataset's ``annotations.csv``. The BCC yes/no verdict is not a code of the contract (the binary label
follows the clinical rule over the codes, or a biopsy): it goes to ``<out stem>.verdicts.csv`` beside
the file, with whether it agrees with the rule over the reviewer's own codes.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bcc.core.errors import BadInput
from bcc.core.io import write_csv
from bcc.core.patterns import CODES, OUTPUTS, clinical_rule
from bcc.data.contract import inside, load_image_table
from bcc.data.images import UnreadableImage, shrink, view_box
from bcc.deploy.triage import MAPS, RUN
from bcc.explanation.batch import input_name, list_inputs, read_input, shown
from bcc.review.db import Case, Verdict, Worklist, npy_bytes

DISPLAY_SIDE = 1024


def _jpeg(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(shrink(rgb, DISPLAY_SIDE), dtype=np.uint8), "RGB").save(buf, "JPEG",
                                                                                                   quality=90)
    return buf.getvalue()


def read_run(folder: Path) -> tuple[dict, pd.DataFrame, np.ndarray | None]:
    for name in (RUN, "triage.csv"):
        if not (folder / name).is_file():
            raise BadInput(f"{shown(folder / name)}: missing; import the output= folder of a `python -m bcc.predict` "
                           f"run (with report=true)")
    try:
        run = json.loads((folder / RUN).read_text())
    except ValueError as e:
        raise BadInput(f"{shown(folder / RUN)}: not valid JSON ({e}); re-run bcc.predict") from None
    table = pd.read_csv(folder / "triage.csv", keep_default_na=False, na_values=[""])
    table = table[table["status"] == "ok"].reset_index(drop=True)
    maps = None
    if run.get("maps"):
        maps = np.load(folder / MAPS, allow_pickle=False) if (folder / MAPS).is_file() else None
        if maps is None or maps.ndim != 4 or len(maps) != len(table) or maps.shape[1] != len(OUTPUTS):
            raise BadInput(f"{shown(folder / MAPS)}: does not hold one (8, h, w) map stack per scored row of "
                           f"triage.csv ({len(table)}); re-run bcc.predict into this folder")
    return run, table, maps


def import_worklist(sessions: sessionmaker[Session], folder: str | Path, name: str | None = None,
                    max_megapixels: float = 100.0, log=print) -> int:
    """Import a ``bcc.predict`` output folder as worklist `name` (default: the folder's name); returns the
    number of cases. A name already imported is refused (the verdicts recorded on it stay as they are)."""
    folder = Path(folder)
    run, table, maps = read_run(folder)
    name = name or folder.resolve().name
    source = Path(run.get("input_path") or "")
    root, files = list_inputs(source)
    by_name = {input_name(p, root)[0]: p for p in files}
    with sessions() as s:
        if s.scalar(select(Worklist).where(Worklist.name == name)) is not None:
            raise BadInput(f"worklist {name!r} is already in the database; import under another --name")
        wl = Worklist(name=name, imported=dt.datetime.now(dt.UTC).replace(tzinfo=None), model=str(run.get("model", "")),
                      thresholds=run.get("thresholds") or {}, guarantee=run.get("guarantee"),
                      not_trained=list(run.get("not_trained") or []))
        resize = str((run.get("preprocess") or {}).get("resize", "square"))
        s.add(wl)
        for i, row in table.iterrows():
            shown_name = str(row["image"])
            shown_name = shown_name[1:] if shown_name[:2] in ("'=", "'+", "'-", "'@") else shown_name
            path = by_name.get(shown_name)
            if path is None:
                raise BadInput(f"{shown(folder / 'triage.csv')}: {shown_name} is not in {shown(source)} any more; "
                               f"import right after bcc.predict, before the inbox is emptied")
            try:
                rgb, _ = read_input(path, max_megapixels)
                data = path.read_bytes()
            except (UnreadableImage, OSError) as e:
                raise BadInput(f"{shown(path)}: cannot be read again ({e})") from None
            h, w = rgb.shape[:2]
            left, top, right, bottom = view_box(w, h, resize)
            s.add(Case(worklist=wl, rank=int(row["rank"]), image=shown_name, sha256=hashlib.sha256(data).hexdigest(),
                       p_bcc=float(row["p_bcc"]), view=[left / w, top / h, right / w, bottom / h],
                       scores={o: None if pd.isna(row[f"p_{o}"]) else float(row[f"p_{o}"]) for o in OUTPUTS},
                       diagnosis_verdict=str(row["diagnosis_verdict"]), rule_verdict=str(row["rule_verdict"]),
                       review_reason="" if pd.isna(row["review_reason"]) else str(row["review_reason"]),
                       jpeg=_jpeg(rgb), maps=None if maps is None else npy_bytes(maps[i])))
        s.commit()
    log(f"[bcc.review] imported {len(table)} cases from {shown(folder)} as worklist {name!r}"
        + ("" if maps is not None else " (no Grad-CAM maps: that run had explain=false)"))
    return len(table)


def _dataset_ids(dataset: Path) -> dict[str, str]:
    """SHA-256 of each image file's bytes → its image_id."""
    table = load_image_table(dataset, check_files=False)
    base = dataset.resolve()
    out = {}
    for image_id, rel in zip(table["image_id"].astype(str), table["image"].astype(str), strict=True):
        p = inside(dataset, rel, str(dataset / "images.csv"), False, base=base)
        if p.is_file():
            out[hashlib.sha256(p.read_bytes()).hexdigest()] = image_id
    return out


def check_out(out: Path) -> Path:
    """The audit file beside `out`, when neither exists (the export never writes over a file)."""
    audit = out.with_name(f"{out.stem}.verdicts.csv")
    for p in (out, audit):
        if p.exists():
            raise BadInput(f"--out {shown(out)}: {shown(p)} exists; choose a new file name (then replace the "
                           f"dataset's annotations.csv with it yourself)")
    return audit


def export_annotations(sessions: sessionmaker[Session], out: str | Path, dataset: str | Path | None = None,
                       log=print) -> pd.DataFrame:
    """Write the verdicts as ``annotations.csv`` rows to `out` (and ``<out stem>.verdicts.csv`` beside it);
    with `dataset`, after the dataset's own annotations and with its image_ids (module docstring). Neither
    file may exist: the command never writes over a file it did not make."""
    out = Path(out)
    audit_path = check_out(out)
    ids = _dataset_ids(Path(dataset)) if dataset else None
    with sessions() as s:
        verdicts = s.scalars(select(Verdict).join(Case).order_by(Verdict.recorded.desc())).all()
        rows, audit, unmatched, seen = [], [], set(), set()
        for v in verdicts:  # latest first: the same image reviewed twice (two worklists) counts once
            image_id = v.case.image if ids is None else ids.get(v.case.sha256)
            if image_id is None:
                unmatched.add(v.case.image)
                continue
            if (image_id, v.reviewer) in seen:
                continue
            seen.add((image_id, v.reviewer))
            codes = [int(v.patterns.get(c, 0)) for c in CODES]
            rows.append({"image_id": image_id, "rater": v.reviewer, **dict(zip(CODES, codes, strict=True))})
            rule = int(clinical_rule(np.array([codes]))[0])
            audit.append({"image_id": image_id, "rater": v.reviewer, "bcc": int(v.bcc), "rule_over_codes": rule,
                          "agrees": int(rule == int(v.bcc)), "note": v.note, "recorded": v.recorded.isoformat(),
                          "worklist": v.case.worklist.name, "case": v.case.image})
    ann = pd.DataFrame(rows, columns=["image_id", "rater", *CODES]).sort_values(["rater", "image_id"], kind="stable")
    if dataset:
        own = pd.read_csv(Path(dataset) / "annotations.csv", dtype={"image_id": str, "rater": str}, keep_default_na=False)
        clash = set(own["rater"]) & set(ann["rater"])
        if clash:
            raise BadInput(f"{shown(Path(dataset) / 'annotations.csv')}: already has rater(s) {sorted(clash)}; a "
                           f"reviewer's verdicts are exported once — export from a fresh annotations file, or "
                           f"review under another name")
        ann = pd.concat([own, ann.astype({c: str for c in CODES})], ignore_index=True)
    write_csv(ann, out)
    write_csv(pd.DataFrame(audit, columns=["image_id", "rater", "bcc", "rule_over_codes", "agrees", "note", "recorded",
                                           "worklist", "case"]), audit_path)
    log(f"[bcc.review] {len(rows)} verdicts → {shown(out)}"
        + (f" ({len(unmatched)} reviewed cases are not in {shown(Path(dataset or '.'))} and were left out: "
           f"{', '.join(sorted(unmatched)[:5])}{'…' if len(unmatched) > 5 else ''})" if unmatched else ""))
    return ann
