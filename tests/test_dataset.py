"""Each malformed input stops with a clear error naming file and line, and writes nothing."""
import io
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bcc.data import stamps
from bcc.data.cache import decoded_images
from bcc.data.consensus import ensure_labels
from bcc.data.contract import DatasetError, load_dataset, load_image_table
from bcc.data.table import read_table
from tests.helpers.datasets import make_dataset


@pytest.fixture
def ds(tmp_path):
    return make_dataset(tmp_path / "ds")


def edit_csv(path: Path, fn):
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    fn(df).to_csv(path, index=False)


def test_valid_dataset_loads(ds):
    d = load_dataset(ds)
    assert len(d.images) == 6 and len(d.annotations) == 18 and d.masks == {}


def _set(df, row, col, value):
    df.loc[row, col] = value
    return df


CASES = {
    "missing column": ("images.csv", lambda df: df.drop(columns=["source"]), r"missing column.*source"),
    "unknown code": ("annotations.csv", lambda df: df.assign(XX="0"), r"unknown column.*XX"),
    "bad value": ("annotations.csv", lambda df: _set(df, 4, "MG", "yes"), r"column MG, line 6: value 'yes'"),
    "duplicate image_id": ("images.csv", lambda df: pd.concat([df, df.iloc[[2]]]), r"duplicate image_id.*im2.*lines 4, 8"),
    "duplicate rating": ("annotations.csv", lambda df: pd.concat([df, df.iloc[[0]]]), r"duplicate image_id\+rater"),
    "unknown image": ("annotations.csv", lambda df: _set(df, 3, "image_id", "ghost"), r"line 5: image_id 'ghost' is not"),
    "image without annotation": ("annotations.csv", lambda df: df[df.image_id != "im5"], r"im5.*has no row"),
    "missing image file": ("images.csv", lambda df: _set(df, 1, "image", "images/nope.png"), r"line 3: file .*nope.png does not exist"),
}


@pytest.mark.parametrize("case", CASES)
def test_malformed_csv_is_a_clear_error_and_writes_nothing(ds, case):
    name, fn, pattern = CASES[case]
    edit_csv(ds / name, fn)
    before = sorted(p.name for p in ds.iterdir())
    with pytest.raises(DatasetError, match=pattern) as err:
        ensure_labels(ds)
    assert name in str(err.value) or "images.csv" in str(err.value)
    assert sorted(p.name for p in ds.iterdir()) == before


