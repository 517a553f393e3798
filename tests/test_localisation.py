"""Table 4 (bcc.evaluation.localisation.table4 and its modules): the issue's checks on hand-made maps with a known
answer — a map equal to the mask beats every baseline, a centred map does not beat the centre baseline, a map hot
outside the mask is never significant —, Quantus against the project's own figures, the negative-logit map of a
predicted-non-BCC image against pytorch-grad-cam, and the report end to end on the session's smoke run."""
from __future__ import annotations

import shutil

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from scipy.ndimage import gaussian_filter

from bcc.cli import evaluate as evaluate_cli
from bcc.core.errors import BadInput
from bcc.core.patterns import OUTPUTS
from bcc.data.contract import load_dataset
from bcc.evaluation.localisation.baselines import centre_map, fit_mask, shuffled_pairs, uniform_map
from bcc.evaluation.localisation.faithfulness import LogitTarget
from bcc.evaluation.localisation.figure3 import figure3, figure_choice
from bcc.evaluation.localisation.quantus_metrics import localisation
from bcc.evaluation.localisation.records import (
    Table4Settings,
    image_records,
    map_masks,
    predicted_class_cams,
    predicted_signs,
)
from bcc.evaluation.localisation.table4 import PER_MAP, Table4, describe, mask_report
from bcc.evaluation.localisation.tables import baselines, faithfulness, per_head, statistics
from bcc.evaluation.pipeline import evaluate
from bcc.explanation.gradcam import gradcam_maps, postprocess, target
from bcc.models.network import MultitaskNet


def disc(size: int, centre, radius: float) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius ** 2


def scenes(n: int = 12, size: int = 64, seed: int = 0) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(id, lesion, pattern mask): a lesion disc near the centre (as dermoscopy is photographed), a small
    pattern mask at a random place inside it."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        c = size / 2 + rng.uniform(-0.15, 0.15, 2) * size
        radius, r = 0.3 * size, 0.07 * size
        angle, dist = rng.uniform(0, 2 * np.pi), rng.uniform(0, radius - r - 1)
        lesion = disc(size, c, radius)
        out.append((f"img{i}", lesion, disc(size, c + dist * np.array([np.cos(angle), np.sin(angle)]), r) & lesion))
    return out


def scene_records(make_map, n: int = 12) -> pd.DataFrame:
    """Records of the diagnosis map `make_map(lesion, mask)` of each scene, with every baseline."""
    sc = scenes(n)
    by_id = {i: (lesion, mask) for i, lesion, mask in sc}
    pairs = shuffled_pairs(list(by_id))
    rows = []
    for image_id, lesion, mask in sc:
        maps = np.zeros((len(OUTPUTS), *mask.shape))
        maps[0] = make_map(lesion, mask)
        other = pairs[image_id]
        shuffled = {"bcc": (by_id[other][1], by_id[other][0], other)}
        rows += [{"run_dir": "r", "image_id": image_id, "kind": "diagnosis", "correct": True, **r}
                 for r in image_records(maps, {"bcc": mask}, lesion, shuffled)]
    return pd.DataFrame(rows)


def blurred_mask(lesion, mask):
    """A model that looks at the patterns, at Grad-CAM's coarse resolution."""
    z = gaussian_filter(mask.astype(float), 3)
    return z / z.max()


def centred(lesion, mask):
    """A model that looks at the middle of the picture (not the baseline's exact width)."""
    return centre_map(mask.shape, 0.18)


def _result(rec: pd.DataFrame) -> Table4:
    return Table4(statistics(rec), baselines(rec), per_head(rec), faithfulness(pd.DataFrame(), pd.DataFrame()))


