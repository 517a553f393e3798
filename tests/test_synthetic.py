"""Tests for the embedded synthetic dataset generator (bcc.data.synthetic) and the benchmark's guarantees."""
from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

from bcc.core.patterns import BCC_CODES, CODES, clinical_rule
from bcc.data.synthetic import __main__ as cli
from bcc.data.synthetic import audit, labels, patterns, rendering, writer
from bcc.data.synthetic import raters as rater_model
from bcc.data.synthetic.shapes import Lesion, LesionContext, grid, soften

N, SIZE = 96, 64


def _rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as f:
        r = csv.DictReader(f)
        return list(r.fieldnames or []), list(r)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _mask(path: Path) -> np.ndarray:
    m = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert m is not None and m.dtype == np.uint8 and set(np.unique(m)) <= {0, 255}, path
    return m > 0


def _rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def _changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pixels where two uint8 RGB images differ at all (no tolerance)."""
    return (a != b).any(-1)


def _only(*codes: str) -> list[int]:
    return [int(c in codes) for c in CODES]


@pytest.fixture(scope="module")
def ds(tmp_path_factory) -> Path:
    return writer.generate(tmp_path_factory.mktemp("a") / "ds", n=N, size=SIZE, seed=0, progress=False, twins=True)


def _truth(ds: Path) -> tuple[list[str], np.ndarray]:
    _, rows = _rows(ds / "truth.csv")
    return [r["image_id"] for r in rows], np.array([[int(r[c]) for c in CODES] for r in rows])


# ---- files, determinism, atomicity --------------------------------------------------------------------
def test_determinism(ds, tmp_path):
    again = writer.generate(tmp_path / "again", n=N, size=SIZE, seed=0, progress=False, twins=True)
    a, b = _files(ds), _files(again)
    assert a.keys() == b.keys()
    assert all(a[k] == b[k] for k in a)
    other = _files(writer.generate(tmp_path / "other", n=8, size=SIZE, seed=1, progress=False))
    assert other["images/syn_00000.png"] != a["images/syn_00000.png"]
    t0, t1 = (labels.sample_truth(N, labels.global_rng(seed, N, 0)) for seed in (0, 1))
    assert not np.array_equal(t0, t1)


def test_workers_do_not_change_output(tmp_path):
    one = _files(writer.generate(tmp_path / "w1", n=12, size=48, seed=3, progress=False, workers=1, twins=True))
    two = _files(writer.generate(tmp_path / "w2", n=12, size=48, seed=3, progress=False, workers=2, twins=True))
    assert one == two


def test_twins_are_optional(tmp_path, ds):
    """Without twins the images and masks are the same bytes as with them; only twins/ is missing."""
    plain = _files(writer.generate(tmp_path / "plain", n=N, size=SIZE, seed=0, progress=False))
    with_twins = _files(ds)
    assert plain == {k: v for k, v in with_twins.items() if not k.startswith("twins/")}


def test_files_and_columns(ds):
    assert {p.name for p in ds.iterdir()} == {"images.csv", "annotations.csv", "truth.csv", "raters.csv",
                                             "images", "masks", "twins", ".bcc-owner.json"}
    cols, images = _rows(ds / "images.csv")
    assert cols == ["image_id", "image", "source"]
    assert len(images) == N and len({r["image_id"] for r in images}) == N
    assert all(r["image"].startswith("images/") for r in images)  # twins are never listed
    sources = {r["source"] for r in images}
    assert sources <= set(labels.CENTRES) | {"isic"} and len(sources) >= 3
    for r in images:
        assert r["image"] == f"images/{r['image_id']}.png"
        for im in (cv2.imread(str(ds / r["image"])), cv2.imread(str(ds / "twins" / f"{r['image_id']}.png"))):
            assert im is not None and im.shape == (SIZE, SIZE, 3)
    assert len(list((ds / "twins").iterdir())) == N

    cols, ann = _rows(ds / "annotations.csv")
    assert cols == ["image_id", "rater", *CODES]
    assert len(ann) == 4 * N
    assert {r["rater"] for r in ann} == set(rater_model.RATER_NAMES)
    assert all(r[c] in ("", "0", "1") for r in ann for c in CODES)

    cols, truth = _rows(ds / "truth.csv")
    assert cols == ["image_id", *CODES] and [r["image_id"] for r in truth] == [r["image_id"] for r in images]

    cols, raters = _rows(ds / "raters.csv")
    assert cols == ["rater", "code", "sensitivity", "specificity"]
    assert len(raters) == 4 * len(CODES)
    q = {(r["rater"], r["code"]): (float(r["sensitivity"]), float(r["specificity"])) for r in raters}
    for c in CODES:  # derm_4 is clearly worse than everyone else, on every code
        assert max(q[("derm_4", c)]) <= 0.76
        assert min(min(q[(r, c)]) for r in ("derm_1", "derm_2", "derm_3")) >= 0.85


def test_the_contract_reads_the_set(ds):
    from bcc.data.contract import LESION, load_dataset

    d = load_dataset(ds)
    assert set(d.masks) == set(d.images["image_id"])  # every image has its lesion mask
    assert all(LESION in m for m in d.masks.values())


def test_atomic_on_failure(tmp_path, monkeypatch):
    out = tmp_path / "ds"
    writer.generate(out, n=10, size=48, seed=0, progress=False)
    before = _files(out)
    calls = {"n": 0}
    real = patterns.DRAWERS["AT"]

    def flaky(img, ctx):
        calls["n"] += 1
        if calls["n"] > 2:
            raise RuntimeError("boom")
        return real(img, ctx)

    monkeypatch.setitem(patterns.DRAWERS, "AT", flaky)
    with pytest.raises(RuntimeError, match="boom"):
        writer.generate(out, n=40, size=48, seed=0, progress=False, workers=1, twins=True)
    assert _files(out) == before  # the previous dataset is untouched
    with pytest.raises(RuntimeError, match="boom"):
        writer.generate(tmp_path / "fresh", n=40, size=48, seed=0, progress=False, workers=1)
    assert not (tmp_path / "fresh").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]  # no temp dirs left behind


def test_replaces_existing(tmp_path):
    out = tmp_path / "ds"
    writer.generate(out, n=10, size=48, seed=0, progress=False, twins=True)
    writer.generate(out, n=12, size=48, seed=0, progress=False)
    assert len(_rows(out / "images.csv")[1]) == 12 and not (out / "twins").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_cli(tmp_path, capsys):
    cli.main(["--out", str(tmp_path / "cli"), "--n", "16", "--size", "48", "--seed", "2", "--twins"])
    text = capsys.readouterr().out
    assert "BCC 8 / non-BCC 8" in text and "PN" in text and "lesion masks: 16; twins: 16" in text
    assert (tmp_path / "cli" / "images.csv").exists() and len(list((tmp_path / "cli" / "twins").iterdir())) == 16


def test_bad_sizes_are_refused(tmp_path):
    from bcc.core.errors import BadInput

    with pytest.raises(BadInput, match=r"--size 16: expected a whole number in \[32, 4096\]"):
        writer.generate(tmp_path / "x", n=4, size=16, progress=False)
    assert not (tmp_path / "x").exists()


def test_atomic_writes_get_ordinary_permissions(tmp_path):
    """mkstemp's private 0600 must not leak into results that others on a shared cluster read."""
    import os

    import pandas as pd

    from bcc.core.io import write_csv

    mask = os.umask(0o022)
    try:
        out = write_csv(pd.DataFrame({"a": [1]}), tmp_path / "x.csv")
    finally:
        os.umask(mask)
    assert out.stat().st_mode & 0o777 == 0o644