def test_zero_byte_and_corrupt_images(ds):
    (ds / "images/im1.png").write_bytes(b"")
    with pytest.raises(DatasetError, match=r"line 3: .*im1.png is empty"):
        load_dataset(ds)
    (ds / "images/im1.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DatasetError, match=r"line 3: cannot read image .*im1.png"):
        load_dataset(ds)


def test_empty_csv_wrong_delimiter_and_encoding(ds):
    (ds / "annotations.csv").write_text("")
    with pytest.raises(DatasetError, match=r"annotations\.csv: file is empty"):
        load_dataset(ds)
    df = pd.read_csv(ds / "images.csv")
    df.to_csv(ds / "images.csv", sep=";", index=False)
    with pytest.raises(DatasetError, match=r"images.csv: line 1: it looks ';'-separated"):
        load_dataset(ds)
    df.assign(source=["c1", "c1", "Cádiz", "c1", "c1", "c1"]).to_csv(ds / "images.csv", index=False,
                                                                     encoding="latin-1")
    with pytest.raises(DatasetError, match=r"images.csv: line 4, column 21 \(byte \d+\): not UTF-8 \(byte 0xe1.*"
                                           r"the line says 'im2,images/im2.png,Cádiz'.*re-save"):
        load_dataset(ds)
    (ds / "images.csv").write_text("image_id,image,source\n", encoding="utf-16")
    with pytest.raises(DatasetError, match=r"line 1, column 1 \(byte 0\).*UTF-16"):
        load_dataset(ds)


def test_mask_size_must_match_image(ds):
    (ds / "masks").mkdir()
    Image.fromarray(np.zeros((16, 20), np.uint8)).save(ds / "masks/im0_AT.png")
    assert load_dataset(ds).masks == {"im0": {"AT": ds / "masks/im0_AT.png"}}
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(ds / "masks/im2.png")
    with pytest.raises(DatasetError, match=r"im2.png: mask is 10x10 but its image is 20x16"):
        load_dataset(ds)


def _rewrite(path: Path, line: int, text: str) -> None:
    """Replace physical line `line` (1 = header) of a file."""
    lines = path.read_text().split("\n")
    lines[line - 1] = text
    path.write_text("\n".join(lines))


@pytest.mark.parametrize("row, pattern", [
    ("im1,r0,0,0,0,0,0,0,0,1", r"line 5: 10 fields, but the header \(line 1\) has 9 .*double quotes"),
    ("im1,r0,0,0,0,0,0,0", r"line 5: 8 fields, but the header \(line 1\) has 9 .*blank value still needs its comma"),
])
def test_ragged_rows_are_refused_with_their_line(ds, row, pattern):
    _rewrite(ds / "annotations.csv", 5, row)
    with pytest.raises(DatasetError, match=r"annotations.csv: " + pattern):
        load_dataset(ds)


def test_lines_are_counted_as_an_editor_does(ds):
    """A quoted value spanning lines counts each line, and blank lines count too."""
    _rewrite(ds / "images.csv", 2, 'im0,images/im0.png,"centre 1\nwith a note"\n')  # +2 physical lines
    _rewrite(ds / "images.csv", 6, "im2,images/nope.png,c1")  # line 4 before the edit
    with pytest.raises(DatasetError, match=r"images.csv: line 6: file .*nope.png does not exist"):
        load_dataset(ds)
    (ds / "images.csv").write_text('image_id,image,source\r\nim0,images/im0.png,"open quote\r\nim1,x,y\r\n')
    with pytest.raises(DatasetError, match=r"images.csv: line 2: malformed CSV \(unexpected end of data\)"):
        load_dataset(ds)
    (ds / "images.csv").write_text("image_id,image,image\nim0,images/im0.png,c1\n")
    with pytest.raises(DatasetError, match=r"line 1: column\(s\) \['image'\] appear more than once"):
        load_dataset(ds)


def test_a_valid_file_with_crlf_quotes_and_blank_lines_reads_as_written(ds):
    (ds / "images.csv").write_text("image_id,image,source\r\n" + "".join(
        f'im{i},images/im{i}.png,"c, {i}"\r\n\r\n' for i in range(6)))
    d = load_dataset(ds)
    assert d.images["source"].tolist() == [f"c, {i}" for i in range(6)]
    assert d.images.index.tolist() == [2, 4, 6, 8, 10, 12]  # tables are indexed by their line


@pytest.fixture
def outside(tmp_path):
    """A valid image outside the dataset (what a hostile path would have bcc read)."""
    Image.fromarray(np.zeros((16, 20, 3), np.uint8)).save(tmp_path / "outside.png")
    return tmp_path / "outside.png"


@pytest.mark.parametrize("how", ["dotdot", "absolute", "symlink", "symlinked-folder"])
def test_paths_leaving_the_dataset_are_refused_unless_allowed(ds, outside, how):
    rel = {"dotdot": "../outside.png", "absolute": str(outside)}.get(how, "images/im1.png")
    if how == "symlink":
        (ds / "images/im1.png").unlink()
        (ds / "images/im1.png").symlink_to(outside)
    if how == "symlinked-folder":
        (ds / "images").rename(outside.parent / "moved")
        (ds / "images").symlink_to(outside.parent / "moved")
    edit_csv(ds / "images.csv", lambda df: _set(df, 1, "image", rel))
    why = {"dotdot": "climbs out of the dataset with '..'", "absolute": "is absolute"}.get(
        how, "leads through a symbolic link to .*, outside the dataset directory")
    line, rel = (2, "images/im0.png") if how == "symlinked-folder" else (3, rel)  # every image leaves: the first
    with pytest.raises(DatasetError, match=rf"images.csv: line {line}: image path '{re.escape(rel)}' {why}.*"
                                           r"--allow-outside"):
        load_dataset(ds)
    with pytest.raises(DatasetError, match=rf"line {line}: image path"):
        read_table(ds, splits=False)  # training's join refuses it too, even without decoding
    assert len(load_dataset(ds, allow_outside=True).images) == 6


def test_a_dotdot_that_stays_inside_and_a_symlinked_dataset_are_fine(ds, tmp_path):
    edit_csv(ds / "images.csv", lambda df: _set(df, 1, "image", "images/../images/im1.png"))
    (tmp_path / "link").symlink_to(ds)
    assert len(load_dataset(tmp_path / "link").images) == 6


def test_masks_leaving_the_dataset_are_refused(ds, tmp_path):
    (ds / "masks").mkdir()
    Image.fromarray(np.zeros((16, 20), np.uint8)).save(tmp_path / "m.png")
    (ds / "masks/im0.png").symlink_to(tmp_path / "m.png")
    with pytest.raises(DatasetError, match=r"masks/im0.png: mask path 'masks/im0.png' leads through a symbolic link"):
        load_dataset(ds)
    assert load_dataset(ds, allow_outside=True).masks == {"im0": {"all": ds / "masks/im0.png"}}
    (ds / "masks/im0.png").unlink()
    (ds / "masks").rmdir()
    (ds / "masks").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(DatasetError, match=r"folder path 'masks' leads through a symbolic link"):
        load_dataset(ds)


def _truncated_jpeg(path: Path) -> None:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 80, 3), dtype=np.uint8)).save(buf, "JPEG")
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])