# ---- the checks on hand-made maps ------------------------------------------------------------------
def test_a_map_equal_to_the_mask_scores_far_above_every_baseline():
    rec = scene_records(lambda lesion, mask: mask.astype(float))
    b = baselines(rec).set_index(["kind", "background", "baseline", "statistic"])
    assert len(b) == 12  # 3 baselines x 2 backgrounds x (gap, auc)
    for (_, bg, baseline, stat), row in b.iterrows():
        assert row["gradcam"] == 1.0 and row["share_greater"] == 1.0 and row["p_wilcoxon"] < 0.001
        # the centre map is already on the lesion: against the rest of the image its AUC is high (~0.9)
        floor = {("image", "gap"): 0.15, ("image", "auc"): 0.05, ("lesion", "auc"): 0.25}.get((bg, stat), 0.3)
        assert row["mean_difference"] > floor, (bg, baseline, stat)
    s = statistics(rec).set_index(["map", "kind", "background", "group"])
    for bg in ("image", "lesion"):
        assert s.loc[("gradcam", "diagnosis", bg, "all"), "sig_placement_bh"] == 1.0
        assert s.loc[("gradcam", "diagnosis", bg, "all"), "pointing_game"] == 1.0
    assert s.loc[("centre", "diagnosis", "lesion", "all"), "sig_placement_bh"] < 0.5
    assert "the model is above every baseline" in describe(_result(rec))


def test_a_centred_map_scores_no_better_than_the_centre_baseline():
    rec = scene_records(centred)
    b = baselines(rec).set_index(["kind", "background", "baseline", "statistic"])
    for bg in ("image", "lesion"):
        # any centred radial map ranks the pixels as the centre baseline does: the same AUC, image by image
        row = b.loc[("diagnosis", bg, "centre", "auc")]
        assert row["mean_difference"] == 0 and row["share_greater"] == 0 and np.isnan(row["p_wilcoxon"])
    s = statistics(rec).set_index(["map", "kind", "background", "group"])
    model, centre = s.loc[("gradcam", "diagnosis", "lesion", "all")], s.loc[("centre", "diagnosis", "lesion", "all")]
    assert model["auc"] == pytest.approx(centre["auc"]) and model["sig_placement_bh"] <= 0.25
    # its gap depends on its contrast: a narrower centred map has a somewhat larger gap, never a large one
    assert abs(b.loc[("diagnosis", "lesion", "centre", "gap"), "mean_difference"]) < 0.1
    # yet the paper's statistics flatter it: the pixel z-test against the rest of the image is "significant"
    assert s.loc[("gradcam", "diagnosis", "image", "all"), "sig_ztest_bh"] > 0.5
    assert "not above the centre" in describe(_result(rec))
    # the same table tells the pattern-looking map apart: it beats the centre on the lesion background
    b = baselines(scene_records(blurred_mask)).set_index(["kind", "background", "baseline", "statistic"])
    for stat in ("gap", "auc"):
        row = b.loc[("diagnosis", "lesion", "centre", stat)]
        assert row["mean_difference"] > 0.2 and row["p_wilcoxon"] < 0.01


def test_a_map_hot_outside_the_mask_is_not_significant():
    rec = scene_records(lambda lesion, mask: (lesion & ~mask).astype(float))
    model = rec[rec["map"] == "gradcam"]
    assert (model["gap"] < 0).all() and (model["p_ztest"] > 0.5).all() and (model["p_placement"] > 0.5).all()
    s = statistics(rec).set_index(["map", "kind", "background", "group"])
    for bg in ("image", "lesion"):
        row = s.loc[("gradcam", "diagnosis", bg, "all")]
        assert row["sig_ztest_uncorrected"] == 0 and row["sig_placement_uncorrected"] == 0


def test_baselines_by_construction():
    c = centre_map((40, 60))
    assert c.shape == (40, 60) and c.max() == 1.0 and c.min() == 0.0
    assert np.unravel_index(c.argmax(), c.shape) in {(19, 29), (19, 30), (20, 29), (20, 30)}
    assert np.allclose(c, c[::-1, ::-1])  # symmetric about the centre
    lesion = disc(32, (16, 16), 8)
    assert np.array_equal(uniform_map(lesion), lesion.astype(float))
    pairs = shuffled_pairs(list("abcde"), seed=3)
    assert sorted(pairs) == sorted(pairs.values()) == list("abcde") and all(k != v for k, v in pairs.items())
    assert shuffled_pairs(["a"]) == {} and pairs == shuffled_pairs(list("abcde"), seed=3)
    assert np.array_equal(fit_mask(lesion, (64, 64))[::2, ::2], lesion)


