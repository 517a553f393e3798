"""A folder of inputs as the batch commands (``bcc.explain``, ``bcc.predict``) see it, and ``bcc.explain``'s work.

Inputs (:func:`list_inputs`): the file ``input=`` names, or every non-hidden entry under the folder that
is not a folder itself (sorted); hidden files and folders (a name starting with ``.``: ``.DS_Store``,
macOS ``._x.jpg``, ``.git``) are not inputs. An input that cannot be read is skipped with the reason
(:func:`read_input`) and the rest of the batch completes: not an image, empty, corrupt, truncated, too
large, an unsupported pixel format, a broken link, a link to a folder (not followed), a FIFO, socket or
device (never opened), or a file that vanished since it was listed.

Names (:func:`input_name`): an input is named by its path relative to the input folder (``sub/a.png``),
or by its file name when ``input=`` is a file; bytes of a file name that are not UTF-8 are shown as
``\\xNN`` and control characters as ``\\t``, ``\\n``, ``\\r``, ``\\xNN`` (and the note says so).
Output names (:func:`output_name`) are that relative path, extension included, flattened into one file
name: ``%``, ``/``, ``\\``, ``<>:"|?*`` and control characters become ``%XX`` (their code), bytes that
are not UTF-8 ``%XX`` (the byte), everything else is kept (``sub/lésion.jpg`` → ``sub%2Flésion.jpg``).
So ``lesion.jpg`` and ``lesion.png`` get their own outputs, a file's output names depend on its own path
only (stable across runs), and two inputs never share one (names longer than :data:`MAX_NAME_BYTES` are
cut and end in ``~`` + 12 hex digits of their path's SHA-1). On a case-insensitive file system (macOS,
Windows) ``A.png`` and ``a.png`` still share their outputs.

CSV files these commands write neutralise cells that a spreadsheet would run as a formula (:func:`csv_safe`).

``explain_files`` writes, per input, ``<name>_<output>.png`` overlays (one per output, ``OUTPUTS`` order)
and, with `save_raw`, ``<name>_maps.npy`` (float32, 8 x H x W at the image's own resolution, OUTPUTS
order), then ``explanations.csv``: ``image, name, status, note, p_bcc … p_AT`` (``status`` ``ok`` or
``skipped``, ``note`` how the image was read or why it was skipped). ``python -m bcc.explain``
(``bcc.cli.explain``) runs it.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image

from bcc.core.errors import BadInput
from bcc.core.io import BIDI_CONTROLS, atomic_path, csv_safe, shown, write_csv
from bcc.core.log import get_logger
from bcc.core.patterns import OUTPUTS
from bcc.data.images import Preprocess, UnreadableImage, read_rgb, to_input
from bcc.explanation.gradcam import maps_on_picture
from bcc.explanation.render import overlay

log = get_logger(__name__)

#: An output name's longest form in UTF-8 bytes, leaving room for ``_<output>.png`` in the usual 255.
MAX_NAME_BYTES = 200
#: What a spreadsheet reads as the start of a formula (OWASP, "CSV Injection").
_PERCENT_ENCODED = set('%/\\<>:"|?*')
ESCAPED = ("file name shown escaped (bytes that are not UTF-8 as \\xNN, control characters as \\t \\n \\r \\xNN, "
           "bidirectional controls as \\uNNNN)")


# ---- inputs ---------------------------------------------------------------------------------------------
def list_inputs(path: str | Path) -> tuple[Path, list[Path]]:
    """``(root, inputs)``: the single file (root: its folder), or every non-hidden non-folder entry under
    the folder, sorted. Links to folders are listed (and skipped when read), not followed."""
    path = Path(path)
    if not path.is_dir():
        if not (path.exists() or path.is_symlink()):
            raise BadInput(f"input={shown(path)}: no such file or folder")
        return path.parent, [path]
    entries = (p for p in path.rglob("*") if not any(s.startswith(".") for s in p.relative_to(path).parts))
    return path, sorted(p for p in entries if p.is_symlink() or not p.is_dir())


def _relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix() if root in path.parents else path.name


def input_name(path: Path, root: Path) -> tuple[str, str]:
    """``(name, remark)``: the input's path relative to `root` as text (:func:`shown`), and :data:`ESCAPED`
    (else "") when it had to be escaped."""
    rel = _relative(path, root)
    name = shown(rel)
    return name, ESCAPED if name != rel else ""


def output_name(path: Path, root: Path) -> str:
    """The file-name stem of an input's outputs (the rule in the module docstring)."""
    rel = _relative(path, root)
    out = []
    for ch in rel:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte, as Python's surrogate escape holds it
            out.append(f"%{code - 0xDC00:02X}")
        elif ch in _PERCENT_ENCODED or code < 0x20 or code == 0x7F or ch in BIDI_CONTROLS:
            out.append(f"%{code:02X}")
        else:
            out.append(ch)
    name = "".join(out)
    if len(name.encode()) > MAX_NAME_BYTES:
        digest = hashlib.sha1(os.fsencode(rel)).hexdigest()[:12]
        name = name.encode()[:MAX_NAME_BYTES - 13].decode("utf-8", "ignore") + "~" + digest
    return name