# ---- labels and raters ----------------------------------------------------------------------------------
def test_prevalence_exact_at_paper_size():
    truth = labels.sample_truth(1559, labels.global_rng(0, 1559, 0))
    counts = dict(zip(CODES, truth.sum(0).tolist(), strict=True))
    assert counts == labels.PAPER_COUNTS
    bcc = clinical_rule(truth)
    assert bcc.sum() == 775 and (truth.sum(1) == 0).sum() == 784 - 557


@pytest.mark.parametrize("n", [7, 60, 333])
def test_prevalence_scaled_and_rules(n):
    truth = labels.sample_truth(n, np.random.default_rng(n))
    k = labels.scaled_counts(n)
    bcc = clinical_rule(truth)
    assert bcc.sum() == k["bcc"]
    pn = truth[:, CODES.index("PN")] == 1
    bcc_pat = truth[:, [CODES.index(c) for c in BCC_CODES]]
    assert not (pn & (bcc_pat.sum(1) > 0)).any()  # PN never with a BCC pattern
    assert (bcc_pat[bcc == 1].sum(1) >= 1).all()  # every BCC image has a BCC pattern
    for c in CODES:
        assert abs(int(truth[:, CODES.index(c)].sum()) - n * labels.PAPER_COUNTS[c] / 1559) <= 1.5