def test_uniform_in_lesion_is_chance_on_the_lesion_background():
    """1 on the lesion: a large gap against the rest of the image, none against the rest of the lesion."""
    rec = scene_records(blurred_mask)
    u = rec[rec["map"] == "uniform_lesion"].set_index("background")
    assert (u.loc["image", "gap"] > 0.5).all() and (u.loc["lesion", "gap"] == 0).all()
    assert (u.loc["lesion", "p_placement"] == 1.0).all()
    # its mass accuracy on the lesion is the chance level |mask| / |lesion|
    sc = {i: (lesion, mask) for i, lesion, mask in scenes()}
    expected = [sc[i][1].sum() / sc[i][0].sum() for i in u.loc["lesion", "image_id"]]
    assert np.allclose(u.loc["lesion", "mass_accuracy"], expected)


def test_per_head_own_mask_against_the_other_patterns():
    lesion = disc(64, (32, 32), 20)
    u, mg = disc(64, (26, 26), 5) & lesion, disc(64, (38, 38), 5) & lesion
    maps = np.zeros((len(OUTPUTS), 64, 64))
    maps[OUTPUTS.index("U")] = u  # the U head looks at its own pattern
    maps[OUTPUTS.index("MG")] = u  # the MG head looks at U's
    rows = [{"run_dir": "r", "image_id": "x", "kind": "patterns", "correct": True, **r}
            for r in image_records(maps, {"U": u, "MG": mg}, lesion, {})]
    h = per_head(pd.DataFrame(rows)).set_index("output")
    assert h.loc["U", "mean_own"] == 1.0 and h.loc["U", "mean_other"] == 0.0 and h.loc["U", "gap"] == 1.0
    assert h.loc["MG", "gap"] == -1.0 and h.loc["MG", "share_own_above"] == 0.0
    assert h.loc["all", "n_maps"] == 2 and abs(h.loc["U", "gap_centre"]) < 0.05  # symmetric about the centre


# ---- Quantus and the project's own figures -----------------------------------------------------------------
def test_quantus_localisation_by_hand():
    z = np.array([[0.9, 0.8, 0.1, 0.7, 0.0, 0.0]])
    mask = np.array([[True, False, False, True, False, True]])
    everywhere = np.ones_like(mask)
    s = localisation([z, np.zeros_like(z)], [mask, mask], [everywhere, everywhere])
    assert s["mass_accuracy"][0] == pytest.approx(1.6 / 2.5)
    assert s["rank_accuracy"][0] == pytest.approx(2 / 3)  # the top 3 pixels are 0, 1, 3; two are in the mask
    assert s["pointing_game"][0] == 1.0
    assert np.isnan([s[m][1] for m in s]).all()  # a map of zeros has no mass, ranks or maximum
    inside = np.array([[False, True, True, True, True, True]])  # the region: the maximum at 0 is left out
    s = localisation([z], [mask], [inside])
    assert s["pointing_game"][0] == 0.0 and s["mass_accuracy"][0] == pytest.approx(0.7 / 1.6)


def test_quantus_agrees_with_the_projects_own_figures():
    rec = pd.concat([scene_records(blurred_mask), scene_records(centred)], ignore_index=True)
    ok = rec["mass_accuracy"].notna()
    assert ok.sum() > 50
    r = rec[ok]
    own = r["n_fg"] * r["mean_fg"] / (r["n_fg"] * r["mean_fg"] + r["n_bg"] * r["mean_bg"])
    assert np.allclose(r["mass_accuracy"], own, atol=1e-5)  # Quantus works in float32
    # pointing game: the maximum over Fg ∪ Bg lies in Fg, by our own mask arithmetic
    sc = {i: (lesion, mask) for i, lesion, mask in scenes()}
    for _, row in rec[(rec["map"] == "gradcam") & ok].iterrows():
        lesion, mask = sc[row["image_id"]]
        z = blurred_mask(lesion, mask) if row.name < len(rec) // 2 else centred(lesion, mask)
        region = lesion | mask if row["background"] == "lesion" else np.ones_like(mask)
        assert row["pointing_game"] == float((z * mask).max() == (z * region).max())


