"""Atomic writes: a crash or a bad input never leaves a half-written derived file behind, and no output is
written over something its command did not write.

A single file goes through a temporary sibling renamed into place (:func:`atomic_path`). A folder a command
owns whole (a synthetic dataset, an evaluation report) is built in a temporary sibling and swapped in whole
(:func:`staged_folder`); it replaces an existing folder only if that one carries the command's marker
(``.bcc-owner.json``) — and a folder that must be new (a converted or merged dataset) never replaces one. Files a command writes into a folder it shares with others (``bcc.predict`` and
``bcc.explain`` beside the user's files) are staged together and listed in the command's manifest
(:class:`OutputSet`): a second run refuses to replace them unless told (``overwrite=true``), and never
replaces a file the command did not write. Temporaries are named with their process id, so the next run
into the same place removes those a killed run (SIGKILL) left behind.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from bcc.core.errors import UsageError

OWNER = ".bcc-owner.json"  # in a folder a command owns whole: which command wrote it


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def temp_prefix(name: str) -> str:
    """The prefix of this process's temporaries for `name`: ``.<name>.tmp-<pid>-``."""
    return f".{name}.tmp-{os.getpid()}-"


def clear_stale(parent: Path, name: str) -> None:
    """Remove the temporaries for `name` in `parent` whose process is gone (what a SIGKILLed run left)."""
    pattern = re.compile(rf"^\.{re.escape(name)}\.tmp-(\d+)-")
    if not Path(parent).is_dir():
        return
    for p in Path(parent).iterdir():
        m = pattern.match(p.name)
        if m and int(m.group(1)) != os.getpid() and not _alive(int(m.group(1))):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() and not p.is_symlink() else p.unlink(missing_ok=True)


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it into place only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clear_stale(path.parent, path.name)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path.name), dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; the result gets what open() would give
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _owner(folder: Path) -> str | None:
    try:
        return json.loads((folder / OWNER).read_text()).get("written_by")
    except (OSError, ValueError, AttributeError):
        return None


def check_replaceable(out: Path, owner: str, option: str) -> None:
    """Refuse (``UsageError``) an `out` that exists and is not an empty folder or one `owner` wrote (its
    marker): the folder is replaced whole, and must never take the user's files with it."""
    out = Path(out)
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise UsageError(f"{option} {out} exists and is not a folder {owner} wrote; choose a new {option}")
    if out.is_dir() and any(out.iterdir()) and _owner(out) != owner:
        raise UsageError(f"{option} {out} exists and holds files {owner} did not write (it would be replaced "
                         f"whole); choose a new {option}, or delete it first")


def refuse_existing(out: Path, option: str, why: str) -> None:
    """Refuse (``UsageError``) an `out` that exists at all: a folder that must be new (`why` says so)."""
    if os.path.lexists(out):
        raise UsageError(f"{out} exists: choose a new {option} ({why})")


