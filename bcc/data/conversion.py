"""What every adapter from a public dataset's official layout to the dataset contract shares.

An adapter (`bcc.data.isic`, `ham10000`, `derm7pt`, `ph2`) reads its release and returns a :class:`Plan`:
the two contract tables, where each file of the new dataset comes from and where the release lists it.
:func:`write` then does what they all must do alike: refuse an existing ``--out`` (nothing of the user's is
ever replaced), build the dataset in a temporary folder beside it and rename it into place only when complete
and valid (`bcc.core.io.staged_folder`: nothing half-written is left behind, on an error or an interrupt
either), place every file by hard link, copy or symbolic link (`bcc.data.paths.place_file`), with a progress
bar for the thousands of files a release holds. A file the validation refuses is named as the release holds
it (its source file and the table line listing it), never by a path in a dataset that was not written.

Every source file must resolve inside the folders the user named (`bcc.data.paths.SourceFolders`) unless
``allow_outside``. The command lines share their options and exit codes (:func:`conversion_parser`,
:func:`run_conversion`).
"""
# (no `from __future__ import annotations`: the name would shadow :func:`annotations` for type checkers)

import argparse
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from bcc.core.cli import run_command, tool_parser
from bcc.core.io import refuse_existing as _refuse_existing
from bcc.core.io import staged_folder
from bcc.core.log import get_logger
from bcc.core.patterns import CODES
from bcc.data.contract import load_dataset
from bcc.data.csvfile import read_csv
from bcc.data.errors import DatasetError
from bcc.data.images import UnreadableImage
from bcc.data.images import upright_size as _upright_size
from bcc.data.paths import check_how, place_file

log = get_logger(__name__)

__all__ = ["Plan", "annotations", "conversion_parser", "find_image", "find_named", "folder", "image_files",
           "refuse_existing", "run_conversion", "source_table", "upright_size", "validate", "write", "write_into"]

NEVER_REPLACED = "the conversion never overwrites a directory"


@dataclass
class Plan:
    """A dataset to be written: its tables, and where each of its files comes from.

    `files` maps a path inside the new dataset to the source file placed there (linked or copied);
    `made` maps a path to a function writing that file (a format conversion, e.g. a BMP mask to PNG);
    `origin` maps a path to where the release lists its source (``<table>: line N``) and that source file,
    so that a file refused later is named as the user can find it; `tables` are further CSV files kept
    beside the contract's two (e.g. an official split).
    """

    source: str
    images: pd.DataFrame
    annotations: pd.DataFrame
    files: dict[str, Path] = field(default_factory=dict)
    made: dict[str, Callable[[Path], None]] = field(default_factory=dict)
    origin: dict[str, tuple[str, Path]] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """Per-source figures a user checks a conversion by: images, BCC, groups, PN/AT known and positive."""
        rated = self.annotations.groupby("image_id")[["PN", "AT"]]
        known = rated.agg(lambda v: v.ne("").any())
        positive = rated.agg(lambda v: v.eq("1").any())
        diagnosis = self.images["diagnosis"] if "diagnosis" in self.images else pd.Series(dtype=str)
        groups = self.images["group"] if "group" in self.images else self.images["image_id"]
        return {"images": len(self.images), "bcc": int(diagnosis.eq("1").sum()),
                "pn_known": int(known["PN"].sum()), "pn_positive": int(positive["PN"].sum()),
                "at_known": int(known["AT"].sum()), "at_positive": int(positive["AT"].sum()),
                "groups": int(groups.nunique())}

    def summary(self, out: Path) -> str:
        c = self.counts()
        return (f"{self.source}: {c['images']} images → {out} (BCC {c['bcc']}, non-BCC {c['images'] - c['bcc']}; "
                f"PN known {c['pn_known']}, positive {c['pn_positive']}; AT known {c['at_known']}, positive "
                f"{c['at_positive']}; {c['groups']} groups)")