def test_dataset_labels(ds):
    _, truth = _truth(ds)
    k = labels.scaled_counts(N)
    assert clinical_rule(truth).sum() == k["bcc"]
    assert not ((truth[:, 0] == 1) & (truth[:, 1:].sum(1) > 0)).any()


def test_segmented_subset_is_drawn_from_bcc_images():
    p = writer.plan(1559, 0)
    assert p.xai.sum() == 334 and (clinical_rule(p.truth)[p.xai] == 1).all()
    small = labels.sample_xai(labels.sample_truth(60, np.random.default_rng(1)), np.random.default_rng(2))
    assert small.sum() == round(60 * 334 / 1559)


def test_raters(ds):
    _, ann = _rows(ds / "annotations.csv")
    blanks = {r: 0 for r in rater_model.RATER_NAMES}
    for row in ann:
        blanks[row["rater"]] += sum(row[c] == "" for c in CODES)
    cells = N * len(CODES)
    assert 0.04 < blanks["derm_2"] / cells < 0.2
    assert blanks["derm_1"] == blanks["derm_3"] == blanks["derm_4"] == 0


def test_rater_rates_are_exact():
    truth = labels.sample_truth(1559, labels.global_rng(0, 1559, 0))
    ratings = rater_model.simulate_raters(truth, np.random.default_rng(0))
    for r, name in enumerate(rater_model.RATER_NAMES):
        sens, spec = rater_model.RATERS[name]
        for j in range(len(CODES)):
            x, t = ratings[r, :, j], truth[:, j]
            ok = ~np.isnan(x)
            assert abs(x[ok & (t == 1)].mean() - sens[j]) < 0.005
            assert abs(1 - x[ok & (t == 0)].mean() - spec[j]) < 0.005


# ---- masks -------------------------------------------------------------------------------------------------
def test_masks(ds):
    """Lesion masks for every image; pattern masks (per code and their union) for the segmented subset only."""
    ids, truth = _truth(ds)
    masked = [i for i in ids if (ds / "masks" / f"{i}.png").exists()]
    assert len(masked) == labels.scaled_counts(N)["xai"]
    bcc = clinical_rule(truth)
    expected = {f"{i}_lesion.png" for i in ids}
    for i in ids:
        lesion = _mask(ds / "masks" / f"{i}_lesion.png")
        assert lesion.shape == (SIZE, SIZE) and lesion.any()
        if i not in masked:
            continue
        t = truth[ids.index(i)]
        assert bcc[ids.index(i)] == 1
        union = _mask(ds / "masks" / f"{i}.png")
        assert union.shape == (SIZE, SIZE) and union.any() and not (union & ~lesion).any()
        acc = np.zeros_like(union)
        expected.add(f"{i}.png")
        for c, v in zip(CODES, t, strict=True):
            p = ds / "masks" / f"{i}_{c}.png"
            assert p.exists() == bool(v)
            if v:
                m = _mask(p)
                assert m.shape == (SIZE, SIZE) and m.any()
                acc |= m
                expected.add(p.name)
        assert np.array_equal(acc, union)
    assert {p.name for p in (ds / "masks").iterdir()} == expected


@pytest.mark.parametrize("size", [48, 96])
def test_masks_inside_lesion_and_not_empty(size):
    for i in range(12):
        r = rendering.render(np.random.default_rng([5, i]), (0, 1, 1, 1, 1, 1, 1), size, labels.CENTRES[i % 6])
        assert r.rgb.shape == (size, size, 3) and r.rgb.dtype == np.uint8 and r.twin is None
        assert set(r.masks) == set(BCC_CODES)
        for m in r.masks.values():
            assert m.shape == (size, size) and m.any() and not (m & ~r.lesion).any()
    r = rendering.render(np.random.default_rng(1), _only("PN"), 64)
    assert set(r.masks) == {"PN"} and r.masks["PN"].any()


#: pattern sets whose paint could leak: each code alone, codes painted over one another, all BCC codes
RISKY = [(c,) for c in CODES] + [("U", "AT"), ("ON", "MG"), ("ML", "ON", "SW"), ("SW", "U", "AT"), tuple(BCC_CODES)]