# ---- maps of the predicted class -------------------------------------------------------------------------
def test_correct_and_map_masks(tmp_path):
    from bcc.evaluation.localisation.records import prediction_correct

    row = pd.Series({"y_bcc": 1.0, "p_bcc": 0.7, "y_U": 0.0, "p_U": 0.6, "y_PN": np.nan, "p_PN": 0.2})
    assert prediction_correct(row, "bcc") is True and prediction_correct(row, "U") is False
    assert prediction_correct(row, "PN") is pd.NA
    assert prediction_correct(row, "bcc", threshold=0.8) is False
    a, b, pn = np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint8)
    a[:2], b[-2:], pn[3:5] = 255, 255, 255
    paths = {}
    for code, m in (("U", a), ("MG", b), ("PN", pn), ("AT", np.zeros((8, 8), np.uint8))):
        paths[code] = tmp_path / f"x_{code}.png"
        Image.fromarray(m).save(paths[code])
    masks = map_masks(paths)
    assert list(masks) == ["bcc", "PN", "U", "MG"]  # OUTPUTS order; the empty AT mask is dropped
    assert np.array_equal(masks["bcc"], (a > 0) | (b > 0))  # union of the BCC patterns, PN left out
    Image.fromarray(a | b | pn).save(tmp_path / "x.png")
    assert list(map_masks({"all": tmp_path / "x.png"})) == ["bcc"]


def test_working_shape():
    from bcc.evaluation.localisation.records import working_shape

    assert working_shape((1024, 768), 512) == (512, 384)
    assert working_shape((300, 200), 512) == (300, 200) and working_shape((2000, 999), None) == (2000, 999)
    # masks follow (nearest neighbour); one that vanishes at the working size is dropped
    from bcc.evaluation.localisation.records import fitted_masks

    big, tiny = np.zeros((1024, 1024), bool), np.zeros((1024, 1024), bool)
    big[100:140, 200:260], tiny[0, 0] = True, True
    fitted = fitted_masks({"U": big, "MG": tiny}, 512)
    assert list(fitted) == ["U"] and fitted["U"].shape == (512, 512) and fitted["U"].sum() == 20 * 30


def test_predicted_signs():
    p = np.array([[0.7, 0.2, 0.5], [0.49, 0.51, 0.0]])
    assert predicted_signs(p, 0.5).tolist() == [[1, -1, 1], [-1, 1, -1]]
    assert predicted_signs(p, 0.6).tolist() == [[1, -1, -1], [-1, -1, -1]]


def test_the_map_of_a_predicted_non_bcc_image_is_the_negative_logits():
    """Against pytorch-grad-cam's GradCAM with the target −logit(BCC): the map of the class the model predicts."""
    from pytorch_grad_cam import GradCAM

    torch.manual_seed(0)
    net = MultitaskNet.build("mobilenet", image_size=96).eval()
    net.image_size = 96  # what load_network sets
    for head in net.heads.values():
        torch.nn.init.normal_(head.weight, std=0.5)
    rgbs = [np.random.default_rng(i).integers(0, 256, (96, 96, 3), dtype=np.uint8) for i in range(2)]
    p = np.full((2, len(OUTPUTS)), 0.9)
    p[1, 0] = 0.1  # image 1: predicted non-BCC
    x, cams, signs = predicted_class_cams(net, rgbs, p, 0.5)
    assert signs[:, 0].tolist() == [1.0, -1.0]
    maps = postprocess(cams, (96, 96)).numpy()
    positive = gradcam_maps(net, x)[0].numpy()
    assert np.allclose(maps[0], positive[0], atol=1e-6)  # predicted BCC: the usual map
    with GradCAM(model=net, target_layers=[target(net).layer]) as cam:
        ref = cam(input_tensor=x[1:].clone().requires_grad_(True), targets=[LogitTarget(0, -1.0)])
    assert np.abs(maps[1, 0] - ref[0]).max() < 1e-4
    assert maps[1, 0].max() > 0.99 and np.abs(maps[1, 0] - positive[1, 0]).max() > 0.5  # a different map