def test_a_truncated_jpeg_is_caught_at_validation_naming_file_and_line(ds):
    _truncated_jpeg(ds / "images/im4.jpg")
    with Image.open(ds / "images/im4.jpg") as im:
        im.verify()  # what validation used to check: the truncation passes it
    edit_csv(ds / "images.csv", lambda df: _set(df, 4, "image", "images/im4.jpg"))
    with pytest.raises(DatasetError, match=r"images.csv: line 6: cannot read image .*im4.jpg \(corrupt or truncated"):
        ensure_labels(ds)
    with pytest.raises(DatasetError, match=r"line 6: cannot read image"):
        load_image_table(ds)  # the image table alone decodes them too
    assert not (ds / ".cache").exists() and not (ds / "labels.csv").exists()


def test_images_are_decoded_once_and_again_when_a_file_changes(ds, monkeypatch):
    decoded = []
    real = stamps.read_rgb
    monkeypatch.setattr(stamps, "read_rgb", lambda p, **kw: decoded.append(Path(p).name) or real(p, **kw))
    load_dataset(ds)
    assert sorted(decoded) == [f"im{i}.png" for i in range(6)] and (ds / ".cache/decoded.json").is_file()
    decoded.clear()
    load_dataset(ds)
    assert decoded == []  # the stamp holds: nothing decoded again
    # same size, same mtime, different content: the inode's ctime still tells
    path, st = ds / "images/im2.png", (ds / "images/im2.png").stat()
    data = bytearray(path.read_bytes())
    data[len(data) // 2:] = bytes(len(data) - len(data) // 2)
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.raises(DatasetError, match=r"line 4: cannot read image .*im2.png"):
        load_dataset(ds)
    assert decoded == ["im2.png"]


def test_validation_writes_nothing_when_it_fails(ds):
    edit_csv(ds / "annotations.csv", lambda df: _set(df, 4, "MG", "yes"))
    with pytest.raises(DatasetError):
        load_dataset(ds)
    assert not (ds / ".cache").exists()


def test_mask_suffix_case_and_format(ds):
    (ds / "masks").mkdir()
    Image.fromarray(np.zeros((16, 20), np.uint8)).save(ds / "masks/im0_AT.PNG", "PNG")
    Image.fromarray(np.zeros((16, 20), np.uint8)).save(ds / "masks/im1.Png", "PNG")
    (ds / "masks/.DS_Store").write_bytes(b"\0")
    assert load_dataset(ds).masks == {"im0": {"AT": ds / "masks/im0_AT.PNG"}, "im1": {"all": ds / "masks/im1.Png"}}
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(ds / "masks/im2_lesion.PNG", "PNG")
    with pytest.raises(DatasetError, match=r"im2_lesion.PNG: mask is 10x10 but its image is 20x16"):
        load_dataset(ds)
    (ds / "masks/im2_lesion.PNG").unlink()
    Image.fromarray(np.zeros((16, 20), np.uint8)).save(ds / "masks/im0_AT.png")
    with pytest.raises(DatasetError, match=r"a second mask for 'im0' AT"):
        load_dataset(ds)
    (ds / "masks/im0_AT.png").unlink()
    Image.fromarray(np.zeros((16, 20), np.uint8)).save(ds / "masks/im3.jpg")
    with pytest.raises(DatasetError, match=r"im3.jpg: masks must be PNG"):
        load_dataset(ds)
    (ds / "masks/im3.jpg").unlink()
    (ds / "masks/im3.png").write_bytes((ds / "masks/im1.Png").read_bytes()[:40])
    with pytest.raises(DatasetError, match=r"cannot read mask .*im3.png"):
        load_dataset(ds)


def test_the_training_decode_names_the_file_and_keeps_to_the_dataset(ds, outside):
    _truncated_jpeg(ds / "images/im4.jpg")
    rels = [f"images/im{i}.png" for i in range(4)]
    with pytest.raises(DatasetError, match=r"im4.jpg: cannot read image \(corrupt or truncated.*drop its row"):
        decoded_images(ds, [*rels, "images/im4.jpg"], 8, disk_cache=False)
    with pytest.raises(DatasetError, match=r"im9.png: cannot read image \(No such file"):
        decoded_images(ds, [*rels, "images/im9.png"], 8, disk_cache=False)
    with pytest.raises(DatasetError, match=r"image path '\.\./outside.png' climbs out"):
        decoded_images(ds, [*rels, "../outside.png"], 8, disk_cache=False)
    assert decoded_images(ds, [*rels, "../outside.png"], 8, disk_cache=False, allow_outside=True).shape == (5, 8, 8, 3)
