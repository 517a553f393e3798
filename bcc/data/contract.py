"""Load and validate a dataset directory (the dataset contract, `docs/dataset.md`).

Every malformed input stops with a `DatasetError` that names the file, the line (as an editor counts it:
physical lines, the header is line 1, a quoted value spanning lines counts each of them) and the fix,
before anything derived is written. Every image and mask is decoded in full once — what training would
read — and the outcome is remembered in ``.cache/decoded.json``, so a dataset is not decoded again until a
file changes. Every path must resolve inside the dataset directory unless the caller passes
``allow_outside=True``: a dataset cannot vouch for files outside itself.
"""
from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import re
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import PIL
from PIL import Image, UnidentifiedImageError

from bcc.core.errors import BadInput
from bcc.core.io import write_text
from bcc.core.patterns import CODES
from bcc.data.images import UnreadableImage, read_mask, read_rgb

IMAGE_COLUMNS = ("image_id", "image", "source")
IMAGE_OPTIONAL = ("group", "diagnosis", "aspect")
#: `aspect`: the width / height the picture had before it was resized without keeping its proportions
#: (HAM10000's 600 x 450 photographs distributed at 224 x 224: 1.3333); blank = the file's own.
ASPECT_RANGE = (0.2, 5.0)
ANNOTATION_COLUMNS = ("image_id", "rater", *CODES)
LESION = "lesion"  # masks/<image_id>_lesion.png: the whole lesion (optional)
MASK_SUFFIX = ".png"  # masks are lossless; the suffix is matched in any case (.PNG too)
LINK_MODES = ("hard", "copy", "symlink")  # how the conversions and bcc.data.merge place files in a dataset
OUTSIDE_FIX = ("move or copy the file into the dataset (a hard link does too), or, if reading outside it is "
               "intended, pass --allow-outside (allow_outside=True)")
_BREAK = re.compile(rb"\r\n|\r|\n")  # the line breaks an editor counts
DELIMITERS = ";\t|"  # what a CSV written in another convention is separated by