# ---- figures -------------------------------------------------------------------------------------------
def test_figure_choice_median_best_worst():
    rec = scene_records(blurred_mask)
    choice = figure_choice(rec, 3)
    assert choice["rank"].tolist() == ["median", "best", "worst"]
    ranked = rec[(rec["map"] == "gradcam") & (rec["background"] == "lesion")]["cohens_d"].sort_values()
    assert choice["cohens_d"].tolist() == [ranked.iloc[(len(ranked) - 1) // 2], ranked.max(), ranked.min()]
    assert (choice["background"] == "lesion").all() and (choice["n_ranked"] == len(ranked)).all()
    assert figure_choice(rec, 1)["rank"].tolist() == ["median"] and figure_choice(rec, 0).empty


def test_figure3_writes_png(tmp_path):
    _, lesion, mask = scenes(1)[0]
    rgb = np.random.default_rng(0).integers(0, 255, (*mask.shape, 3), dtype=np.uint8)
    path = figure3(rgb, mask, blurred_mask(lesion, mask), tmp_path / "figs" / "fig3.png", title="median", lesion=lesion)
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] > 3 * im.size[1]


# ---- end to end on the smoke run -------------------------------------------------------------------------
def with_lesions_and_twins(src, root):
    """A copy of a dataset with, for every image with pattern masks, a twin (the patterns in-painted away) and,
    where it has none, a hand-drawn lesion mask (a disc around the patterns)."""
    shutil.copytree(src, root, ignore=shutil.ignore_patterns(".cache", "twins"))
    ds = load_dataset(root)
    (root / "twins").mkdir()
    for image_id, files in ds.masks.items():
        patterns = [np.asarray(Image.open(f)) > 0 for k, f in files.items() if k != "lesion"]
        if not patterns:
            continue
        union = np.logical_or.reduce(patterns)
        if "lesion" not in files:
            ys, xs = np.nonzero(union)
            centre = (ys.mean(), xs.mean())
            radius = np.hypot(ys - centre[0], xs - centre[1]).max() * 1.3 + 2
            lesion = disc(union.shape[0], centre, radius)
            Image.fromarray(lesion.astype(np.uint8) * 255).save(root / "masks" / f"{image_id}_lesion.png")
        rgb = np.asarray(Image.open(ds.image_path(image_id)).convert("RGB"))
        hole = cv2.dilate(union.astype(np.uint8), np.ones((3, 3), np.uint8))
        Image.fromarray(cv2.inpaint(rgb, hole, 3, cv2.INPAINT_TELEA)).save(root / "twins" / f"{image_id}.png")
    return root


@pytest.fixture(scope="module")
def smoke_report(ckpt, data_dir, tmp_path_factory):
    """`bcc.evaluate` (stage 0, fold 0) on a copy of the session's smoke run, with lesion masks and twins."""
    tmp = tmp_path_factory.mktemp("table4")
    root = with_lesions_and_twins(data_dir / "synthetic-smoke", tmp / "data")
    out = tmp / "outputs"
    shutil.copytree(ckpt.parent.parent.parent.parent, out, ignore=shutil.ignore_patterns("last.ckpt", "csv"))
    cfg = evaluate_cli.load_config([f"output_dir={out}", "wandb.enabled=false", "eval.complexity=false",
                                    "eval.stage=0", "eval.k=1", f"eval.dataset={root}", "eval.table4.road_images=2"])
    ev = evaluate(cfg)
    return ev, root, out / "mobilenet" / "fold0" / "stage0"


def test_report_end_to_end(smoke_report):
    ev = smoke_report[0]
    report = ev.report_dir
    for name in ("table4.csv", "table4_baselines.csv", "table4_per_head.csv", "table4_faithfulness.csv", PER_MAP,
                 "table4_faithfulness_per_image.csv"):
        assert (report / name).is_file(), name
    assert [p.name.split("_")[1] for p in ev.table4_figures] == ["median", "best", "worst"]
    assert all(p.is_file() for p in ev.table4_figures)
    md = (report / "report.md").read_text()
    section = md[md.index("## Table 4"):md.index("## Dataset")]
    for text in ("**Statistics**", "table4_baselines.csv", "table4_faithfulness.csv", "Verdict (diagnosis maps, Bg = lesion",
                 "uniform-in-lesion", "shuffled mask", "Twins without the patterns", "fig3_median_"):
        assert text in section, text
    stats = pd.read_csv(report / "table4.csv")
    assert set(stats["map"]) == {"gradcam", "centre", "uniform_lesion", "shuffled_mask"}
    assert set(stats["background"]) == {"image", "lesion"} and set(stats["group"]) == {"correct", "incorrect", "all"}


def test_records_of_the_smoke_run(smoke_report):
    ev, root, run = smoke_report
    per_map = pd.read_csv(ev.report_dir / PER_MAP, dtype={"image_id": str, "mask_of": str})
    preds = pd.read_csv(run / "predictions.csv", dtype={"image_id": str}).set_index("image_id")
    ds = load_dataset(root)
    assert set(per_map["image_id"]) == {i for i in preds.index if i in ds.masks and map_masks(ds.masks[i])}
    model = per_map[per_map["map"] == "gradcam"]
    # each map explains the class the run predicted: the negative logit's where p < 0.5
    p = np.array([preds.loc[i, f"p_{o}"] for i, o in zip(model["image_id"], model["output"], strict=True)])
    assert (model["target"] == np.where(p >= 0.5, "positive", "negative")).all()
    assert (model["target"] == "negative").any()
    # the diagnosis map against the union of the BCC-pattern masks, with both backgrounds
    first = model[(model["output"] == "bcc") & (model["background"] == "lesion")].iloc[0]
    masks = map_masks(ds.masks[first["image_id"]])
    lesion = np.asarray(Image.open(ds.masks[first["image_id"]]["lesion"])) > 0
    assert first["n_fg"] == masks["bcc"].sum() and first["n_bg"] == (lesion & ~masks["bcc"]).sum()
    shuffled = per_map[per_map["map"] == "shuffled_mask"]
    assert len(shuffled) and (shuffled["mask_of"] != shuffled["image_id"]).all()
    ok = per_map["mass_accuracy"].notna()
    r = per_map[ok]
    assert np.allclose(r["mass_accuracy"], r["n_fg"] * r["mean_fg"] / (r["n_fg"] * r["mean_fg"] + r["n_bg"] * r["mean_bg"]),
                       atol=1e-5)
    # the twins: one row per BCC test image with a twin, p(BCC) as the run predicted it
    f = pd.read_csv(ev.report_dir / "table4_faithfulness.csv").set_index(["test", "subject"])
    with_twin = [i for i in preds.index if (root / "twins" / f"{i}.png").is_file()]
    bcc = [i for i in with_twin if preds.loc[i, "y_bcc"] == 1]
    assert f.loc[("twin_deletion", "BCC images"), "n"] == len(bcc) > 0
    assert f.loc[("twin_deletion", "BCC images"), "mean_before"] == pytest.approx(preds.loc[bcc, "p_bcc"].mean(), abs=1e-3)
    assert f.loc[("road", "centre"), "n"] == 2


def test_the_call_site_passes_the_eval_settings(tmp_path, monkeypatch):
    """pipeline.table4 hands the eval.table4 node to mask_report and puts its result into report.md."""
    from tests.helpers.runs import write_dataset, write_runs

    ds = write_dataset(tmp_path / "data" / "synth")
    (ds / "masks").mkdir()
    (ds / "masks" / "img0.png").write_bytes(b"\x89PNG")
    out = write_runs(tmp_path / "o", stages=(3,), dataset=ds)
    calls = {}

    def fake_report(run_dirs, dataset_root, out_dir, settings):
        calls.update(n=len(run_dirs), root=dataset_root, settings=settings)
        stats = pd.DataFrame([{"map": "gradcam", "kind": "diagnosis", "background": "image", "group": "all",
                               "n_maps": 3, "gap": 0.4321}])
        none = pd.DataFrame(columns=["run_dir", "image_id", "output", "map", "kind", "background", "gap", "auc"])
        return Table4(stats, baselines(none), per_head(none), faithfulness(pd.DataFrame(), pd.DataFrame()),
                      notes=["a note from mask_report"])

    monkeypatch.setattr("bcc.evaluation.pipeline.mask_report", fake_report)
    evaluate(evaluate_cli.load_config([f"output_dir={out}", "wandb.enabled=false", "eval.complexity=false",
                                       "eval.table4.max_figures=2", "eval.table4.threshold=0.4", "eval.table4.road_images=0",
                                       "eval.table4.max_side=null", "eval.table4.road_percentiles=[50]",
                                       "data.allow_outside=true", "eval.lesion_focus=false"]))  # its masks are fake
    st = calls["settings"]
    assert calls["n"] == 5 and calls["root"] == ds
    assert (st.max_figures, st.threshold, st.road_images, st.max_side, list(st.road_percentiles), st.allow_outside) == \
        (2, 0.4, 0, None, [50], True)
    md = (out / "report" / "report.md").read_text()
    assert "0.432" in md and "a note from mask_report" in md and "| gradcam | diagnosis | image | all |" in md


def test_without_lesion_masks_the_report_says_so(ckpt, data_dir, tmp_path):
    root = tmp_path / "nolesions"
    shutil.copytree(data_dir / "synthetic-smoke", root, ignore=shutil.ignore_patterns(".cache", "twins", "*_lesion.png"))
    result = mask_report([ckpt.parent], root, tmp_path / "report")
    assert set(result.statistics["background"]) == {"image"}
    assert "uniform_lesion" not in set(result.statistics["map"])
    text = describe(result)
    assert "No lesion masks" in text and "No counterfactual twins" in text
    assert result.faithfulness["test"].eq("road").any() and not result.faithfulness["test"].eq("twin_deletion").any()


def test_a_dataset_reaching_outside_its_folder_needs_allow_outside(ckpt, data_dir, tmp_path):
    """Table 4 reads the dataset under the same contract as training: images symlinked from outside it are
    refused unless data.allow_outside=true (Table4Settings.allow_outside) lets them in."""
    root, outside = tmp_path / "linked", tmp_path / "elsewhere"
    shutil.copytree(data_dir / "synthetic-smoke", root, ignore=shutil.ignore_patterns(".cache", "twins"))
    shutil.move(root / "images", outside)
    (root / "images").symlink_to(outside, target_is_directory=True)
    with pytest.raises(BadInput, match="symbolic link"):
        mask_report([ckpt.parent], root, tmp_path / "refused", Table4Settings(road_images=0))
    assert not (tmp_path / "refused").exists()
    result = mask_report([ckpt.parent], root, tmp_path / "report", Table4Settings(road_images=0, allow_outside=True))
    assert len(result.statistics) > 0


def test_mask_report_without_masks(tmp_path, data_dir):
    """A dataset without masks/ gives no table and writes nothing (no run is even opened)."""
    root = tmp_path / "nomasks"
    shutil.copytree(data_dir / "synthetic-smoke", root, ignore=shutil.ignore_patterns("masks", ".cache"))
    assert mask_report([tmp_path / "no-run"], root, tmp_path / "report") is None
    assert not (tmp_path / "report").exists()