def output_names(files: Sequence[Path], root: Path, save_raw: bool) -> list[str]:
    """Every file :func:`explain_files` may write for `files` (checked against ``output=`` before any work)."""
    stems = [output_name(p, root) for p in files]
    return ["explanations.csv", *(f"{s}_{o}.png" for s in stems for o in OUTPUTS),
            *((f"{s}_maps.npy" for s in stems) if save_raw else ())]


def not_a_file(path: Path) -> str | None:
    """Why an entry is not a regular file to open (None when it is one)."""
    if path.is_file():
        return None
    if path.is_symlink():
        return ("a link to a folder (links to folders are not followed; pass the folder as input=)"
                if path.is_dir() else "a broken link (its target does not exist)")
    if not path.exists():
        return "no longer there (removed since it was listed)"
    return "not a regular file (a FIFO, socket or device; not opened)"


def read_input(path: Path, max_megapixels: float) -> tuple[np.ndarray, str]:
    """``read_rgb`` for a listed input: :class:`UnreadableImage` also for what is not a regular file and
    for a file that cannot be opened (vanished, no permission)."""
    reason = not_a_file(path)
    if reason:
        raise UnreadableImage(reason)
    try:
        return read_rgb(path, max_megapixels)
    except OSError as e:
        raise UnreadableImage(f"could not be opened ({e.strerror or e})") from None


# ---- bcc.explain ------------------------------------------------------------------------------------------
Explainer = Callable[[np.ndarray], tuple[np.ndarray, torch.Tensor]]


def explain_files(explainer: Explainer, preprocess: Preprocess | int, files: Sequence[Path], out_dir: Path, root: Path,
                  save_raw: bool = False, batch_size: int = 16, max_megapixels: float = 100.0) -> pd.DataFrame:
    """Write overlays (and raw maps) for `files`; returns the table written as ``explanations.csv``.

    `explainer` maps (N, 3, S, S) float32 images (made as `preprocess` says) in [0, 1] to (probabilities (N, 8), raw
    Grad-CAM (N, 8, h, w) as ``bcc.explanation.gradcam.raw_cams`` gives them). Unreadable inputs are
    skipped (a row with their reason); the rest of the batch completes.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for start in range(0, len(files), batch_size):
        chunk = []
        for path in files[start:start + batch_size]:
            image, remark = input_name(path, root)
            row: dict[str, Any] = {"image": image, "name": output_name(path, root), "status": "ok", "note": remark}
            rows.append(row)
            try:
                rgb, note = read_input(path, max_megapixels)
                chunk.append((row, rgb))
                row["note"] = "; ".join(filter(None, [note, remark]))
            except UnreadableImage as e:
                log.info(f"[bcc.explain] skipped {image}: {e}")
                row.update(status="skipped", note="; ".join(filter(None, [str(e), remark])))
        if not chunk:
            continue
        probs, cams = explainer(np.stack([to_input(rgb, preprocess).numpy() for _, rgb in chunk]))
        for i, (row, rgb) in enumerate(chunk):
            row.update({f"p_{o}": float(probs[i, k]) for k, o in enumerate(OUTPUTS)})
            maps = maps_on_picture(cams[i:i + 1], rgb.shape[:2], Preprocess.of(preprocess))[0].cpu().numpy()
            for k, output in enumerate(OUTPUTS):
                with atomic_path(out_dir / f"{row['name']}_{output}.png") as tmp:
                    Image.fromarray(overlay(rgb, maps[k])).save(tmp, "PNG")
            if save_raw:
                with atomic_path(out_dir / f"{row['name']}_maps.npy") as tmp, open(tmp, "wb") as f:
                    np.save(f, maps.astype(np.float32))
    table = pd.DataFrame(rows, columns=["image", "name", "status", "note", *[f"p_{o}" for o in OUTPUTS]])
    write_csv(csv_safe(table), out_dir / "explanations.csv")
    return table