#: an image_id becomes part of file names (masks/<id>.png, twins/<id>.png, merged ids): one path component,
#: no separator, no '..', nothing a terminal or a report would show otherwise than stored
_ID_UNFIT = re.compile(r"[/\\\x00-\x1f\x7f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
ID_MAX_BYTES = 150


def unfit_id(image_id: str) -> str | None:
    """Why `image_id` cannot name files (None when it can): checked once, at the contract, for every id."""
    if _ID_UNFIT.search(image_id):
        return "holds a path separator, a control or a bidirectional character"
    if image_id.startswith("."):
        return "starts with '.' (a hidden file, or '..', a parent folder)"
    if len(image_id.encode()) > ID_MAX_BYTES:
        return f"is longer than {ID_MAX_BYTES} bytes"
    return None


class DatasetError(BadInput):
    """A dataset file breaks the contract; the message says where and how to fix it."""


class DatasetWarning(UserWarning):
    """Something about a dataset that is allowed but worth knowing (the same picture under two ids)."""


def _lines(mask: pd.Series, limit: int = 5) -> str:
    """The CSV lines of the rows where `mask` holds (a contract table is indexed by line)."""
    lines = mask.index[mask.to_numpy()]
    shown = ", ".join(str(n) for n in lines[:limit])
    return shown + (f" (+{len(lines) - limit} more)" if len(lines) > limit else "")


def _decode_text(path: Path, raw: bytes) -> str:
    """UTF-8 text; otherwise an error naming the line and column of the first byte that is not UTF-8."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        breaks = list(_BREAK.finditer(raw, 0, e.start))
        begin = breaks[-1].end() if breaks else 0
        end = m.start() if (m := _BREAK.search(raw, e.start)) else len(raw)
        column = len(raw[begin:e.start].decode("utf-8-sig")) + 1  # everything before the bad byte decoded
        if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
            hint = "the file is UTF-16 (Excel's 'Unicode text')"
        else:
            hint = f"read as Windows-1252 the line says {raw[begin:end].decode('cp1252', 'replace')[:80]!r}"
        raise DatasetError(f"{path}: line {len(breaks) + 1}, column {column} (byte {e.start}): not UTF-8 "
                           f"(byte 0x{raw[e.start]:02x}: {e.reason}); {hint}; re-save the file as UTF-8 CSV "
                           f"(e.g. `iconv -f cp1252 -t utf-8`)") from None


def _records(path: Path, text: str) -> Iterator[tuple[int, list[str]]]:
    """(line the record starts on, its fields) for every non-blank record, counting physical lines."""
    reader = csv.reader(io.StringIO(text, newline=""), skipinitialspace=True, strict=True)
    start = 1
    try:
        for fields in reader:
            if len(fields) > 1 or (fields and fields[0].strip()):
                yield start, fields
            start = reader.line_num + 1
    except csv.Error as e:
        raise DatasetError(f"{path}: line {start}: malformed CSV ({e}); a value holding a comma, quote or line "
                           f"break must be in double quotes, with a quote inside it written twice (\"\")") from None


def read_csv(path: Path, required: tuple[str, ...], optional: tuple[str, ...] = (),
             allow_unknown: bool = False) -> pd.DataFrame:
    """A contract CSV as stripped strings, indexed by the line each row starts on (named ``line``).

    Checks the encoding, delimiter, emptiness, the column set and that every row has the header's number
    of fields. `allow_unknown` keeps columns outside `required` + `optional` (a public dataset's own
    tables carry more than an adapter reads).
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: file not found; every dataset needs it (see docs/dataset.md)")
    text = _decode_text(path, path.read_bytes())
    records = _records(path, text)
    first = next(records, None)
    if first is None:
        raise DatasetError(f"{path}: file is empty; expected a header line {','.join(required)}")
    header_line, header = first[0], [c.strip() for c in first[1]]
    where = f"{path}: line {header_line}"
    if len(header) == 1 and len(required) > 1:
        try:
            hint = f"it looks {csv.Sniffer().sniff(header[0], delimiters=DELIMITERS).delimiter!r}-separated"
        except csv.Error:
            hint = "no comma found in the header"
        raise DatasetError(f"{where}: {hint}; the contract is comma-separated with header {','.join(required)}")
    repeated = sorted({c for c in header if header.count(c) > 1})
    if repeated:
        raise DatasetError(f"{where}: column(s) {repeated} appear more than once; keep one of each")
    missing = [c for c in required if c not in header]
    if missing:
        raise DatasetError(f"{where}: missing column(s) {missing}; the header must contain {','.join(required)}")
    unknown = [c for c in header if c not in required + optional]
    if unknown and not allow_unknown:
        raise DatasetError(f"{where}: unknown column(s) {unknown}; allowed: {list(required + optional)} "
                           f"(pattern codes are {list(CODES)}); rename or drop them")
    lines, rows = [], []
    for line, fields in records:
        if len(fields) != len(header):
            fix = ("a value holding a comma must be in double quotes; otherwise remove the extra field(s)"
                   if len(fields) > len(header) else
                   "add the missing field(s): a blank value still needs its comma")
            raise DatasetError(f"{path}: line {line}: {len(fields)} fields, but the header (line {header_line}) has "
                               f"{len(header)} ({','.join(header)}); {fix}")
        lines.append(line)
        rows.append([v.strip() for v in fields])
    if not rows:
        raise DatasetError(f"{path}: header only, no data rows")
    return pd.DataFrame(rows, columns=header, index=pd.Index(lines, name="line"), dtype=str)


def check_unique(df: pd.DataFrame, keys: list[str], path: Path) -> None:
    """Refuse rows repeating `keys`, naming their lines."""
    dup = df.duplicated(keys, keep=False)
    if dup.any():
        first = df.loc[dup, keys].iloc[0].tolist()
        raise DatasetError(f"{path}: duplicate {'+'.join(keys)} {first} on lines {_lines(dup)}; keep one row each")


def _check_binary(df: pd.DataFrame, cols: tuple[str, ...], path: Path) -> None:
    for col in cols:
        bad = ~df[col].isin(["0", "1", ""])
        if bad.any():
            value = df.loc[bad, col].iloc[0]
            raise DatasetError(f"{path}: column {col}, line {_lines(bad)}: value {value!r} is not 1, 0 or "
                               f"blank (blank = not rated)")


def _check_aspect(df: pd.DataFrame, path: Path) -> None:
    values = pd.to_numeric(df["aspect"].replace("", "nan"), errors="coerce")
    low, high = ASPECT_RANGE
    bad = df["aspect"].ne("") & ~values.between(low, high)
    if bad.any():
        raise DatasetError(f"{path}: column aspect, line {_lines(bad)}: value {df.loc[bad, 'aspect'].iloc[0]!r} is not "
                           f"a width/height ratio in [{low:g}, {high:g}]; give the proportions the picture had before "
                           f"it was resized (e.g. 1.3333 for 4:3), or leave it blank (the file's own)")


def inside(root: Path, rel: str, where: str, allow_outside: bool = False, what: str = "image",
           base: Path | None = None) -> Path:
    """``root / rel``, refused unless it resolves inside `root` (or `allow_outside`).

    An absolute path, a ``..`` that climbs out and a symbolic link leading out (the file's, or a folder's
    on its way) are refused: reading them would read files the dataset does not hold. `base` is
    ``root.resolve()``, when the caller checks many paths.
    """
    if not rel:
        raise DatasetError(f"{where}: blank {what} path; give the file's path relative to {root}")
    if "\0" in rel:
        raise DatasetError(f"{where}: {what} path {rel!r} holds a NUL character; fix the path")
    path = root / rel
    if allow_outside:
        return path
    if Path(rel).is_absolute():
        raise DatasetError(f"{where}: {what} path {rel!r} is absolute, but paths are relative to the dataset "
                           f"directory {root}; {OUTSIDE_FIX}")
    base = base or root.resolve()
    target = os.path.realpath(path)  # a link loop stays unresolved, and is then a missing file
    if not _within(target, base):
        why = ("climbs out of the dataset with '..'" if not _within(os.path.normpath(base / rel), base)
               else "leads through a symbolic link")
        raise DatasetError(f"{where}: {what} path {rel!r} {why} to {target}, outside the dataset directory "
                           f"{base}; {OUTSIDE_FIX}")
    return path


def _within(path: str, base: Path) -> bool:
    """Whether the absolute, normalised `path` is `base` or lies under it (strings: thousands per dataset)."""
    return path == str(base) or path.startswith(os.path.join(base, ""))


class DecodeStamp:
    """Which files decoded in full, and at what size, keyed by each file's identity and change stamp.

    The key is (device, inode, size, mtime, ctime): any write, truncation or replacement of a file changes
    it (ctime cannot be set back, unlike mtime), so a file is decoded again only when it may have
    changed. Written beside the dataset (``.cache/decoded.json``), after a whole validation succeeded.
    """

    def __init__(self, root: Path):
        self.path = root / ".cache" / "decoded.json"
        self.reader = f"read_rgb/read_mask, one frame, Pillow {PIL.__version__}"  # another decoder may judge anew
        try:
            stored = json.loads(self.path.read_text())
            self.known = stored["files"] if stored.get("reader") == self.reader else {}
        except (OSError, ValueError, KeyError, TypeError):
            self.known = {}  # none yet, or a damaged one: decode everything
        self.seen: dict[str, list] = {}  # the file key (_key), width, height, sha256

    @staticmethod
    def _key(path: Path) -> list[int]:
        st = path.stat()
        return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]

    def recall(self, kind: str, rel: str, path: Path) -> tuple[int, int] | None:
        """The size stored for `path` (`rel` in the dataset), if the file has not changed since."""
        try:
            key = self._key(path)
        except OSError:
            return None  # missing: size() says so
        entry = self.known.get(f"{kind}:{rel}")
        if not isinstance(entry, list) or len(entry) != 8 or entry[:5] != key:
            return None
        self.seen[f"{kind}:{rel}"] = entry
        return entry[5], entry[6]

    def size(self, kind: str, rel: str, path: Path, where: str) -> tuple[int, int]:
        """(width, height) of the image or mask `path` (`rel` in the dataset) as bcc reads it, decoding it
        unless known."""
        known = self.recall(kind, rel, path)
        if known is not None:
            return known
        if not path.is_file():
            problem = "is not a file" if path.exists() else "does not exist"
            raise DatasetError(f"{where}: file {path} {problem}; fix the path or add the file")
        key = self._key(path)
        w, h = _decoded_size(kind, path, where)
        self.seen[f"{kind}:{rel}"] = [*key, w, h, _sha256(path)]
        return w, h

    def digest(self, rel: str, path: Path) -> str:
        """SHA-256 of image `rel`'s bytes: stored when it was decoded, else read now."""
        entry = self.seen.get(f"image:{rel}")
        return str(entry[7]) if entry is not None else _sha256(path)

    def save(self) -> None:
        if self.seen == self.known:
            return
        with contextlib.suppress(OSError):  # a read-only dataset: decoded again next time
            write_text(json.dumps({"reader": self.reader, "files": self.seen}, sort_keys=True), self.path)


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _decoded_size(kind: str, path: Path, where: str) -> tuple[int, int]:
    """Decode the whole file as training will (truncation shows only here) and return its size."""
    if path.stat().st_size == 0:
        raise DatasetError(f"{where}: file {path} is empty (0 bytes); replace it or drop its row")
    try:
        if kind == "image":
            rgb, _ = read_rgb(path, frames_ok=False)
            return rgb.shape[1], rgb.shape[0]
        mask = read_mask(path)
        return mask.shape[1], mask.shape[0]
    except UnreadableImage as e:
        reason = str(e)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, EOFError, ValueError) as e:
        reason = f"corrupt or truncated ({e})"  # read_mask's errors: what Pillow raises on bad data
    fix = "re-export it as JPEG/PNG or drop its row" if kind == "image" else "re-export it as PNG or delete it"
    raise DatasetError(f"{where}: cannot read {kind} {path} ({reason}); {fix}")


