"""Bad files and paths any command can meet (see tests/bad_inputs/__init__.py): a decompression bomb (a
20000 x 20000 JPEG header, a few hundred bytes on disk), an output path running through a file, and a
glob with brackets left unquoted for Hydra."""
from __future__ import annotations

import io
import struct
from pathlib import Path

from PIL import Image

from tests.bad_inputs.case import Case, Workspace
from tests.helpers import public_sets

HAM, FOLDS, SYNTHETIC = "bcc.data.ham10000:main", "bcc.data.folds:main", "bcc.data.synthetic.__main__:main"
EXPORT = "bcc.cli.export:main"


def bomb(path: Path) -> Path:
    """A small JPEG whose header says 20000 x 20000 pixels: what Pillow refuses as a decompression bomb."""
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 120, 90)).save(buffer, "JPEG")
    data = bytearray(buffer.getvalue())
    struct.pack_into(">HH", data, data.find(b"\xff\xc0") + 5, 20000, 20000)  # SOF0: height, width
    path.write_bytes(bytes(data))
    return path


def _ham_bomb(ws: Workspace) -> None:
    release = public_sets.ham10000(ws.root / "ham")
    bomb(min(release.rglob("*.jpg")))


def _dataset_bomb(ws: Workspace) -> None:
    bomb(ws.dataset() / "images" / "syn_00000.png")  # a JPEG under a .png name: read by its content


def _a_file(ws: Workspace) -> None:
    (ws.root / "notes.txt").write_text("a file where a folder would go")


CASES: list[Case] = [
    Case("ham10000/image-a-decompression-bomb", HAM, lambda ws: [str(ws.root / "ham"), "--out", str(ws.root / "out")],
         2, r"ham/HAM10000_images_part_1/ISIC_\d+\.jpg: image too large \(Image size \(400000000 pixels\) exceeds "
            r"limit of \d+ pixels.*\): downscale it", _ham_bomb),
    Case("folds/image-a-decompression-bomb", FOLDS, lambda ws: [str(ws.root / "ds")], 2,
         r"ds/images\.csv: line 2: cannot read image .*syn_00000\.png \(image too large \(Image size \(400000000 "
         r"pixels\).*bcc reads at most 100 megapixels", _dataset_bomb),
    Case("synthetic/out-below-a-file", SYNTHETIC,
         lambda ws: ["--out", str(ws.root / "notes.txt" / "synthetic"), "--n", "10", "--size", "32"], 2,
         r"cannot make the folder .*notes\.txt: a file stands where a folder is needed", _a_file),
    Case("ham10000/out-below-a-file", HAM,
         lambda ws: [str(ws.root / "ham"), "--out", str(ws.root / "notes.txt" / "ham")], 2,
         r"notes\.txt.*(a file stands where a folder is needed|not a folder)",
         lambda ws: (_a_file(ws), public_sets.ham10000(ws.root / "ham"))),
    Case("export/glob-with-brackets-unquoted", EXPORT,
         lambda ws: [f"checkpoint={ws.root}/runs/mobilenet/fold[0-1]/stage3/best.ckpt"], 2,
         r"checkpoint=.*fold\[0-1\].*: Hydra reads \[ \] in a value as a list, so a glob with brackets must reach it "
         r"quoted: \"checkpoint='.*fold\[0-1\]/stage3/best\.ckpt'\""),
]
