"""Bad inputs of the data commands (see tests/bad_inputs/__init__.py): a dataset or an ISIC download that
breaks the contract (docs/dataset.md), refused with exit 2 and a message naming the file, the line and the
fix, before anything is written.

Each row spoils ``ws.dataset()`` (a copy of the 100-image smoke dataset with masks, labels.csv and
splits.csv: images ``images/syn_000NN.png`` on line NN + 2 of images.csv, four raters per image in
annotations.csv) with the helpers below. To add a case, add a row; a helper that spoils the dataset a new
way goes beside the others.
"""
from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from tests.bad_inputs.case import Case, Workspace

CONSENSUS, FOLDS = "bcc.data.consensus:main", "bcc.data.folds:main"
ISIC, MERGE = "bcc.data.isic:main", "bcc.data.merge:main"
SYNTHETIC = "bcc.data.synthetic.__main__:main"
DIAGNOSES = ("MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK")
Prepare = Callable[[Workspace], None]


def dataset(*extra: str) -> Callable[[Workspace], list[str]]:
    """The command on the workspace's dataset copy."""
    return lambda ws: [str(ws.root / "ds"), *extra]


def steps(*prepares: Prepare) -> Prepare:
    def prepare(ws: Workspace) -> None:
        for p in prepares:
            p(ws)
    return prepare


def rows(name: str, edit: Callable[[list[list[str]]], object]) -> Prepare:
    """Edit a CSV of the dataset as a list of rows (header first), written back as plain CSV."""
    def prepare(ws: Workspace) -> None:
        path = ws.dataset() / name
        table = list(csv.reader(path.read_text().splitlines()))
        edit(table)
        path.write_text("".join(",".join(r) + "\n" for r in table))
    return prepare


def cell(name: str, line: int, column: str, value: str) -> Prepare:
    """Set one value, by the line an editor shows."""
    def edit(table: list[list[str]]) -> None:
        table[line - 1][table[0].index(column)] = value
    return rows(name, edit)


def text(name: str, edit: Callable[[str], str | bytes]) -> Prepare:
    """Rewrite a file of the dataset from its text (bytes are written as they are)."""
    def prepare(ws: Workspace) -> None:
        path = ws.dataset() / name
        out = edit(path.read_text())
        path.write_bytes(out) if isinstance(out, bytes) else path.write_text(out)
    return prepare


def line(name: str, number: int, new: str) -> Prepare:
    """Replace physical line `number` (the header is 1)."""
    def edit(t: str) -> str:
        lines = t.split("\n")
        lines[number - 1] = new
        return "\n".join(lines)
    return text(name, edit)


def file(rel: str | Callable[[Workspace], str], data: Callable[[Path], bytes]) -> Prepare:
    """Overwrite a file of the dataset (its path, or a function giving it) with `data(its path)`."""
    def prepare(ws: Workspace) -> None:
        path = ws.dataset() / (rel(ws) if callable(rel) else rel)
        path.write_bytes(data(path))
    return prepare