@pytest.mark.parametrize("size", [64, 128])
def test_each_pattern_paints_exactly_its_mask(size):
    """Removing one pattern changes the image only inside that pattern's mask, not one uint8 level outside.

    No tolerance is needed: a pattern's alpha is exactly 0 outside its mask, where blending leaves the float
    pixel bit-identical, and everything after the patterns (hairs, light, device, noise, gamma) works pixel
    by pixel. The mask is also what was painted: (nearly) every mask pixel changes."""
    for k, codes in enumerate(RISKY):
        for device in (labels.CENTRES[k % 6], "centre_04"):  # centre_04: the blurriest device
            seed = [11, k, size]
            full = rendering.render(np.random.default_rng(seed), _only(*codes), size, device)
            for c in codes:
                rest = rendering.render(np.random.default_rng(seed), _only(*(x for x in codes if x != c)), size, device)
                changed = _changed(full.rgb, rest.rgb)
                assert not (changed & ~full.masks[c]).any(), (codes, c, device)
                assert changed[full.masks[c]].mean() > 0.9, (codes, c, device)
                assert all(np.array_equal(rest.masks[x], full.masks[x]) for x in rest.masks)
                assert np.array_equal(rest.lesion, full.lesion)


def test_faint_instances_keep_their_mask(monkeypatch):
    """Faintness lowers the opacity only: the same structure, the same mask, less change inside it."""
    def draw(rate: float):
        monkeypatch.setattr(rendering, "FAINT_RATE", {c: rate for c in CODES})
        return [rendering.render(np.random.default_rng([4, j]), _only(c), 96, twin=True) for j, c in enumerate(CODES)]

    strong, faint = draw(0.0), draw(1.0)
    for c, a, b in zip(CODES, strong, faint, strict=True):
        assert np.array_equal(a.masks[c], b.masks[c]) and np.array_equal(a.twin, b.twin), c
        da = np.abs(a.rgb.astype(int) - a.twin).sum(-1)[a.masks[c]].mean()
        db = np.abs(b.rgb.astype(int) - b.twin).sum(-1)[b.masks[c]].mean()
        assert 0 < db < 0.8 * da, c


def test_structures_are_2px_wide_where_the_localisation_run_trains():
    """Strokes, dots, vessels are >= 4 px wide at 256 px, so >= 2 px at the 128 px a localisation run trains at.

    Measured by opening (``audit.block_share``): a stroke at least 2 px wide puts every one of its pixels in
    a 2x2 block of stroke pixels, a 1 px stroke (the old generator's) none; and at 256 px, the median width
    local thickness of the core (``audit.stroke_width``: the largest disc that fits) is >= 4 px. Two views at 128 px (the 256 px structure downsampled):
    (a) each drawer alone on a flat ground, its *visible core* (where it paints at least half its local peak,
    the stroke's full width at half maximum): >= 80 % of the core in 2x2 blocks (the rest: stroke ends and
    tips fading at the lesion's rim); (b) every mask of full renders (devices, lesion fade, hairs): >= 85 %.
    """
    S = 256
    yy, xx = grid(S)
    lesion = Lesion.of(soften((xx - 128) ** 2 + (yy - 128) ** 2 < 60 ** 2, 3.0))
    ground = np.full((S, S, 3), 150, np.float32)
    for i in range(8):
        for c in CODES:
            img = ground.copy()
            mask = patterns.DRAWERS[c](img, LesionContext(S, 1.0, 60.0, lesion, 0.0, np.random.default_rng([i, 3])))
            core = audit.visible_core(img, ground)
            assert core.any() and not (core & ~mask).any()
            assert audit.block_share(audit.downsample(core, 128)) >= 0.8, (c, i)
            assert audit.stroke_width(core) >= 4, (c, i)
    for i in range(4):
        r = rendering.render(np.random.default_rng([9, i]), _only(*CODES[1:]), S, labels.CENTRES[i])
        r_pn = rendering.render(np.random.default_rng([9, i]), _only("PN"), S, labels.CENTRES[i])
        for c, m in [*r.masks.items(), ("PN", r_pn.masks["PN"])]:
            assert audit.block_share(audit.downsample(m, 128)) >= 0.85, (c, i)