@dataclass
class Dataset:
    """A validated dataset: image table, per-rater annotations and the available masks (tables by line)."""

    root: Path
    images: pd.DataFrame
    annotations: pd.DataFrame
    masks: dict[str, dict[str, Path]] = field(default_factory=dict)
    duplicates: list[list[str]] = field(default_factory=list)  # image_ids showing the same picture (same bytes)

    def image_path(self, image_id: str) -> Path:
        return self.root / self.images.set_index("image_id").at[image_id, "image"]

    def aspect(self, image_id: str) -> float | None:
        """images.csv's ``aspect`` of an image (None: blank or no such column: the file's own proportions)."""
        if "aspect" not in self.images.columns:
            return None
        value = self.images.set_index("image_id").at[image_id, "aspect"]
        return float(value) if value else None

    @property
    def image_paths(self) -> list[Path]:
        return [self.root / p for p in self.images["image"]]


def load_image_table(root: Path, check_files: bool = True, allow_outside: bool = False) -> pd.DataFrame:
    """images.csv, validated: columns, ids, diagnosis values and every path inside `root` (unless
    `allow_outside`); with `check_files` every image decoded in full (see :class:`DecodeStamp`)."""
    root = Path(root)
    df = _image_table(root, allow_outside)
    if check_files:
        stamp = DecodeStamp(root)
        _image_sizes(root, df, stamp)
        stamp.save()
    return df


