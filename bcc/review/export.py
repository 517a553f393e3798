"""The reviewers' verdicts out of the review database, as raters of ``annotations.csv``.

``export_annotations`` writes each reviewer's current verdicts (their latest version) in the dataset
contract's ``annotations.csv`` form — one row per (image, reviewer), the seven codes 1/0 — so
``bcc.consensus`` weighs each dermatologist as one more rater (Dawid–Skene estimates their sensitivity and
specificity like anyone else's).

The key of an image is its content: the SHA-256 of the file ``bcc.predict`` scored. Without a dataset
that hash is the ``image_id``; with one, a case is matched to the dataset's ``image_id`` by it (names
differ between an inbox and a dataset, and the same name in Monday's and Tuesday's inbox is two
pictures), and the dataset's own annotations come first, so the file can replace the dataset's
``annotations.csv``. A reviewer who saw the same picture in two worklists is one rater of one image:
the later verdict is exported, the earlier listed as superseded.

Beside it, ``<out stem>.verdicts.csv`` is the audit: every current verdict, with the key it used, the
version taken (and how many there are: the earlier versions stay in the database), the BCC yes/no (not
a code of the contract: the binary label follows the clinical rule over the codes, or a biopsy) and
whether it agrees with the rule over the reviewer's own codes, the note, and whether the row was exported
(and if not, why). Its text cells are spreadsheet-guarded (``csv_safe``) and quoted, so a note led by
``=`` or a carriage return is shown as text and reads back as one row.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from bcc.core.errors import BadInput
from bcc.core.io import csv_safe, sha256_file, shown, write_csv
from bcc.core.log import get_logger
from bcc.core.patterns import CODES, clinical_rule
from bcc.data.contract import inside, load_image_table
from bcc.review.db import Case, Reviewer, Verdict, Worklist

log = get_logger(__name__)

AUDIT_COLUMNS = ["image_id", "keyed_by", "rater", "exported", "why_not", "bcc", "rule_over_codes", "agrees", "note",
                 "version", "versions", "recorded", "worklist", "case", "case_id", "sha256"]


def _dataset_ids(dataset: Path) -> dict[str, str]:
    """SHA-256 (hex) of each image file's bytes → its image_id."""
    table = load_image_table(dataset, check_files=False)
    base = dataset.resolve()
    out = {}
    for image_id, rel in zip(table["image_id"].astype(str), table["image"].astype(str), strict=True):
        p = inside(dataset, rel, str(dataset / "images.csv"), False, base=base)
        if p.is_file():
            out[sha256_file(p)] = image_id
    return out


def check_out(out: Path) -> Path:
    """The audit file beside `out`, when neither exists (the export never writes over a file)."""
    audit = out.with_name(f"{out.stem}.verdicts.csv")
    for p in (out, audit):
        if p.exists():
            raise BadInput(f"--out {shown(out)}: {shown(p)} exists; choose a new file name (then replace the "
                           f"dataset's annotations.csv with it yourself)")
    return audit


def _current(s: Session) -> list[tuple[Verdict, int, Case, str, str]]:
    """Every (case, reviewer)'s latest verdict: (verdict, number of versions, case, worklist, rater)."""
    latest = select(Verdict.case_id, Verdict.reviewer_id, func.max(Verdict.version).label("v"),
                    func.count().label("n")).group_by(Verdict.case_id, Verdict.reviewer_id).subquery()
    q = (select(Verdict, latest.c.n, Case, Worklist.name, Reviewer.name)
         .join(latest, (Verdict.case_id == latest.c.case_id) & (Verdict.reviewer_id == latest.c.reviewer_id)
               & (Verdict.version == latest.c.v))
         .join(Case, Case.id == Verdict.case_id).join(Worklist).join(Reviewer, Reviewer.id == Verdict.reviewer_id)
         .order_by(Verdict.recorded.desc(), Verdict.id.desc()))
    return [(v, n, c, wl, rater) for v, n, c, wl, rater in s.execute(q).all()]


def export_annotations(sessions: sessionmaker[Session], out: str | Path, dataset: str | Path | None = None
                       ) -> pd.DataFrame:
    """Write the current verdicts as ``annotations.csv`` rows to `out` and the audit beside it (module
    docstring); with `dataset`, after the dataset's own annotations and with its image_ids. Neither file
    may exist: the command never writes over a file it did not make."""
    out = Path(out)
    audit_path = check_out(out)
    ids = _dataset_ids(Path(dataset)) if dataset else None
    keyed_by = "content sha256" if ids is None else "dataset image_id, matched by content sha256"
    rows: list[dict] = []
    audit: list[dict] = []
    taken: dict[tuple[str, str], str] = {}  # (image_id, rater) → where the exported verdict was recorded
    with sessions() as s:
        for v, n, c, wl, rater in _current(s):  # latest first: of one picture seen twice, the later is taken
            image_id = c.sha256 if ids is None else ids.get(c.sha256)
            codes = [int(v.patterns.get(k, 0)) for k in CODES]
            rule = int(clinical_rule(np.array([codes]))[0])
            why = ""
            if image_id is None:
                why = "the picture is not in the dataset (add it to images.csv to have it count)"
            elif (image_id, rater) in taken:
                why = f"superseded by the later verdict in worklist {taken[(image_id, rater)]}"
            else:
                taken[(image_id, rater)] = f"{wl}, case {c.image}"
                rows.append({"image_id": image_id, "rater": rater, **dict(zip(CODES, codes, strict=True))})
            audit.append({"image_id": image_id or "", "keyed_by": keyed_by, "rater": rater, "exported": int(not why),
                          "why_not": why, "bcc": int(v.bcc), "rule_over_codes": rule, "agrees": int(rule == int(v.bcc)),
                          "note": v.note, "version": v.version, "versions": n, "recorded": v.recorded.isoformat(),
                          "worklist": wl, "case": c.image, "case_id": c.id, "sha256": c.sha256})
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
    write_csv(csv_safe(pd.DataFrame(audit, columns=AUDIT_COLUMNS)), audit_path, quoting=csv.QUOTE_NONNUMERIC)
    left = [a for a in audit if not a["exported"]]
    log.info(f"[bcc.review] {len(rows)} verdicts → {shown(out)} (images keyed by {keyed_by}; audit: "
             f"{shown(audit_path)})"
             + (f"; {len(left)} not exported, each with the reason in the audit" if left else ""))
    return ann