# ---- where things are ------------------------------------------------------------------------------------
def test_lesions_and_patterns_anywhere():
    """Lesion centres spread over +-0.25 of the side; patterns anywhere on the lesion, so a map that favours
    the image's centre, or the lesion's, does not single out the pattern pixels among the lesion's pixels
    (the old generator's: 0.74 and 0.81)."""
    S = 64
    truth = labels.sample_truth(300, np.random.default_rng(0))
    offsets, priors, radial = [], [], []
    for i in np.flatnonzero(clinical_rule(truth) == 1)[:120]:
        r = rendering.render(np.random.default_rng([0, int(i)]), truth[i], S, labels.CENTRES[i % 6])
        ly, lx = np.nonzero(r.lesion)
        offsets.append((lx.mean() / S - 0.5, ly.mean() / S - 0.5))
        priors.append(audit.prior_aurocs(r.lesion, np.logical_or.reduce(list(r.masks.values()))))
        radius = np.sqrt(r.lesion.sum() / np.pi)
        for m in r.masks.values():
            py, px = np.nonzero(m)
            radial.append(np.hypot(px.mean() - lx.mean(), py.mean() - ly.mean()) / radius)
    offsets = np.array(offsets)
    assert (np.abs(offsets).max(0) > 0.2).all() and (offsets.std(0) > 0.11).all()  # uniform: std 0.144
    assert np.mean([p["centre/lesion"] for p in priors]) < 0.6
    assert np.mean([p["lesion_centre/lesion"] for p in priors]) < 0.62
    assert np.mean(radial) > 0.45  # a uniform point on a disc: 2/3; the old generator's: 0.37


def test_rare_codes_are_subtler():
    """SW, MG and ML bring less evidence (change summed over their mask) than PN and AT, and are faint more often."""
    evidence = {c: [] for c in CODES}
    for i in range(20):
        for c in CODES:
            r = rendering.render(np.random.default_rng([8, i]), _only(c), 64, labels.CENTRES[i % 6], twin=True)
            evidence[c].append(np.abs(r.rgb.astype(int) - r.twin).sum() / r.rgb.size)
    for rare in ("SW", "MG", "ML"):
        for common in ("PN", "AT"):
            assert np.mean(evidence[rare]) < np.mean(evidence[common]), (rare, common)
            assert patterns.FAINT_RATE[rare] > patterns.FAINT_RATE[common]


# ---- twins and shortcuts -------------------------------------------------------------------------------------
def test_twins(ds):
    """A twin is the image re-rendered without its patterns: equal off the pattern masks, equal when none."""
    ids, truth = _truth(ds)
    n_segmented = 0
    for i, t in zip(ids, truth, strict=True):
        img, twin = _rgb(ds / "images" / f"{i}.png"), _rgb(ds / "twins" / f"{i}.png")
        if t.sum() == 0:
            assert (ds / "images" / f"{i}.png").read_bytes() == (ds / "twins" / f"{i}.png").read_bytes()
            continue
        changed = _changed(img, twin)
        assert changed.any()
        assert not (changed & ~_mask(ds / "masks" / f"{i}_lesion.png")).any()
        if (ds / "masks" / f"{i}.png").exists():
            n_segmented += 1
            assert not (changed & ~_mask(ds / "masks" / f"{i}.png")).any()
    assert n_segmented == labels.scaled_counts(N)["xai"]
    for k in range(4):  # and the twin is exactly what rendering without the patterns draws
        r = rendering.render(np.random.default_rng([2, k]), _only(*BCC_CODES[k:]), 96, labels.CENTRES[k], twin=True)
        bare = rendering.render(np.random.default_rng([2, k]), _only(), 96, labels.CENTRES[k])
        union = np.logical_or.reduce(list(r.masks.values()))
        assert np.array_equal(r.twin, bare.rgb) and not (_changed(r.rgb, r.twin) & ~union).any()


@pytest.fixture(scope="module")
def audited(tmp_path_factory) -> tuple[Path, dict[str, float]]:
    root = writer.generate(tmp_path_factory.mktemp("audit") / "ds", n=400, size=64, seed=0, progress=False,
                           twins=True, workers=1)
    return root, audit.audit(root)


def test_the_label_lives_in_the_pattern_pixels_only(audited):
    """Colour statistics predict BCC from the images (the patterns' colour), not from the twins or off the lesion."""
    _, figures = audited
    assert figures["bcc/twin"] <= 0.6
    assert figures["bcc/off_lesion"] <= 0.6
    assert figures["bcc/image"] >= 0.7  # the evidence is there to learn


def test_the_shortcut_bound_has_power(audited):
    """A barely visible tint (+6 red levels) on the BCC twins alone is enough to break the 0.6 bound."""
    root, _ = audited
    ids, truth = _truth(root)
    y = clinical_rule(truth)
    feats = []
    for i, bcc in zip(ids, y, strict=True):
        twin = _rgb(root / "twins" / f"{i}.png").astype(int)
        feats.append(audit.colour_features(np.clip(twin + np.array([6 * bcc, 0, 0]), 0, 255).astype(np.uint8)))
    assert audit.cv_auroc(np.stack(feats), y) > 0.6