def annotations(image_ids: Iterable[str], rater: str, known: dict[str, Sequence[str]] | None = None) -> pd.DataFrame:
    """annotations.csv with one row per image from `rater`: the codes in `known` ("1"/"0"/""), every other
    code blank — unknown, never 0: a public set that does not label a pattern says nothing about it."""
    ids = list(image_ids)
    known = known or {}
    return pd.DataFrame({"image_id": ids, "rater": rater,
                         **{c: list(known[c]) if c in known else [""] * len(ids) for c in CODES}})


def refuse_existing(out: Path) -> None:
    _refuse_existing(Path(out), "--out", NEVER_REPLACED)


def write_into(plan: Plan, root: Path, how: str = "hard") -> None:
    """Place and write `plan`'s files into the (new, empty) folder `root`."""
    for rel, src in tqdm(plan.files.items(), desc=f"{plan.source}: placing files", unit="file", disable=None):
        place_file(src, root / rel, how)
    for rel, make in tqdm(plan.made.items(), desc=f"{plan.source}: converting files", unit="file", disable=None):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        try:
            make(root / rel)
        except (OSError, SyntaxError, ValueError) as e:  # what Pillow raises on a file it cannot read
            where, src = plan.origin.get(rel, (plan.source, Path(rel)))
            raise DatasetError(f"{where}: cannot convert {src} ({e}); re-extract it from the release") from None
    plan.images.to_csv(root / "images.csv", index=False, lineterminator="\n")
    plan.annotations.to_csv(root / "annotations.csv", index=False, lineterminator="\n")
    for name, table in plan.tables.items():
        table.to_csv(root / name, index=False, lineterminator="\n")


def relocated(error: DatasetError, tmp: Path, out: Path,
              origin: Mapping[str, tuple[str, Path]] | None = None) -> DatasetError:
    """`error`, found in the temporary folder `tmp`: a file of `origin` (a path under `tmp` → where the release
    lists it and its source file: `Plan.origin`) named by its source and the release's line listing it; any
    other path by its place under `out`, where it would have been."""
    message = str(error)
    for base in {str(tmp), str(tmp.resolve())}:
        for rel, (where, src) in (origin or {}).items():
            if f"{base}/{rel}" in message:
                message = re.sub(rf"^{re.escape(base)}/[^:]*: line \d+: ", "", message)
                message = f"{where}: " + message.replace(f"{base}/{rel}", str(src))
                break
    message = message.replace(str(tmp.resolve()), str(out)).replace(str(tmp), str(out))
    return DatasetError(f"{message} (found checking the converted dataset; nothing was written)")


def validate(root: Path, out: Path, how: str, plan: Plan | None = None) -> None:
    """The contract's own validation of the dataset built in `root` (every image and mask decoded once,
    remembered in ``.cache/decoded.json``)."""
    try:
        load_dataset(root, allow_outside=how == "symlink")
    except DatasetError as e:
        raise relocated(e, root, out, plan.origin if plan is not None else None) from None


def write(plan: Plan, out: Path, how: str = "hard", check: bool = True) -> Path:
    """Write `plan` as the dataset `out`, atomically; with `check` it is validated before it is put in place."""
    check_how(how)
    out = Path(out)
    with staged_folder(out, None, "--out", NEVER_REPLACED) as tmp:
        write_into(plan, tmp, how)
        if check:
            validate(tmp, out, how, plan)
    return out


def folder(path: Path, fix: str) -> Path:
    """`path`, which must be a folder (`fix` says what to point at)."""
    path = Path(path)
    if not path.is_dir():
        raise DatasetError(f"{path}: not a directory; {fix}")
    return path