@contextmanager
def staged_folder(out: Path, owner: str | None, option: str, never_replaced: str = "") -> Iterator[Path]:
    """Yield an empty temporary folder beside `out`; when the block succeeds it is marked as `owner`'s and
    swapped in whole for `out` (which :func:`check_replaceable` allows); when it fails `out` is untouched.
    With `owner` None the folder must be new: an existing `out` is refused, before and after the block
    (`never_replaced` says why), and no marker is written."""
    if owner is None:
        refuse_existing(out, option, never_replaced)
    out = Path(os.path.abspath(out))
    if owner is not None:
        check_replaceable(out, owner, option)
    out.parent.mkdir(parents=True, exist_ok=True)
    clear_stale(out.parent, out.name)
    tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(out.name), dir=out.parent))
    try:
        yield tmp
        if owner is not None:
            (tmp / OWNER).write_text(json.dumps({"written_by": owner}) + "\n")
        os.chmod(tmp, 0o777 & ~_umask())
        if owner is None:
            refuse_existing(out, option, never_replaced)  # made by someone else meanwhile: theirs stays
            os.replace(tmp, out)
        elif out.exists():
            old = Path(tempfile.mkdtemp(prefix=temp_prefix(out.name), dir=out.parent))
            os.replace(out, old / "previous")
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class OutputSet:
    """The files one command writes into a folder it shares with the user's (``output=`` of ``bcc.predict``,
    ``bcc.explain``), checked before any work and written together.

    A file of `names` already there stops the command (exit 2) unless `overwrite`; with it, only files the
    command's previous run listed in its manifest (``.bcc-<command>.json``) are replaced, and all that run
    wrote goes (no earlier overlay stays behind unlisted). The files are written into a hidden staging folder
    and moved into place, then the manifest, when the work has succeeded."""

    def __init__(self, folder: Path, command: str, names: Iterable[str], overwrite: bool, option: str = "output="):
        self.folder, self.command, self.names = Path(folder), command, sorted(set(names))
        self.manifest = self.folder / f".bcc-{command.rsplit('.', 1)[-1]}.json"
        try:
            self.previous = set(json.loads(self.manifest.read_text())["files"])
        except (OSError, ValueError, KeyError, TypeError):
            self.previous = set()
        there = [n for n in self.names if os.path.lexists(self.folder / n)]
        foreign = [n for n in there if n not in self.previous]
        if foreign:
            raise UsageError(f"{option}{self.folder} already holds {', '.join(foreign[:3])}"
                             f"{f' (+{len(foreign) - 3} more)' if len(foreign) > 3 else ''}, which {command} did "
                             f"not write; choose another output folder (nothing is written over files it did not "
                             f"write)")
        if there and not overwrite:
            raise UsageError(f"{option}{self.folder} already holds {', '.join(there[:3])} from an earlier run of "
                             f"{command}; choose another output folder, or pass overwrite=true to replace that run's "
                             f"outputs")

    @contextmanager
    def staging(self) -> Iterator[Path]:
        self.folder.mkdir(parents=True, exist_ok=True)
        name = self.manifest.stem.lstrip(".")  # staging: .bcc-<command>.tmp-<pid>-…, hidden from input listings
        clear_stale(self.folder, name)
        tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(name), dir=self.folder))
        try:
            yield tmp
            written = sorted(p.name for p in tmp.iterdir())
            for name in self.previous - set(written):
                path = self.folder / name
                if path.is_file() and not path.is_symlink() and os.path.basename(name) == name:
                    path.unlink()
            for name in written:
                os.replace(tmp / name, self.folder / name)
            write_json({"command": self.command, "files": written}, self.manifest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def write_csv(df: pd.DataFrame, path: Path, **kwargs) -> Path:
    """Write a CSV atomically (floats with fixed precision so reruns are byte-identical)."""
    kwargs.setdefault("float_format", "%.6g")
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, lineterminator="\n", **kwargs)
    return Path(path)


def write_text(text: str, path: Path) -> Path:
    """Write a text file atomically (UTF-8)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(obj: Any, path: Path) -> Path:
    """Write a JSON file atomically, indented, with a final newline."""
    return write_text(json.dumps(obj, indent=2) + "\n", path)


def sha256_file(path: Path) -> str:
    """SHA-256 (hex) of a file's bytes, read in blocks: the one content hash of an image, a checkpoint, an input."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def files_digest(*paths: Path, extra: str = "") -> str:
    """SHA-256 over file contents (and a parameter string): decides whether a derived file is stale."""
    h = hashlib.sha256(extra.encode())
    for p in paths:
        h.update(Path(p).read_bytes())
    return h.hexdigest()


#: Unicode's bidirectional controls (ALM, LRM, RLM, the embeddings, overrides and isolates): in a file name or
#: an id they make text display in another order ("gpj.exe" shown as "exe.jpg", or another patient's name).
BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def printable(text: str) -> str:
    """`text` with control characters shown as ``\\t``, ``\\n``, ``\\r``, ``\\xNN`` and bidirectional controls
    as ``\\u202e`` …: what is shown is what is stored, in the order stored."""
    return "".join(ch.encode("unicode_escape").decode() if ord(ch) < 0x20 or ord(ch) == 0x7F or ch in BIDI_CONTROLS
                   else ch for ch in text)


def shown(path: str | Path) -> str:
    """A path as printable text, for every message that names a file: bytes that are not UTF-8 (surrogate
    escapes in Python) as ``\\xNN``, control characters as ``\\t``, ``\\n``, ``\\r``, ``\\xNN`` (a raw carriage
    return would also end a CSV row for most readers), bidirectional controls as ``\\u202e`` … (:func:`printable`)."""
    return printable(os.fsencode(str(path)).decode("utf-8", "backslashreplace"))


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(table: pd.DataFrame) -> pd.DataFrame:
    """A copy in which every text cell starting with ``=``, ``+``, ``-``, ``@``, tab or carriage return
    gets a leading ``'`` (OWASP's CSV-injection rule), so a spreadsheet shows it instead of running it.
    Numbers (and numeric columns) are left as they are."""
    out = table.copy()
    for col in out.columns:
        if not (pd.api.types.is_numeric_dtype(out[col]) or pd.api.types.is_bool_dtype(out[col])):
            out[col] = out[col].map(lambda v: "'" + v if isinstance(v, str) and v.startswith(FORMULA_START) else v)
    return out