def _image_table(root: Path, allow_outside: bool) -> pd.DataFrame:
    path = root / "images.csv"
    df = read_csv(path, IMAGE_COLUMNS, IMAGE_OPTIONAL)
    empty = df["image_id"].eq("")
    if empty.any():
        raise DatasetError(f"{path}: blank image_id on line {_lines(empty)}; give every image an id")
    check_unique(df, ["image_id"], path)
    for line, image_id in df["image_id"].items():
        if (why := unfit_id(image_id)) is not None:
            raise DatasetError(f"{path}: line {line}: image_id {image_id!r} {why}; ids become file names "
                               f"(masks/<image_id>.png, twins/<image_id>.png): rename it (letters, digits, '-', '_', "
                               f"'.'; not starting with '.')")
    if "diagnosis" in df.columns:
        _check_binary(df, ("diagnosis",), path)
    if "aspect" in df.columns:
        _check_aspect(df, path)
    base = root.resolve()
    for line, rel in df["image"].items():
        inside(root, rel, f"{path}: line {line}", allow_outside, base=base)
    return df


def _image_sizes(root: Path, df: pd.DataFrame, stamp: DecodeStamp, workers: int = 2) -> dict[str, tuple[int, int]]:
    """image_id → (width, height) upright; the first unreadable image (in file order) is the error."""
    path = root / "images.csv"
    sizes = [stamp.recall("image", rel, root / rel) for rel in df["image"]]
    todo = [(i, line, rel) for i, ((line, rel), size) in enumerate(zip(df["image"].items(), sizes, strict=True)) if size is None]
    if todo:
        with ThreadPoolExecutor(max(1, workers)) as pool:  # Pillow decodes without the GIL
            futures = [pool.submit(stamp.size, "image", rel, root / rel, f"{path}: line {line}")
                       for _, line, rel in todo]
            try:
                for (i, _, _), f in zip(todo, futures, strict=True):
                    sizes[i] = f.result()
            except BaseException:
                for f in futures:
                    f.cancel()
                raise
    return dict(zip(df["image_id"], sizes, strict=True))


