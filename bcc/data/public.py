"""Find the public dermoscopy sets under one folder, convert each and merge them: one command.

    python -m bcc.data.public DATA --out data/real [--copy | --symlink] [--allow-outside]

Searches DATA (up to 4 folders down) for HAM10000 (``HAM10000_metadata.csv``, else the ISIC 2018 Task 3
training ground truth: the same images), Derm7pt (``meta/meta.csv`` with a ``derm`` column) and PH2
(``PH2_dataset.xlsx`` / ``.txt``), and writes

    <out>/ham10000/  <out>/derm7pt/  <out>/ph2/   each set as a dataset of its own (e.g. to score a model on one)
    <out>/merged/                                 all of them (`bcc.data.merge`: ids ``ham10000_…``, ``derm7pt_…``, ``ph2_…``)

at once: built in a temporary folder beside `out`, renamed into place when every part is written and
valid. A set not found is said and skipped; none found is an error. The files are hard-linked (``--copy``,
``--symlink`` as every conversion); the merged set links to the per-set files, so the images are on disk once.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pandas as pd

from bcc.core.cli import run_command
from bcc.core.io import staged_folder
from bcc.core.log import get_logger
from bcc.data import conversion, derm7pt, ham10000, ph2
from bcc.data.errors import DatasetError
from bcc.data.merge import merge
from bcc.data.paths import check_how

log = get_logger(__name__)

SEARCH_DEPTH = 4
LOOKED_FOR = {"ham10000": "HAM10000_metadata.csv or ISIC2018_Task3_Training_GroundTruth.csv",
              "derm7pt": "meta/meta.csv with a derm column", "ph2": "PH2_dataset.xlsx or PH2_dataset.txt"}


@dataclass
class Found:
    """A set found under DATA: where, and how to read it."""

    name: str
    where: str
    plan: Callable[[], conversion.Plan]


def _one(name: str, found: list, data: Path):
    if len(found) > 1:
        raise DatasetError(f"{data}: {len(found)} copies of {name} ({'; '.join(map(str, found))}); keep one under "
                           f"{data}, or convert them one by one (python -m bcc.data.{name})")
    return found[0] if found else None


def find_sets(data: Path, allow_outside: bool = False) -> dict[str, Found]:
    """The supported sets under `data`, by name (ham10000, derm7pt, ph2); one copy of each at most."""
    data = conversion.folder(data, "give the folder holding the downloaded sets")
    sets: dict[str, Found] = {}
    layouts = ham10000.find_layouts(data, SEARCH_DEPTH)
    for kind in ("ham10000", "isic2018_train"):  # HAM10000's own metadata first: the same images
        official = ham10000.OFFICIAL[kind].table.lower()
        layout = _one("ham10000", [x for x in layouts if x.table.name.lower() == official], data)
        if layout is not None:
            sets["ham10000"] = Found("ham10000", layout.describe(),
                                     partial(ham10000.plan, layout, "auto", allow_outside))
            break
    release = _one("derm7pt", derm7pt.find_releases(data, SEARCH_DEPTH), data)
    if release is not None:
        sets["derm7pt"] = Found("derm7pt", str(release), lambda: derm7pt.plan(release, allow_outside))
    table = _one("ph2", ph2.find_tables(data, SEARCH_DEPTH), data)
    if table is not None:
        sets["ph2"] = Found("ph2", str(table), lambda: ph2.plan(table, allow_outside))
    return sets


def prepare_public(data: Path, out: Path, how: str = "hard", allow_outside: bool = False) -> pd.DataFrame:
    """Convert every set found under `data` into ``<out>/<name>/`` and merge them into ``<out>/merged/``
    (atomically); returns the per-source counts (images, BCC, PN/AT known and positive, groups)."""
    check_how(how)
    out, data = Path(out), Path(data)
    conversion.refuse_existing(out)
    sets = find_sets(data, allow_outside)
    for name, marker in LOOKED_FOR.items():
        log.info(f"found {name}: {sets[name].where}" if name in sets else
                 f"not found: {name} (looked for {marker} up to {SEARCH_DEPTH} folders under {data})")
    if not sets:
        raise DatasetError(f"{data}: none of the supported sets found ({'; '.join(LOOKED_FOR.values())}); point at the "
                           f"folder holding them (docs/dataset.md, 'Public datasets', says where to download each)")
    counts, origin = {}, {}
    with staged_folder(out, None, "--out", conversion.NEVER_REPLACED) as tmp:
        for name, found in sets.items():
            plan = found.plan()
            (tmp / name).mkdir()
            conversion.write_into(plan, tmp / name, how)
            counts[name] = plan.counts()
            origin.update({f"{name}/{rel}": o for rel, o in plan.origin.items()})
            for note in plan.notes:
                log.info(f"{name}: {note}")
        try:  # merge validates every set (each file decoded once) before it writes the merged one
            merge([tmp / name for name in sets], tmp / "merged", list(sets),
                  "symlink" if how == "symlink" else "hard", allow_outside=how == "symlink")
        except DatasetError as e:
            raise conversion.relocated(e, tmp, out, origin) from None
        if how == "symlink":
            _relative_links(tmp / "merged", tmp)
    table = pd.DataFrame(counts).T.rename_axis("source")
    table.loc["merged"] = table.sum()
    log.info(table.to_string())
    log.info(f"{out}: {', '.join(f'{out / name}/' for name in sets)} and the merged set {out / 'merged'}/ "
             f"({int(table.loc['merged', 'images'])} images)")
    if how == "symlink":
        log.info(f"the files are symbolic links into {data}: pass --allow-outside to bcc.consensus and bcc.folds")
    return table


def _relative_links(merged: Path, tmp: Path) -> None:
    """Symbolic links of the merged set to files written into the per-set folders (PH2's converted masks)
    point into `tmp`, which is about to be renamed: made relative, they follow it."""
    base = os.path.realpath(tmp)
    for link in merged.rglob("*"):
        target = os.readlink(link) if link.is_symlink() else ""
        if os.path.isabs(target) and Path(target).is_relative_to(base):
            link.unlink()
            link.symlink_to(os.path.relpath(target, os.path.realpath(link.parent)))


def main(argv: list[str] | None = None) -> int:
    parser = conversion.conversion_parser("data.public", __doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="the folder holding the downloaded sets (searched 4 folders down)")
    args = parser.parse_args(argv)

    def body() -> None:
        prepare_public(args.data, args.out, args.how, args.allow_outside)

    return run_command("bcc.data.public", body, args.debug)


if __name__ == "__main__":
    sys.exit(main())