def half(path: Path) -> bytes:
    return path.read_bytes()[: path.stat().st_size // 2]


def truncated_jpeg(ws: Workspace) -> None:
    """images/syn_00001.jpg: a JPEG cut in half (Pillow's verify() passes it), named on line 3."""
    buf = io.BytesIO()
    with Image.open(ws.dataset() / "images/syn_00001.png") as im:
        im.convert("RGB").save(buf, "JPEG")
    (ws.root / "ds/images/syn_00001.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    cell("images.csv", 3, "image", "images/syn_00001.jpg")(ws)


def animated_gif(ws: Workspace) -> None:
    """images/syn_00001.gif: a two-frame animation of the image."""
    with Image.open(ws.dataset() / "images/syn_00001.png") as im:
        frames = [im.convert("RGB"), im.convert("RGB").transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    frames[0].save(ws.root / "ds/images/syn_00001.gif", save_all=True, append_images=frames[1:], duration=100)


def outside_image(ws: Workspace) -> Path:
    """A valid image outside the dataset: what a path leaving it would have bcc read."""
    out = ws.root / "elsewhere" / "secret.png"
    out.parent.mkdir(exist_ok=True)
    out.write_bytes((ws.dataset() / "images/syn_00001.png").read_bytes())
    return out


def symlink(rel: str | Callable[[Workspace], str], target: Callable[[Workspace], Path]) -> Prepare:
    """Replace a file or folder of the dataset by a symbolic link to `target`."""
    def prepare(ws: Workspace) -> None:
        path = ws.dataset() / (rel(ws) if callable(rel) else rel)
        to = target(ws)
        if path.is_dir():
            path.rename(to)
        else:
            path.unlink()
        path.symlink_to(to)
    return prepare


def masks_file(ws: Workspace) -> None:
    """masks/ replaced by a file of that name."""
    (ws.dataset() / "masks").rename(ws.root / "masks.bak")
    (ws.root / "ds/masks").write_text("not a folder")


def first_mask(ws: Workspace) -> str:
    """masks/<id>.png of the first image with masks (which ones have them is the generator's choice)."""
    ds = ws.dataset()
    return next(f"masks/{p.name}" for p in sorted((ds / "masks").glob("*.png")) if (ds / f"images/{p.name}").exists())


def mask(name: str | Callable[[Workspace], str], size: tuple[int, int] = (64, 64), fmt: str = "PNG") -> Prepare:
    """Write a blank mask of `size` at masks/`name` (or over the path `name(ws)` gives)."""
    def prepare(ws: Workspace) -> None:
        path = ws.dataset() / (name(ws) if callable(name) else f"masks/{name}")
        Image.fromarray(np.zeros(size[::-1], np.uint8)).save(path, fmt)
    return prepare




def isic(ws: Workspace) -> None:
    """A small download in the ISIC 2019 layout: 6 images and the one-hot ground truth."""
    images = ws.root / "isic" / "Input"
    images.mkdir(parents=True)
    gt = [["image", *DIAGNOSES]]
    for i, png in enumerate(sorted((ws.smoke_data / "images").glob("*.png"))[:6]):
        with Image.open(png) as im:
            im.convert("RGB").save(images / f"ISIC_{i:07d}.jpg", "JPEG")
        gt.append([f"ISIC_{i:07d}", *("1.0" if d == DIAGNOSES[i % 3] else "0.0" for d in DIAGNOSES)])
    (ws.root / "isic" / "GroundTruth.csv").write_text("".join(",".join(r) + "\n" for r in gt))


def isic_args(*extra: str) -> Callable[[Workspace], list[str]]:
    return lambda ws: [str(ws.root / "isic/GroundTruth.csv"), str(ws.root / "isic/Input"), "--out",
                       str(ws.root / "out"), *extra]


def isic_gt(line_number: int, new: str) -> Prepare:
    def prepare(ws: Workspace) -> None:
        path = ws.root / "isic/GroundTruth.csv"
        lines = path.read_text().split("\n")
        lines[line_number - 1] = new
        path.write_text("\n".join(lines))
    return prepare


def existing_out(ws: Workspace) -> None:
    (ws.root / "out").mkdir()
    (ws.root / "out" / "precious.txt").write_text("not a dataset, and not to be deleted")


def merge_args(*extra: str) -> Callable[[Workspace], list[str]]:
    return lambda ws: [str(ws.root / "ds"), str(ws.root / "ds2"), "--out", str(ws.root / "out"), *extra]


def two_datasets(ws: Workspace) -> None:
    ws.dataset()
    ws.dataset("ds2")


def drop_rows(name: str, keep: Callable[[list[str]], bool]) -> Prepare:
    return rows(name, lambda t: t.__setitem__(slice(1, None), [r for r in t[1:] if keep(r)]))


ANN = "annotations.csv"
IMG = "images.csv"
FILE_LINE_FIX = r"images\.csv: line 3: "
OUTSIDE_FIX = r"outside the dataset directory .*pass --allow-outside"

CASES: list[Case] = [
    # the dataset directory and its CSV files
    Case("consensus/dataset-dir-missing", CONSENSUS, lambda ws: [str(ws.root / "nope")], 2,
         r"nope: dataset directory not found \(make one with"),
    Case("consensus/images-csv-missing", CONSENSUS, dataset(), 2, r"images\.csv: file not found; every dataset",
         lambda ws: (ws.dataset() / IMG).unlink()),
    Case("consensus/empty-csv", CONSENSUS, dataset(), 2,
         r"annotations\.csv: file is empty; expected a header line image_id,rater,PN", text(ANN, lambda t: "")),
    Case("consensus/header-only", CONSENSUS, dataset(), 2, r"annotations\.csv: header only, no data rows",
         text(ANN, lambda t: t.split("\n")[0] + "\n")),
    Case("consensus/semicolon-separated", CONSENSUS, dataset(), 2,
         r"images\.csv: line 1: it looks ';'-separated; the contract is comma-separated",
         text(IMG, lambda t: t.replace(",", ";"))),
    Case("consensus/latin-1", CONSENSUS, dataset(), 2,
         r"images\.csv: line 4, column 33 \(byte \d+\): not UTF-8 \(byte 0xe1.*'syn_00002,images/syn_00002\.png,"
         r"Cádiz'.*re-save the file as UTF-8",
         steps(cell(IMG, 4, "source", "Cádiz"), text(IMG, lambda t: t.encode("latin-1")))),
    Case("consensus/utf-16", CONSENSUS, dataset(), 2, r"images\.csv: line 1, column 1 \(byte 0\).*UTF-16.*re-save",
         text(IMG, lambda t: t.encode("utf-16"))),
    Case("folds/latin-1", FOLDS, dataset(), 2, r"annotations\.csv: line 6, column \d+ .*not UTF-8",
         steps(cell(ANN, 6, "rater", "Müller"), text(ANN, lambda t: t.encode("latin-1")))),
    Case("consensus/missing-column", CONSENSUS, dataset(), 2,
         r"images\.csv: line 1: missing column\(s\) \['source'\]; the header must contain image_id,image,source",
         rows(IMG, lambda t: [r.pop() for r in t])),
    Case("consensus/unknown-column", CONSENSUS, dataset(), 2,
         r"annotations\.csv: line 1: unknown column\(s\) \['XX'\].*rename or drop them",
         rows(ANN, lambda t: [r.append("XX" if i == 0 else "0") for i, r in enumerate(t)])),
    Case("consensus/repeated-column", CONSENSUS, dataset(), 2,
         r"annotations\.csv: line 1: column\(s\) \['PN'\] appear more than once; keep one",
         rows(ANN, lambda t: [r.append(r[2]) for r in t])),
    Case("consensus/too-many-fields", CONSENSUS, dataset(), 2,
         r"annotations\.csv: line 7: 10 fields, but the header \(line 1\) has 9 .*a value holding a comma must be "
         r"in double quotes", rows(ANN, lambda t: t[6].append("1"))),
    Case("consensus/too-few-fields", CONSENSUS, dataset(), 2,
         r"annotations\.csv: line 7: 8 fields, but the header \(line 1\) has 9 .*a blank value still needs its "
         r"comma", rows(ANN, lambda t: t[6].pop())),
    Case("folds/too-few-fields", FOLDS, dataset(), 2, r"images\.csv: line 5: 2 fields, but the header",
         rows(IMG, lambda t: t[4].pop())),
    Case("consensus/line-after-quoted-newline", CONSENSUS, dataset(), 2,
         r"images\.csv: line 8: file .*nope\.png does not exist",  # line 7 before the quoted value got a break
         steps(cell(IMG, 7, "image", "images/nope.png"), line(IMG, 3, 'syn_00001,images/syn_00001.png,"centre 2\n'
                                                                  'photographed twice"'))),
    Case("consensus/unclosed-quote", CONSENSUS, dataset(), 2,
         r"annotations\.csv: line 9: malformed CSV \(unexpected end of data\); a value holding a comma, quote",
         line(ANN, 9, 'syn_00001,"derm_1,0,0,0,0,0,0,0')),
    # values and keys
    Case("consensus/bad-value", CONSENSUS, dataset(), 2,
         r"annotations\.csv: column MG, line 6: value 'yes' is not 1, 0 or blank", cell(ANN, 6, "MG", "yes")),
    Case("consensus/blank-image-id", CONSENSUS, dataset(), 2, r"images\.csv: blank image_id on line 5",
         cell(IMG, 5, "image_id", "")),
    Case("consensus/blank-rater", CONSENSUS, dataset(), 2, r"annotations\.csv: blank rater on line 3",
         cell(ANN, 3, "rater", "")),
    Case("consensus/image-id-climbing-out", CONSENSUS, dataset(), 2,
         r"images\.csv: line 3: image_id '\.\./\.\./\.\./\.\./tmp/x' holds a path separator.*ids become file names",
         steps(cell(IMG, 3, "image_id", "../../../../tmp/x"),
               rows(ANN, lambda t: [r.__setitem__(0, "../../../../tmp/x") for r in t if r[0] == "syn_00001"]))),
    Case("folds/image-id-with-bidi-override", FOLDS, dataset(), 2,
         r"images\.csv: line 4: image_id 'syn_\\u202e00002' holds .*a bidirectional character",
         cell(IMG, 4, "image_id", "syn_\u202e00002")),
    Case("consensus/image-id-hidden", CONSENSUS, dataset(), 2,
         r"images\.csv: line 5: image_id '\.\.' starts with '\.'", cell(IMG, 5, "image_id", "..")),
    Case("consensus/duplicate-image-id", CONSENSUS, dataset(), 2,
         r"images\.csv: duplicate image_id \['syn_00002'\] on lines 4, 5; keep one row each",
         cell(IMG, 5, "image_id", "syn_00002")),
    Case("consensus/duplicate-rating", CONSENSUS, dataset(), 2,
         r"annotations\.csv: duplicate image_id\+rater \['syn_00000', '\w+'\] on lines 2, \d+; keep one row each",
         rows(ANN, lambda t: t.append(list(t[1])))),
    Case("consensus/unknown-image", CONSENSUS, dataset(), 2,
         r"annotations\.csv: line 5: image_id 'ghost' is not in images\.csv; add the image or drop",
         cell(ANN, 5, "image_id", "ghost")),
    Case("consensus/image-nobody-rated", CONSENSUS, dataset(), 2,
         r"images\.csv: line 101: image 'syn_00099' has no row in annotations\.csv; annotate it or drop it",
         drop_rows(ANN, lambda r: r[0] != "syn_00099")),
    Case("folds/every-code-blank", FOLDS, dataset(), 2,
         r"images\.csv: line 6: image 'syn_00004' has every code blank in annotations\.csv and no diagnosis.*rate "
         r"it or give its diagnosis",
         rows(ANN, lambda t: [r.__setitem__(slice(2, None), [""] * 7) for r in t if r[0] == "syn_00004"])),
    # image files
    Case("consensus/image-missing", CONSENSUS, dataset(), 2,
         FILE_LINE_FIX + r"file .*nope\.png does not exist; fix the path or add the file",
         cell(IMG, 3, "image", "images/nope.png")),
    Case("consensus/image-path-blank", CONSENSUS, dataset(), 2, FILE_LINE_FIX + r"blank image path",
         cell(IMG, 3, "image", "")),
    Case("consensus/image-path-folder", CONSENSUS, dataset(), 2,
         FILE_LINE_FIX + r"file .*images is not a file; fix the path", cell(IMG, 3, "image", "images")),
    Case("consensus/image-path-nul", CONSENSUS, dataset(), 2, FILE_LINE_FIX + r"image path .* holds a NUL character",
         cell(IMG, 3, "image", "images/syn_00001.png\0")),
    Case("consensus/image-empty", CONSENSUS, dataset(), 2,
         FILE_LINE_FIX + r"file .*syn_00001\.png is empty \(0 bytes\); replace it or drop its row",
         file("images/syn_00001.png", lambda p: b"")),
    Case("consensus/image-corrupt", CONSENSUS, dataset(), 2,
         FILE_LINE_FIX + r"cannot read image .*syn_00001\.png \(corrupt PNG image.*re-export it",
         file("images/syn_00001.png", lambda p: b"\x89PNG\r\n\x1a\n not really")),
    Case("consensus/image-truncated-jpeg", CONSENSUS, dataset(), 2,
         FILE_LINE_FIX + r"cannot read image .*syn_00001\.jpg \(corrupt or truncated image.*re-export it",
         truncated_jpeg),
    Case("folds/image-truncated-after-labels", FOLDS, dataset(), 2,  # labels.csv and splits.csv up to date
         FILE_LINE_FIX + r"cannot read image .*syn_00001\.png \(corrupt or truncated image",
         file("images/syn_00001.png", half)),
    Case("consensus/image-not-an-image", CONSENSUS, dataset(), 2,
         FILE_LINE_FIX + r"cannot read image .*syn_00001\.png \(not an image",
         file("images/syn_00001.png", lambda p: b"id,name\n1,x\n")),
    Case("consensus/image-animated-gif", CONSENSUS, dataset(), 2,
         FILE_LINE_FIX + r"cannot read image .*syn_00001\.gif \(an animated or multi-frame image \(2 frames\)",
         steps(animated_gif, cell(IMG, 3, "image", "images/syn_00001.gif"))),
    # paths leaving the dataset
    Case("consensus/image-path-dotdot", CONSENSUS, dataset(), 2,
         FILE_LINE_FIX + r"image path '\.\./elsewhere/secret\.png' climbs out of the dataset with '\.\.' "
         r"to .*secret\.png, " + OUTSIDE_FIX,
         steps(outside_image, cell(IMG, 3, "image", "../elsewhere/secret.png"))),
    Case("consensus/image-path-absolute", CONSENSUS, dataset(), 2,
         FILE_LINE_FIX + r"image path '/etc/passwd' is absolute, but paths are relative to the dataset directory",
         cell(IMG, 3, "image", "/etc/passwd")),
    Case("consensus/image-symlink-outside", CONSENSUS, dataset(), 2,
         FILE_LINE_FIX + r"image path 'images/syn_00001\.png' leads through a symbolic link to .*secret\.png, "
         + OUTSIDE_FIX, symlink("images/syn_00001.png", outside_image)),
    Case("folds/images-folder-symlink-outside", FOLDS, dataset(), 2,
         r"images\.csv: line 2: image path 'images/syn_00000\.png' leads through a symbolic link to "
         r".*moved/syn_00000\.png, " + OUTSIDE_FIX, symlink("images", lambda ws: ws.root / "moved")),
    Case("consensus/mask-symlink-outside", CONSENSUS, dataset(), 2,
         r"masks/(syn_\d+)\.png: mask path 'masks/\1\.png' leads through a symbolic link to .*secret\.png, "
         + OUTSIDE_FIX, symlink(first_mask, outside_image)),
    # masks
    Case("consensus/mask-size-mismatch", CONSENSUS, dataset(), 2,
         r"masks/syn_\d+\.png: mask is 10x10 but its image is 64x64; masks must have the image's size",
         mask(first_mask, (10, 10))),
    Case("consensus/mask-upper-case-suffix", CONSENSUS, dataset(), 2,  # a .PNG mask is read, not ignored
         r"masks/syn_00005_lesion\.PNG: mask is 10x10 but its image is 64x64", mask("syn_00005_lesion.PNG", (10, 10))),
    Case("consensus/mask-unknown-image", CONSENSUS, dataset(), 2,
         r"masks/ghost_AT\.png: no image 'ghost' in images\.csv; masks are named <image_id>\.png",
         mask("ghost_AT.png")),
    Case("consensus/mask-jpeg", CONSENSUS, dataset(), 2,
         r"masks/syn_00005\.jpg: masks must be PNG \(lossless\); convert it to syn_00005\.png",
         mask("syn_00005.jpg", fmt="JPEG")),
    Case("consensus/mask-twice", CONSENSUS, dataset(), 2,
         r"masks/(syn_\d+)\.png: a second mask for '\1' all \(also \1\.PNG\); keep one",
         mask(lambda ws: first_mask(ws)[:-3] + "PNG")),
    Case("consensus/masks-not-a-folder", CONSENSUS, dataset(), 2, r"masks: not a folder", masks_file),
    Case("consensus/mask-truncated", CONSENSUS, dataset(), 2,
         r"masks/syn_\d+\.png: cannot read mask .*\.png \(corrupt or truncated.*re-export it as PNG",
         file(first_mask, half)),
    # ISIC 2019 conversion
    Case("isic/out-exists", ISIC, isic_args(), 2,
         r"out exists: choose a new --out \(the conversion never overwrites a directory\)", steps(isic, existing_out)),
    Case("isic/ground-truth-missing", ISIC, isic_args(), 2, r"GroundTruth\.csv: file not found",
         steps(isic, lambda ws: (ws.root / "isic/GroundTruth.csv").unlink())),
    Case("isic/images-dir-missing", ISIC, lambda ws: [str(ws.root / "isic/GroundTruth.csv"), str(ws.root / "no"),
                                                       "--out", str(ws.root / "out")], 2,
         r"no: not a directory; point IMAGES_DIR at ISIC_2019_Training_Input", isic),
    Case("isic/not-one-hot", ISIC, isic_args(), 2,
         r"GroundTruth\.csv: line 4: expected exactly one 1\.0 among \['MEL'",
         steps(isic, isic_gt(4, "ISIC_0000002,1.0,1.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0"))),
    Case("isic/too-many-fields", ISIC, isic_args(), 2,
         r"GroundTruth\.csv: line 3: 11 fields, but the header \(line 1\) has 10",
         steps(isic, isic_gt(3, "ISIC_0000001,0.0,1.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0"))),
    Case("isic/image-missing", ISIC, isic_args(), 2,
         r"GroundTruth\.csv: line 5: no image file for 'ISIC_0000003' in .*Input \(tried \.jpg/\.jpeg/\.png, any case\)",
         steps(isic, lambda ws: (ws.root / "isic/Input/ISIC_0000003.jpg").unlink())),
    Case("isic/image-a-symlink-leading-out", ISIC, isic_args(), 2,
         r"GroundTruth\.csv: line 5: .*ISIC_0000003\.jpg resolves to .*secret\.png, outside the folder\(s\) given",
         steps(isic, outside_image, lambda ws: (ws.root / "isic/Input/ISIC_0000003.jpg").unlink(),
               lambda ws: (ws.root / "isic/Input/ISIC_0000003.jpg").symlink_to(ws.root / "elsewhere/secret.png"))),
    Case("isic/folder-named-like-an-image", ISIC, isic_args(), 2,
         r"GroundTruth\.csv: line 5: no image file for 'ISIC_0000003'",
         steps(isic, lambda ws: (ws.root / "isic/Input/ISIC_0000003.jpg").unlink(),
               lambda ws: (ws.root / "isic/Input/ISIC_0000003.jpg").mkdir())),
    # merging datasets
    Case("merge/out-exists", MERGE, merge_args(), 2, r"out exists: choose a new --out \(merging never overwrites",
         steps(two_datasets, existing_out)),
    Case("merge/same-names", MERGE, lambda ws: [str(ws.root / "ds"), str(ws.root / "ds"), "--out", str(ws.root / "out")],
         2, r"--names \['ds', 'ds'\]: give one distinct name per dataset", two_datasets),
    Case("merge/name-with-a-path", MERGE, merge_args("--names", "a,../b"), 2,
         r"--names \['\.\./b'\]: a name is letters, digits", two_datasets),
    Case("merge/source-truncated-image", MERGE, merge_args(), 2,
         r"ds2/images\.csv: line 3: cannot read image .*syn_00001\.png \(corrupt or truncated",
         steps(two_datasets, lambda ws: (ws.root / "ds2/images/syn_00001.png").write_bytes(
             half(ws.root / "ds2/images/syn_00001.png")))),
    Case("merge/source-path-outside", MERGE, merge_args(), 2,
         r"ds/images\.csv: line 3: image path '\.\./elsewhere/secret\.png' climbs out",
         steps(two_datasets, outside_image, cell(IMG, 3, "image", "../elsewhere/secret.png"))),
    # numeric options of the dataset tools (argparse names the option, exit 2)
    Case("consensus/max-iter-zero", CONSENSUS, dataset("--max-iter", "0"), 2,
         r"argument --max-iter: '0': expected a whole number in \[1, 1000000\]"),
    Case("folds/k-one", FOLDS, dataset("--k", "1"), 2, r"argument --k: '1': expected a whole number in \[2, 100\]"),
    Case("synthetic/out-holding-the-users-files", SYNTHETIC, lambda ws: ["--out", str(ws.root / "out")], 2,
         r"--out .*out exists and holds files bcc\.data\.synthetic did not write", existing_out),
    Case("synthetic/out-dot", SYNTHETIC, lambda ws: ["--out", "."], 2,
         r"--out .* exists and holds files bcc\.data\.synthetic did not write", existing_out),
    Case("synthetic/out-a-file", SYNTHETIC, lambda ws: ["--out", str(ws.root / "out" / "precious.txt")], 2,
         r"--out .*precious\.txt exists and is not a folder", existing_out),
    Case("synthetic/size-too-large", SYNTHETIC, lambda ws: ["--out", str(ws.root / "new"), "--size", "100000"], 2,
         r"argument --size: '100000': expected a whole number in \[32, 4096\]"),
    Case("synthetic/n-zero", SYNTHETIC, lambda ws: ["--out", str(ws.root / "new"), "--n", "0"], 2,
         r"argument --n: '0': expected a whole number in \[1, 1000000\]"),
    # said, not refused: the same picture under two ids (kept in one fold: tests/test_folds.py)
    Case("consensus/two-ids-one-file", CONSENSUS, dataset(), 0,
         r"warning: .*images\.csv: 1 picture\(s\) appear under more than one image_id \(the same file, or the same "
         r"bytes\): syn_00001, syn_00002; each set is kept in one fold by bcc\.folds",
         cell(IMG, 4, "image", "images/syn_00001.png"), writes_nothing=False),
    Case("folds/same-bytes-under-two-ids", FOLDS, dataset(), 0,
         r"warning: .*1 picture\(s\) appear under more than one image_id .*: syn_00001, syn_00002",
         file("images/syn_00002.png", lambda p: (p.parent / "syn_00001.png").read_bytes()), writes_nothing=False),
    Case("merge/the-same-images-twice", MERGE, merge_args(), 0,
         r"warning: .*out/images\.csv: 100 picture\(s\) appear under more than one image_id .*: ds_syn_00000, "
         r"ds2_syn_00000", two_datasets, writes_nothing=False),
    # said, not refused: statistics that cannot be estimated (exit 0, a warning, labels written)
    Case("consensus/rater-with-one-rating", CONSENSUS, dataset(), 0,
         r"warning: rater 'lone': sensitivity/specificity undefined for every code \(1 rated image, fewer than 2\); "
         r"NaN in rater_quality\.csv", rows(ANN, lambda t: t.append(["syn_00000", "lone", *"1010101"])),
         writes_nothing=False),
    Case("consensus/rater-without-ratings", CONSENSUS, dataset(), 0,
         r"warning: rater 'silent': sensitivity/specificity undefined for every code \(no ratings\)",
         rows(ANN, lambda t: t.append(["syn_00007", "silent", *[""] * 7])), writes_nothing=False),
    Case("consensus/kappa-undefined", CONSENSUS, dataset(), 0,
         r"warning: Fleiss kappa undefined for SW: fewer than 2 raters with 2\+ ratings",
         rows(ANN, lambda t: [r.__setitem__(7, "") for r in t[1:] if r[1] != t[1][1]]), writes_nothing=False),
]