def load_annotations(root: Path, image_ids: pd.Series) -> pd.DataFrame:
    path = root / "annotations.csv"
    df = read_csv(path, ANNOTATION_COLUMNS)
    blank = df["rater"].eq("")
    if blank.any():
        raise DatasetError(f"{path}: blank rater on line {_lines(blank)}; name the rater of every row")
    _check_binary(df, CODES, path)
    check_unique(df, ["image_id", "rater"], path)
    unknown = ~df["image_id"].isin(image_ids)
    if unknown.any():
        raise DatasetError(f"{path}: line {_lines(unknown)}: image_id {df.loc[unknown, 'image_id'].iloc[0]!r} "
                           f"is not in images.csv; add the image or drop the annotation")
    unrated = ~image_ids.isin(df["image_id"])
    if unrated.any():
        raise DatasetError(f"{root / 'images.csv'}: line {_lines(unrated)}: image "
                           f"{image_ids[unrated].iloc[0]!r} has no row in annotations.csv; annotate it or drop it")
    return df


def _check_labelled(root: Path, images: pd.DataFrame, annotations: pd.DataFrame) -> None:
    """Every image needs a rated code or a diagnosis, or it has no label at all."""
    rated = annotations[list(CODES)].ne("").any(axis=1).groupby(annotations["image_id"]).any()
    unlabelled = ~images["image_id"].map(rated).astype(bool)
    if "diagnosis" in images.columns:
        unlabelled &= images["diagnosis"].eq("")
    if unlabelled.any():
        first = images.loc[unlabelled, "image_id"].iloc[0]
        raise DatasetError(f"{root / 'images.csv'}: line {_lines(unlabelled)}: image {first!r} has every code blank "
                           f"in annotations.csv and no diagnosis, so it has no label; rate it or give its diagnosis")


def mask_name(name: str, known: set[str]) -> tuple[str, str] | None:
    """(image_id, "all" | CODE | "lesion") of a mask file name, or None when it is no mask (not PNG)."""
    stem, suffix = os.path.splitext(name)
    if suffix.lower() != MASK_SUFFIX:
        return None
    if stem not in known and "_" in stem and stem.rsplit("_", 1)[1] in (*CODES, LESION):
        return stem.rsplit("_", 1)[0], stem.rsplit("_", 1)[1]
    return stem, "all"


def find_masks(root: Path, images: pd.DataFrame, sizes: dict[str, tuple[int, int]], stamp: DecodeStamp,
               allow_outside: bool = False) -> dict[str, dict[str, Path]]:
    """Map image_id → {"all" | CODE | "lesion": mask path}; each mask must match its image's size.

    ``<id>.png`` is the union of the pattern regions, ``<id>_<CODE>.png`` one code's region and
    ``<id>_lesion.png`` (optional) the whole lesion — Table 4's background "lesion minus the patterns".
    The suffix may be in any case (``.PNG``); other image files there are refused (masks are lossless).
    """
    if not (root / "masks").exists():
        return {}
    mask_dir = inside(root, "masks", f"{root}", allow_outside, what="folder")
    if not mask_dir.is_dir():
        raise DatasetError(f"{mask_dir}: not a folder; masks/ holds the mask files (or remove it)")
    known, base = set(images["image_id"]), root.resolve()
    masks: dict[str, dict[str, Path]] = {}
    for p in sorted(mask_dir.iterdir()):
        if p.name.startswith(".") or p.is_dir():
            continue
        parsed = mask_name(p.name, known)
        if parsed is None:
            if p.suffix.lower() in (".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif"):
                raise DatasetError(f"{p}: masks must be PNG (lossless); convert it to {p.stem}.png")
            continue
        stem, code = parsed
        if stem not in known:
            raise DatasetError(f"{p}: no image {stem!r} in images.csv; masks are named <image_id>.png, "
                               f"<image_id>_<CODE>.png with CODE in {list(CODES)} or <image_id>_{LESION}.png")
        if code in masks.get(stem, {}):
            raise DatasetError(f"{p}: a second mask for {stem!r} {code} (also {masks[stem][code].name}); "
                               f"keep one of them")
        inside(root, f"masks/{p.name}", f"{p}", allow_outside, what="mask", base=base)
        size = stamp.size("mask", f"masks/{p.name}", p, f"{p}")
        if size != sizes[stem]:
            raise DatasetError(f"{p}: mask is {size[0]}x{size[1]} but its image is {sizes[stem][0]}x{sizes[stem][1]};"
                               f" masks must have the image's size")
        masks.setdefault(stem, {})[code] = p
    return masks


