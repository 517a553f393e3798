"""The public-dataset adapters (HAM10000 / ISIC 2018 Task 3, Derm7pt, PH2, and bcc.data.public) on tiny
copies of each official layout (tests/helpers/public_sets.py): converted, then read by the consensus and
the folds as any dataset is."""
import warnings

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageFile

from bcc.core.patterns import CODES
from bcc.data import derm7pt, ham10000, ph2, public
from bcc.data.consensus import RaterWarning, ensure_labels
from bcc.data.contract import DatasetError, load_dataset
from bcc.data.errors import DatasetWarning
from bcc.data.folds import ensure_splits
from tests.helpers import public_sets

OTHER = [c for c in CODES if c not in ("PN", "AT")]


def labels_and_folds(root, k=3):
    """labels.csv and splits.csv of a converted set, joined with its images.csv."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RaterWarning)  # single raters: undefined statistics, said elsewhere
        labels = ensure_labels(root)
        splits = ensure_splits(root, k=k)
    images = pd.read_csv(root / "images.csv", dtype=str, keep_default_na=False)
    return labels.merge(splits, on="image_id").merge(images, on="image_id")


def test_ham10000_official_layout_two_part_folders(tmp_path, capsys):
    release = public_sets.ham10000(tmp_path / "HAM10000")
    out = tmp_path / "ham"
    assert ham10000.main([str(release), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "HAM10000_images_part_1/, HAM10000_images_part_2/" in printed
    assert "ham10000: 12 images → " in printed and "(BCC 4, non-BCC 8;" in printed and "9 groups" in printed
    table = labels_and_folds(out)
    dx = dict(zip(public_sets.ham_ids(), (d for _, d in public_sets.HAM_ROWS), strict=True))
    assert table["bcc"].tolist() == [int(dx[i] == "bcc") for i in table["image_id"]]
    assert table[list(CODES)].isna().all().all()  # nobody rated the patterns: unknown, never 0
    assert table["group"].tolist() == [dict(zip(public_sets.ham_ids(), (g for g, _ in public_sets.HAM_ROWS), strict=True))[i]
                                       for i in table["image_id"]]
    assert table.groupby("group")["fold"].nunique().max() == 1  # a lesion's images in one fold
    assert table["aspect"].eq("").all()  # 4:3 files: their own proportions
    assert (out / "images" / "ISIC_0024311.JPG").samefile(release / "HAM10000_images_part_2" / "ISIC_0024311.JPG")
    annotations = pd.read_csv(out / "annotations.csv", dtype=str)
    assert set(annotations["rater"]) == {"ham10000"} and len(annotations) == 12


def test_ham10000_squeezed_copy_gets_its_aspect_without_decoding(tmp_path, monkeypatch):
    release = public_sets.ham10000(tmp_path / "HAM10000", parts=1, square=True)

    def no_decode(self):
        raise AssertionError("an image was decoded to read its size")

    with monkeypatch.context() as m:
        m.setattr(ImageFile.ImageFile, "load", no_decode)
        plan = ham10000.plan(ham10000.choose_layout(release))
    assert plan.images["aspect"].eq("1.3333").all()
    (release / "HAM10000_images" / "ISIC_0024306.jpg").unlink()
    public_sets.picture(release / "HAM10000_images" / "ISIC_0024306.jpg", (32, 24), 0)  # one 4:3 file among squares
    plan = ham10000.plan(ham10000.choose_layout(release))
    assert plan.images.set_index("image_id")["aspect"].to_dict()["ISIC_0024306"] == ""
    assert plan.images["aspect"].eq("1.3333").sum() == 11
    assert "aspect" not in ham10000.plan(ham10000.choose_layout(release), aspect="none").images
    assert ham10000.plan(ham10000.choose_layout(release), aspect="3:2").images["aspect"].eq("1.5000").all()
    out = tmp_path / "ham"
    assert ham10000.main([str(release / "HAM10000_metadata.csv"), str(release / "HAM10000_images"),
                          "--out", str(out)]) == 0
    assert load_dataset(out).images["aspect"].value_counts().to_dict() == {"1.3333": 11, "": 1}


def test_isic2018_training_and_test_layouts(tmp_path, capsys):
    train = public_sets.isic2018_training(tmp_path / "isic2018")
    public_sets.isic2018_test(tmp_path / "isic2018")
    assert ham10000.main([str(train), "--out", str(tmp_path / "x")]) == 2  # both layouts there: which one?
    assert "holds 2 releases" in capsys.readouterr().err and not (tmp_path / "x").exists()
    assert ham10000.main([str(train), "--layout", "isic2018_train", "--out", str(tmp_path / "train")]) == 0
    table = labels_and_folds(tmp_path / "train")
    lesion = dict(zip(public_sets.ham_ids(), (g for g, _ in public_sets.HAM_ROWS), strict=True))
    assert table["group"].tolist() == [lesion[i] for i in table["image_id"]]  # the lesion groupings
    assert table["source"].eq("ham10000").all() and table["bcc"].sum() == 4
    assert table.groupby("group")["fold"].nunique().max() == 1
    assert ham10000.main([str(train), "--layout", "isic2018_test", "--out", str(tmp_path / "test")]) == 0
    test = labels_and_folds(tmp_path / "test", k=2)
    assert test["source"].eq("isic2018_test").all() and (test["group"] == test["image_id"]).all()
    assert test["bcc"].tolist() == [1, 0, 0, 1, 0, 0]
    assert pd.read_csv(tmp_path / "test" / "annotations.csv")["rater"].eq("isic2018_test").all()


def test_derm7pt_official_release(tmp_path, capsys):
    release = public_sets.derm7pt(tmp_path / "release_v0")
    out = tmp_path / "derm7pt"
    assert derm7pt.main([str(release), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert (f"warning: {release / 'meta' / 'meta.csv'}: line 7: derm 'FCl/Fcl068.jpg' is spelled 'FCL/Fcl068.jpg' on "
            f"disk") in captured.err
    assert "official split kept as official_split.csv (image_id,split): train 5, valid 2, test 3" in captured.out
    assert "derm7pt: 10 images" in captured.out and "(BCC 3, non-BCC 7; PN known 10, positive 5; AT known 10, " \
                                                      "positive 2; 10 groups)" in captured.out
    table = labels_and_folds(out, k=2).set_index("image_id")
    rows = {f"{d.split('/')[0].upper() if d.startswith('FCl') else d.split('/')[0]}_{d.split('/')[1][:-4]}": r
            for *r, d in public_sets.DERM_ROWS}
    assert sorted(table.index) == sorted(rows)  # the dermoscopic images only, not the clinical photographs
    for image_id, (diagnosis, network, vessels) in rows.items():
        assert table.at[image_id, "bcc"] == int(diagnosis == "basal cell carcinoma")
        assert table.at[image_id, "PN"] == int(network != "absent")
        assert table.at[image_id, "AT"] == int(vessels == "arborizing")  # dotted, hairpin, …: 0
    assert table[OTHER].isna().all().all()
    assert table.at["FCL_Fcl068", "image"] == "images/FCL/Fcl068.jpg"
    assert table["group"].tolist() == [str(i + 1) for i in range(10)]  # case_num
    split = pd.read_csv(out / "official_split.csv")
    ids = list(rows)
    assert {s: sorted(split.loc[split["split"] == s, "image_id"]) for s in public_sets.DERM_SPLIT} == \
        {s: sorted(ids[i] for i in idx) for s, idx in public_sets.DERM_SPLIT.items()}


def test_derm7pt_cropped_copy_has_no_case_num_nor_split(tmp_path, capsys):
    release = public_sets.derm7pt(tmp_path / "derm7pt", official=False)
    assert derm7pt.main([str(release), "--out", str(tmp_path / "out")]) == 0
    images = load_dataset(tmp_path / "out").images
    assert (images["group"] == images["image_id"]).all() and not (tmp_path / "out" / "official_split.csv").exists()
    assert "official split" not in capsys.readouterr().out


@pytest.mark.parametrize("tables", [("xlsx",), ("txt",)])
def test_ph2_from_either_table(tmp_path, tables):
    folder = public_sets.ph2(tmp_path / "ph2", tables)
    out = tmp_path / "out"
    assert ph2.main([str(tmp_path / "ph2"), "--out", str(out)]) == 0
    ds = load_dataset(out)
    assert set(ds.masks) == set(public_sets.PH2_ROWS) and all(set(m) == {"lesion"} for m in ds.masks.values())
    mask = np.asarray(Image.open(out / "masks" / "IMD003_lesion.png"))
    assert mask.shape == public_sets.PH2_SIZE[::-1] and set(np.unique(mask)) == {0, 255}
    assert (out / "images" / "IMD003.bmp").samefile(folder / "PH2 Dataset images/IMD003/IMD003_Dermoscopic_Image/IMD003.bmp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RaterWarning)
        table = ensure_labels(out)
    assert table["bcc"].eq(0).all() and table["PN"].eq(1).all()  # T and AT (atypical): a network is present
    assert table[[c for c in CODES if c != "PN"]].isna().all().all()  # PH2's "AT" is not the AT code
    with pytest.raises(DatasetError, match=r"fewer positives than folds \(k=2\) for bcc \(0\)"):
        ensure_splits(out, k=2)  # no BCC: PH2 is folded only merged with other sets


def test_ph2_tables_agree_and_a_copy_links_its_png_masks(tmp_path):
    folder = public_sets.ph2(tmp_path / "ph2", copy=True)
    xlsx, txt = ph2.read_table(folder / "PH2_dataset.xlsx"), ph2.read_table(folder / "PH2_dataset.txt")
    assert xlsx.index.tolist() == list(range(14, 20)) and txt.index.tolist() == list(range(2, 8))  # as Excel / an editor
    pd.testing.assert_frame_equal(xlsx.reset_index(drop=True), txt.reset_index(drop=True))
    assert xlsx["clinical"].tolist() == ["common nevus"] * 2 + ["atypical nevus"] * 2 + ["melanoma"] * 2
    assert ph2.main([str(folder), "--out", str(tmp_path / "out"), "--table", str(folder / "PH2_dataset.txt")]) == 0
    lesion = "PH2 Dataset images/IMD058/IMD058_lesion/IMD058_lesion.png"
    assert (tmp_path / "out" / "masks" / "IMD058_lesion.png").samefile(folder / lesion)


def test_public_finds_converts_and_merges_every_set(tmp_path, capsys):
    data = tmp_path / "downloads"
    public_sets.ham10000(data / "HAM10000")
    public_sets.derm7pt(data / "derm7pt" / "release_v0")
    public_sets.ph2(data / "PH2", ("txt",))
    out = tmp_path / "real"
    counts = public.prepare_public(data, out)
    printed = capsys.readouterr().out
    assert f"found ph2: {data / 'PH2' / 'PH2Dataset' / 'PH2_dataset.txt'}" in printed
    assert f"found derm7pt: {data / 'derm7pt' / 'release_v0'}" in printed
    assert sorted(p.name for p in out.iterdir()) == ["derm7pt", "ham10000", "merged", "ph2"]
    assert counts.loc["merged", "images"] == 28 and counts.loc["ham10000", "bcc"] == 4
    assert printed.count(" 28 ") >= 1 and "pn_known" in printed  # the per-source table is printed
    assert public.main([str(data), "--out", str(out)]) == 2  # an existing --out
    assert counts.loc["derm7pt", "at_positive"] == 2 and counts.loc["ph2", "pn_known"] == 6
    merged = labels_and_folds(out / "merged", k=2)
    assert len(merged) == 28 and merged["image_id"].str.split("_").str[0].value_counts().to_dict() == {
        "ham10000": 12, "derm7pt": 10, "ph2": 6}
    assert merged["bcc"].sum() == 4 + 3
    assert merged.groupby("group")["fold"].nunique().max() == 1
    assert len(load_dataset(out / "merged").masks) == 6  # PH2's lesion masks
    assert (out / "derm7pt" / "official_split.csv").exists()
    assert (out / "merged" / "ham10000" / "images" / "ISIC_0024306.jpg").samefile(
        data / "HAM10000" / "HAM10000_images_part_1" / "ISIC_0024306.jpg")


def test_public_says_which_set_is_missing_and_refuses_when_none_is_there(tmp_path, capsys):
    data = tmp_path / "downloads"
    public_sets.derm7pt(data / "derm7pt")
    table = public.prepare_public(data, tmp_path / "real")
    printed = capsys.readouterr().out
    assert "not found: ham10000 (looked for HAM10000_metadata.csv" in printed and "not found: ph2" in printed
    assert table.index.tolist() == ["derm7pt", "merged"] and table.loc["merged", "images"] == 10
    assert public.main([str(tmp_path / "real" / "ph2"), "--out", str(tmp_path / "x")]) == 2
    assert public.main([str(data / "derm7pt" / "images"), "--out", str(tmp_path / "x")]) == 2
    assert "none of the supported sets found" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_a_failure_half_way_leaves_nothing_behind(tmp_path, monkeypatch):
    from bcc.data import conversion

    data = tmp_path / "downloads"
    public_sets.ham10000(data / "HAM10000")
    public_sets.ph2(data / "PH2")
    placed = []

    def fail_on_the_fifth(src, dst, how):
        placed.append(dst)
        if len(placed) == 5:
            raise OSError(28, "No space left on device")
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.hardlink_to(src)

    monkeypatch.setattr(conversion, "place_file", fail_on_the_fifth)
    with pytest.raises(OSError, match="No space left"):
        public.prepare_public(data, tmp_path / "real")
    with pytest.raises(OSError, match="No space left"):
        placed.clear()
        ham10000.main([str(data / "HAM10000"), "--out", str(tmp_path / "ham"), "--debug"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["downloads"]  # no output, no temporary folder


def test_files_outside_the_given_folders_are_read_only_when_allowed(tmp_path, capsys):
    release = public_sets.derm7pt(tmp_path / "release_v0", official=False)
    elsewhere = public_sets.picture(tmp_path / "elsewhere" / "x.jpg", (24, 24), 9)
    meta = pd.read_csv(release / "meta" / "meta.csv")
    meta.loc[1, "derm"] = "../../elsewhere/x.jpg"
    meta.to_csv(release / "meta" / "meta.csv", index=False)
    assert derm7pt.main([str(release), "--out", str(tmp_path / "out")]) == 2
    assert "line 3: " in capsys.readouterr().err
    assert derm7pt.main([str(release), "--out", str(tmp_path / "out"), "--allow-outside"]) == 0
    images = load_dataset(tmp_path / "out").images.set_index("image_id")
    assert images.at["outside_x", "image"] == "images/outside/x.jpg"  # inside the new dataset all the same
    assert (tmp_path / "out" / "images" / "outside" / "x.jpg").samefile(elsewhere)


def test_public_with_symlinks_leaves_no_link_into_its_temporary_folder(tmp_path):
    data = tmp_path / "downloads"
    public_sets.ph2(data / "PH2")  # BMP masks: converted, so written into the new dataset, not linked
    public.prepare_public(data, tmp_path / "real", how="symlink")
    merged = load_dataset(tmp_path / "real" / "merged", allow_outside=True)
    assert len(merged.masks) == 6 and all(m["lesion"].resolve().is_file() for m in merged.masks.values())
    assert merged.image_path("ph2_IMD003").resolve() == (
        data / "PH2" / "PH2Dataset" / "PH2 Dataset images" / "IMD003" / "IMD003_Dermoscopic_Image" / "IMD003.bmp")


def test_symlinked_and_copied_conversions(tmp_path, capsys):
    release = public_sets.ph2(tmp_path / "ph2")
    assert ph2.main([str(release), "--out", str(tmp_path / "soft"), "--symlink"]) == 0
    assert "pass --allow-outside" in capsys.readouterr().out
    assert (tmp_path / "soft" / "images" / "IMD003.bmp").is_symlink()
    with pytest.raises(DatasetError, match="leads through a symbolic link"):
        load_dataset(tmp_path / "soft")
    assert ph2.main([str(release), "--out", str(tmp_path / "hard"), "--copy"]) == 0
    copied = tmp_path / "hard" / "images" / "IMD003.bmp"
    assert not copied.is_symlink() and copied.stat().st_nlink == 1


def test_a_renamed_table_is_read_as_its_columns_say(tmp_path, capsys):
    """A copy's table named ``…_latest.csv`` is HAM10000's metadata by its ``dx`` column, whatever its name holds;
    a renamed one-hot ground truth is the test set when ``--layout`` says so, the training set with its groupings."""
    ham = public_sets.ham10000(tmp_path / "ham")
    (ham / "HAM10000_metadata.csv").rename(ham / "HAM10000_metadata_latest_test.csv")
    assert ham10000.main([str(ham / "HAM10000_metadata_latest_test.csv"), str(ham / "HAM10000_images_part_1"),
                          str(ham / "HAM10000_images_part_2"), "--out", str(tmp_path / "a")]) == 0
    table = load_dataset(tmp_path / "a").images
    assert table["source"].eq("ham10000").all() and table["group"].str.startswith("HAM_").all()
    train = public_sets.isic2018_training(tmp_path / "isic")
    gt = train / "ISIC2018_Task3_Training_GroundTruth"
    (gt / "ISIC2018_Task3_Training_GroundTruth.csv").rename(gt / "GroundTruth_latest.csv")
    images = str(train / "ISIC2018_Task3_Training_Input")
    assert ham10000.main([str(gt / "GroundTruth_latest.csv"), images, "--layout", "isic2018_test",
                          "--out", str(tmp_path / "b")]) == 0
    assert load_dataset(tmp_path / "b").images["source"].eq("isic2018_test").all()
    assert ham10000.main([str(gt / "GroundTruth_latest.csv"), images, "--groupings",
                          str(train / "ISIC2018_Task3_Training_LesionGroupings.csv"), "--out", str(tmp_path / "c")]) == 0
    table = load_dataset(tmp_path / "c").images
    assert table["source"].eq("ham10000").all() and table["group"].str.startswith("HAM_").all()


@pytest.mark.parametrize("value", [0, 255])
def test_a_ph2_mask_that_marks_no_lesion_is_left_out(tmp_path, value):
    folder = public_sets.ph2(tmp_path / "ph2")
    mask = folder / "PH2 Dataset images/IMD016/IMD016_lesion/IMD016_lesion.bmp"
    Image.fromarray(np.full(public_sets.PH2_SIZE[::-1], value, np.uint8)).save(mask)
    with pytest.warns(DatasetWarning, match=r"1 lesion mask\(s\) mark no lesion \(IMD016"):
        plan = ph2.plan(folder / "PH2_dataset.xlsx")
    assert "masks/IMD016_lesion.png" not in {**plan.files, **plan.made}
    assert len(plan.made) + len(plan.files) == 2 * len(public_sets.PH2_ROWS) - 1  # every image, the other masks