def test_the_checks_catch_a_leak_and_thin_strokes(monkeypatch):
    """The paint and width tests are not vacuous: paint blurred past its mask, or strokes 0.4x as wide, fail."""
    from bcc.data.synthetic import shapes

    with monkeypatch.context() as m:
        m.setattr(patterns, "_width", lambda ctx, w: 0.4 * max(w, patterns.MIN_WIDTH) * ctx.s)
        with pytest.raises(AssertionError):
            test_structures_are_2px_wide_where_the_localisation_run_trains()

    def leaky(img, shape, color, opacity):
        mask = shapes.paint(img, shape, color, opacity)
        shapes.blend(img, shapes.soften(mask, 2.0) * 0.3, color)
        return mask

    monkeypatch.setattr(patterns, "paint", leaky)
    with pytest.raises(AssertionError):
        test_each_pattern_paints_exactly_its_mask(64)


def test_the_isic_look_does_not_give_the_label_away():
    """isic images (all non-BCC) are shot with the centres' devices, drawn as often as the centres are.

    A colour classifier cannot tell the 136 isic images of the paper-size set from as many centre images
    by their look (the twins, and the real images' pixels off the lesion; rendered at 64 px)."""
    p = writer.plan(1559, 0)
    isic = np.flatnonzero(np.array(p.sources) == "isic")
    assert len(isic) == 136 and (clinical_rule(p.truth)[isic] == 0).all()
    looks = np.array(p.devices)[isic]
    assert set(looks) <= set(labels.CENTRES)
    share = np.array([(looks == c).mean() for c in labels.CENTRES])
    assert np.abs(share - labels.CENTRE_WEIGHTS / labels.CENTRE_WEIGHTS.sum()).sum() / 2 < 0.12
    centres = np.flatnonzero(np.array(p.sources) != "isic")[: len(isic)]
    feats: dict[str, list[np.ndarray]] = {"twin": [], "off_lesion": []}
    for i in [*isic, *centres]:
        r = rendering.render(np.random.default_rng([0, int(i)]), p.truth[i], 64, p.devices[i], twin=True)
        feats["twin"].append(audit.colour_features(r.twin))
        feats["off_lesion"].append(audit.colour_features(r.rgb, ~r.lesion))
    y = np.r_[np.ones(len(isic)), np.zeros(len(centres))].astype(int)
    for k, f in feats.items():
        assert audit.cv_auroc(np.stack(f), y) <= 0.6, k


def test_the_measures_measure():
    """block_share and stroke_width on straight bands of known width; prior_aurocs on patterns at the centre
    and at the rim; colour_features sees only the kept pixels."""
    yy, xx = np.mgrid[0:32, 0:32] + 0.5
    lesion = np.hypot(yy - 16, xx - 16) < 12
    centre, rim = np.hypot(yy - 16, xx - 16) < 3, lesion & (np.hypot(yy - 16, xx - 16) >= 10)
    assert audit.prior_aurocs(lesion, centre) == pytest.approx({"centre/image": 1.0, "centre/lesion": 1.0,
                                                                "lesion_centre/lesion": 1.0})
    assert audit.prior_aurocs(lesion, rim)["centre/lesion"] == pytest.approx(0.0)
    yy, xx = np.mgrid[0:96, 0:96].astype(float)
    for angle in (0.0, 0.5, np.pi / 4):
        for w in (1, 2, 5, 9):
            across = (xx - 48) * np.sin(angle) - (yy - 48) * np.cos(angle)
            band = (across >= -w / 2) & (across < w / 2) & (np.hypot(xx - 48, yy - 48) < 40)
            assert (audit.block_share(band) == 0.0) if w == 1 else (audit.block_share(band) > 0.85), (angle, w)
            assert abs(audit.stroke_width(band) - w) <= 1, (angle, w)
    rgb = np.zeros((64, 64, 3), np.uint8)
    rgb[:, :32] = (200, 30, 30)
    keep = np.zeros((64, 64), bool)
    keep[:, 32:] = True
    f = audit.colour_features(rgb, keep)
    assert f.shape == (60,) and np.allclose(f[:12], 0)  # the kept half is black: means and stds 0
    assert not np.allclose(audit.colour_features(rgb)[:3], 0)