def load_dataset(root: Path, check_files: bool = True, allow_outside: bool = False,
                 write_stamp: bool = True) -> Dataset:
    """Validate and load `root`; raises DatasetError naming file, line and fix on the first problem.

    With `check_files`, every image and mask is decoded (once: see :class:`DecodeStamp`, saved when
    `write_stamp`; a tool only reading a dataset, like merge, leaves it untouched); paths must resolve
    inside `root` unless `allow_outside`.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset directory not found (make one with `python -m bcc.data.synthetic "
                           f"--out {root}` or point data.root at your dataset)")
    images = _image_table(root, allow_outside)
    annotations = load_annotations(root, images["image_id"])
    _check_labelled(root, images, annotations)
    masks, duplicates = {}, []
    if check_files:
        stamp = DecodeStamp(root)
        masks = find_masks(root, images, _image_sizes(root, images, stamp), stamp, allow_outside)
        duplicates = duplicate_images(root, images, stamp)
        if write_stamp:
            stamp.save()
    return Dataset(root=root, images=images, annotations=annotations, masks=masks, duplicates=duplicates)


def duplicate_images(root: Path, images: pd.DataFrame, stamp: DecodeStamp | None = None) -> list[list[str]]:
    """The image_ids that show the same picture, as lists (two rows naming one file, or byte-identical files
    under two ids): one picture must never be in a training fold and a test fold at once, so ``bcc.folds``
    keeps each list in one fold. Hashes come from the decode stamp where it has them."""
    stamp = stamp or DecodeStamp(Path(root))
    by_digest: dict[str, list[str]] = {}
    for image_id, rel in zip(images["image_id"], images["image"], strict=True):
        path = Path(root) / rel
        if path.is_file():
            by_digest.setdefault(stamp.digest(rel, path), []).append(image_id)
    return [ids for ids in by_digest.values() if len(ids) > 1]


def describe_duplicates(root: Path, duplicates: list[list[str]], limit: int = 3) -> str:
    """One line about the duplicates: how many pictures, a few examples, what is done about them."""
    shown = "; ".join(", ".join(ids) for ids in duplicates[:limit])
    more = f" (+{len(duplicates) - limit} more)" if len(duplicates) > limit else ""
    return (f"{Path(root) / 'images.csv'}: {len(duplicates)} picture(s) appear under more than one image_id (the same "
            f"file, or the same bytes): {shown}{more}; each set is kept in one fold by bcc.folds (drop the copies "
            f"unless they are meant)")


DATA_FILES = ("images.csv", "annotations.csv", "labels.csv", "splits.csv")


def dataset_hash(root: str | Path | None, allow_outside: bool = False) -> str:
    """``sha256:<hex>`` over the dataset's CSV files (labels and folds included) and the bytes of every image
    images.csv lists (each inside the dataset folder unless `allow_outside`), or ``unknown``: what a run was
    trained on, so that runs on different data (a copy with changed ratings) are never averaged together."""
    if root is None or not (Path(root) / "images.csv").is_file():
        return "unknown"
    root = Path(root)
    h = hashlib.sha256()
    for name in DATA_FILES:
        if (root / name).is_file():
            h.update(name.encode() + b"\0" + (root / name).read_bytes())
    base = root.resolve()
    for rel in sorted(pd.read_csv(root / "images.csv", usecols=["image"], dtype=str, keep_default_na=False)["image"]):
        p = inside(root, rel, f"{root / 'images.csv'}", allow_outside, base=base)
        if p.is_file():
            h.update(rel.encode() + b"\0" + hashlib.sha256(p.read_bytes()).digest())
    return "sha256:" + h.hexdigest()


def place_file(src: Path, dst: Path, how: str) -> None:
    """Put `src` into a dataset being written at `dst`: a hard link (the default: no copy, and the file
    lies inside the dataset), a copy, or a symbolic link (then the dataset needs ``allow_outside``)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if how == "copy":
        shutil.copy2(src, dst)
    elif how == "symlink":
        dst.symlink_to(src)
    else:
        try:
            os.link(src, dst)
        except OSError as e:
            raise DatasetError(f"{src}: cannot hard-link it into the new dataset ({e.strerror}; another filesystem?); "
                               f"pass --copy to copy the files, or --symlink to link them (the tools that read "
                               f"the dataset then need --allow-outside)") from None
