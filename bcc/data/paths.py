"""Names and places of a dataset's files: which ids can name files, which paths may be read, how files
are put into a new dataset.

A dataset (or a release being converted) cannot vouch for files outside itself: every path must resolve
inside the folder(s) it was given — an absolute path, a ``..`` that climbs out and a symbolic link leading
out (the file's, or a folder's on its way) are refused — unless the caller passes ``allow_outside``
(docs/dataset.md, "Files outside the dataset"). :func:`outside` is that one test; :func:`inside` applies it
to a dataset's relative paths, :class:`SourceFolders` to the files of a release.
"""
from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path

from bcc.data.errors import DatasetError

__all__ = ["ID_MAX_BYTES", "LINK_MODES", "OUTSIDE_FIX", "SourceFolders", "check_how", "inside", "outside",
           "place_file", "unfit_id"]

#: an image_id becomes part of file names (masks/<id>.png, twins/<id>.png, merged ids): one path component,
#: no separator, no '..', nothing a terminal or a report would show otherwise than stored
_ID_UNFIT = re.compile(r"[/\\\x00-\x1f\x7f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
ID_MAX_BYTES = 150
LINK_MODES = ("hard", "copy", "symlink")  # how the conversions and bcc.data.merge place files in a dataset
OUTSIDE_FIX = ("move or copy the file into the dataset (a hard link does too), or, if reading outside it is "
               "intended, pass --allow-outside (allow_outside=True)")


def unfit_id(image_id: str) -> str | None:
    """Why `image_id` cannot name files (None when it can): checked once, at the contract, for every id."""
    if _ID_UNFIT.search(image_id):
        return "holds a path separator, a control or a bidirectional character"
    if image_id.startswith("."):
        return "starts with '.' (a hidden file, or '..', a parent folder)"
    if len(image_id.encode()) > ID_MAX_BYTES:
        return f"is longer than {ID_MAX_BYTES} bytes"
    return None


def _within(path: str, base: str) -> bool:
    """Whether the absolute, normalised `path` is `base` or lies under it (strings: thousands per dataset)."""
    return path == base or path.startswith(os.path.join(base, ""))


def outside(path: str | Path, bases: Sequence[str | Path]) -> str | None:
    """The real path `path` resolves to (links followed, ``..`` undone) when it lies outside every folder of
    `bases` (each already resolved); None when it lies inside one. A link loop stays unresolved, and is then
    a missing file."""
    target = os.path.realpath(path)
    return None if any(_within(target, str(b)) for b in bases) else target


def inside(root: Path, rel: str, where: str, allow_outside: bool = False, what: str = "image",
           base: Path | None = None) -> Path:
    """``root / rel``, refused unless it resolves inside `root` (or `allow_outside`).

    `base` is ``root.resolve()``, when the caller checks many paths.
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
    target = outside(path, [base])
    if target is not None:
        why = ("climbs out of the dataset with '..'" if not _within(os.path.normpath(base / rel), str(base))
               else "leads through a symbolic link")
        raise DatasetError(f"{where}: {what} path {rel!r} {why} to {target}, outside the dataset directory "
                           f"{base}; {OUTSIDE_FIX}")
    return path


class SourceFolders:
    """The folders a conversion was given; reading a file that resolves outside all of them (a symbolic
    link, a ``..`` or an absolute path in a table) is refused unless `allow_outside`."""

    def __init__(self, folders: Iterable[Path], allow_outside: bool = False):
        self.folders = [Path(f) for f in folders]
        self.bases = [os.path.realpath(f) for f in self.folders]
        self.allow_outside = allow_outside

    def check(self, path: Path, where: str) -> Path:
        target = None if self.allow_outside else outside(path, self.bases)
        if target is not None:
            named = ", ".join(str(f) for f in self.folders)
            raise DatasetError(f"{where}: {path} resolves to {target}, outside the folder(s) given ({named}); "
                               f"move the file into them, or pass --allow-outside (allow_outside=True) if reading it "
                               f"is intended")
        return path


def check_how(how: str) -> None:
    if how not in LINK_MODES:
        raise DatasetError(f"how={how!r}: choose one of {list(LINK_MODES)}")


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