def source_table(path: Path, required: tuple[str, ...], fix: str, optional: tuple[str, ...] = ()) -> pd.DataFrame:
    """A release's CSV table (its other columns kept), read by the contract's reader: stripped strings
    indexed by line, with its checks of encoding, delimiter and field counts; `fix` says where it comes from."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: {'not a file' if path.exists() else 'file not found'}; {fix}")
    return read_csv(path, required, optional, allow_unknown=True)


def image_files(folders: Iterable[Path], suffixes: Sequence[str]) -> dict[str, list[Path]]:
    """file name without suffix → the image files so named in `folders` (one listing each; the suffix
    matched in any case, ``.JPG`` too; hidden files skipped)."""
    files: dict[str, list[Path]] = {}
    for f in folders:
        for p in sorted(Path(f).iterdir()):
            if p.suffix.lower() in suffixes and not p.name.startswith(".") and p.is_file():
                files.setdefault(p.stem, []).append(p)
    return files


def find_image(files: dict[str, list[Path]], name: str, where: str, searched: str, suffixes: Sequence[str],
               fix: str) -> Path:
    """The one image file called `name`; none or several is an error at `where` (a file and line)."""
    found = files.get(name, [])
    if not found:
        raise DatasetError(f"{where}: no image file for {name!r} in {searched} (tried {'/'.join(suffixes)}, any "
                           f"case); {fix}")
    if len(found) > 1:
        one_folder = len({p.parent for p in found}) == 1
        raise DatasetError(f"{where}: {name!r} has {len(found)} image files in {searched} "
                           f"({', '.join(p.name if one_folder else str(p) for p in found)}); keep one")
    return found[0]


def find_named(root: Path, names: Iterable[str], depth: int, dirs: bool = False) -> list[Path]:
    """Files (or folders) under `root`, at most `depth` levels down (1: in `root` itself), named one of
    `names` in any case; hidden folders are not searched."""
    wanted = {n.lower() for n in names}
    root = Path(root)
    found = []
    for here, subdirs, filenames in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        found += [Path(here) / n for n in (subdirs if dirs else filenames) if n.lower() in wanted]
        if len(Path(here).relative_to(root).parts) + 1 >= depth:
            subdirs.clear()  # what lies deeper than `depth` levels is not searched
    return sorted(found)


def upright_size(path: Path, where: str) -> tuple[int, int]:
    """(width, height) as bcc reads the picture (``data.images.upright_size``: EXIF orientation applied, from the
    header alone, a decompression bomb refused). A file that cannot be sized is refused at `where` (the
    release's table and line), naming the source file."""
    try:
        return _upright_size(path)
    except UnreadableImage as e:
        raise DatasetError(f"{where}: {e}; drop its row or replace the file (nothing was written)") from None
    except (OSError, SyntaxError, ValueError) as e:  # what Pillow raises on a file it cannot read
        raise DatasetError(f"{where}: cannot read image {path} (corrupt or truncated: {e}); re-extract it from the "
                           f"release, or drop its row (nothing was written)") from None


def conversion_parser(command: str, description: str) -> argparse.ArgumentParser:
    """The options every conversion shares: ``--out``, ``--copy``/``--symlink``, ``--allow-outside``, ``--debug``."""
    parser = tool_parser(command, description)
    parser.add_argument("--out", type=Path, required=True, help="the new dataset folder (must not exist)")
    how = parser.add_mutually_exclusive_group()
    how.add_argument("--copy", dest="how", action="store_const", const="copy", default="hard",
                     help="copy the files (default: hard links; use this across filesystems)")
    how.add_argument("--symlink", dest="how", action="store_const", const="symlink",
                     help="symlink the files (then pass --allow-outside to the tools that read the dataset)")
    parser.add_argument("--allow-outside", action="store_true",
                        help="read source files that resolve outside the folders given (symbolic links, '..')")
    return parser


def run_conversion(command: str, args: argparse.Namespace, make_plan: Callable[[], Plan]) -> int:
    """Plan, write (validated), then print the plan's notes and a one-line summary; exit codes as every tool's."""

    def body() -> None:
        check_how(args.how)
        refuse_existing(args.out)  # before reading a whole release
        plan = make_plan()
        write(plan, args.out, args.how)
        for note in plan.notes:
            log.info(note)
        if args.how == "symlink":
            log.info(f"the files are symbolic links into the source folders: pass --allow-outside to bcc.consensus "
                     f"and bcc.folds for {args.out}")
        log.info(plan.summary(args.out))

    return run_command(f"bcc.{command}", body, args.debug)
