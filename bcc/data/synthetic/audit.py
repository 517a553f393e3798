"""The benchmark's audit: the figures its guarantees rest on, measured on a generated set (tests, benchmarks).

Shortcuts: a logistic regression on whole-image colour statistics (RGB and HSV means, standard deviations
and 8-bin histograms at 64 px) is the cheapest shortcut a network could learn. On the real images it
should predict BCC well (the patterns' own colour is evidence); on the twins (no patterns) and on the
pixels off the lesion it must not, or something other than the patterns carries the label. Structures:
how wide the painted strokes are at the resolution a network trains at, and how much of the image the
masks cover. Placement: how well maps that ignore the image (favouring its centre, or the lesion's)
single out the pattern pixels (scikit-learn's ROC AUC of the pixels).
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from bcc.core.patterns import CODES, clinical_rule
from bcc.data.contract import LESION

AUDIT_SIZE = 64
BINS = 8


def colour_features(rgb: np.ndarray, keep: np.ndarray | None = None) -> np.ndarray:
    """(60,) float: per channel of RGB and HSV (OpenCV ranges) the mean, std and an 8-bin histogram.

    ``rgb`` uint8 (H, W, 3) is resized to 64 px first; ``keep`` (H, W) bool restricts the statistics to
    those pixels (resized with it; an empty selection gives zeros)."""
    small = cv2.resize(rgb, (AUDIT_SIZE, AUDIT_SIZE), interpolation=cv2.INTER_AREA)
    px = np.concatenate([small, cv2.cvtColor(small, cv2.COLOR_RGB2HSV)], -1).reshape(-1, 6).astype(np.float32)
    if keep is not None:
        sel = cv2.resize(keep.astype(np.float32), (AUDIT_SIZE, AUDIT_SIZE), interpolation=cv2.INTER_AREA) >= 0.5
        px = px[sel.reshape(-1)]
    if len(px) == 0:
        return np.zeros(6 * (2 + BINS), np.float32)
    hists = [np.histogram(px[:, j], bins=BINS, range=(0, 180 if j == 3 else 256))[0] / len(px) for j in range(6)]
    return np.concatenate([px.mean(0), px.std(0), *hists]).astype(np.float32)


def cv_auroc(features: np.ndarray, y: np.ndarray, seed: int = 0, folds: int = 5) -> float:
    """AUROC of the out-of-fold probabilities of a standardised logistic regression (stratified k-fold)."""
    model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    p = cross_val_predict(model, features, y, cv=cv, method="predict_proba")[:, 1]
    return float(roc_auc_score(y, p))


def opening(structure: np.ndarray, k: int) -> np.ndarray:
    """The structure's pixels covered by a k x k disc that fits inside it (morphological opening; the dilation
    uses the reflected disc and anchor, which OpenCV's even-sized kernels would otherwise shift by a pixel)."""
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    a = k // 2
    eroded = cv2.erode(structure.astype(np.uint8), disc, anchor=(a, a), borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return cv2.dilate(eroded, disc[::-1, ::-1].copy(), anchor=(k - 1 - a, k - 1 - a)) > 0


def block_share(structure: np.ndarray) -> float:
    """Share of a structure's pixels that a 2x2 block of its pixels covers: 1 for strokes >= 2 px wide, 0 for
    1 px strokes."""
    b = structure.astype(bool)
    return float(opening(b, 2)[b].mean()) if b.any() else 0.0


def stroke_width(structure: np.ndarray, largest: int = 24) -> float:
    """Median local thickness (px) of a structure: for each of its pixels the diameter of the largest disc
    that fits inside the structure and covers it (up to ``largest``)."""
    b = structure.astype(bool)
    if not b.any():
        return 0.0
    thick = np.zeros(b.shape, np.int32)
    for k in range(1, largest + 1):
        covered = opening(b, k)
        if not covered.any():
            break
        thick[covered] = k
    return float(np.median(thick[b]))


def downsample(structure: np.ndarray, size: int) -> np.ndarray:
    """A boolean structure as a network sees it at ``size`` px: area-averaged, kept where it covers half a pixel."""
    return cv2.resize(structure.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA) >= 0.5


def visible_core(rgb: np.ndarray, without: np.ndarray) -> np.ndarray:
    """Where a layer changed an image by at least half its local peak (its strokes at half maximum), given
    the image ``without`` it."""
    d = np.abs(rgb.astype(np.float32) - without.astype(np.float32)).sum(-1)
    return (d > 0) & (d >= 0.5 * cv2.dilate(d, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (9, 9))))


def prior_aurocs(lesion: np.ndarray, patterns: np.ndarray) -> dict[str, float]:
    """How well two maps that ignore the image separate the pattern pixels from the others.

    ``centre/image``: closeness to the image centre, patterns against the rest of the image;
    ``centre/lesion``: the same against the rest of the lesion; ``lesion_centre/lesion``: closeness to the
    lesion's centroid against the rest of the lesion. 0.5 = no better than chance."""
    h, w = lesion.shape
    yy, xx = np.mgrid[0:h, 0:w] + 0.5
    ly, lx = np.nonzero(lesion)
    centre = -np.hypot(xx - w / 2, yy - h / 2)
    lesion_centre = -np.hypot(xx - lx.mean() - 0.5, yy - ly.mean() - 0.5)
    lesion = lesion | patterns
    return {"centre/image": float(roc_auc_score(patterns.ravel(), centre.ravel())),
            "centre/lesion": float(roc_auc_score(patterns[lesion], centre[lesion])),
            "lesion_centre/lesion": float(roc_auc_score(patterns[lesion], lesion_centre[lesion]))}


def _read(path: Path, flags: int) -> np.ndarray:
    img = cv2.imread(str(path), flags)
    if img is None:
        raise FileNotFoundError(f"{path}: missing or unreadable")
    return img


def _rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(_read(path, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def audit(root: Path, seed: int = 0) -> dict[str, float]:
    """The shortcut AUROCs of a generated dataset with twins (``generate(..., twins=True)``).

    ``bcc/image``: BCC from the real images (the patterns' evidence, should be high); ``bcc/twin``: BCC
    from the twins; ``bcc/off_lesion``: BCC from the real images' pixels off the lesion mask;
    ``isic/twin``, ``isic/off_lesion``: the isic source against the centres (the device's look)."""
    import pandas as pd

    root = Path(root)
    images = pd.read_csv(root / "images.csv", dtype=str)
    truth = pd.read_csv(root / "truth.csv", dtype={"image_id": str}).set_index("image_id").loc[images["image_id"]]
    y = clinical_rule(truth[list(CODES)].to_numpy())
    feats: dict[str, list[np.ndarray]] = {"image": [], "twin": [], "off_lesion": []}
    for image_id, rel in zip(images["image_id"], images["image"], strict=True):
        rgb = _rgb(root / rel)
        off = _read(root / "masks" / f"{image_id}_{LESION}.png", cv2.IMREAD_GRAYSCALE) == 0
        feats["image"].append(colour_features(rgb))
        feats["twin"].append(colour_features(_rgb(root / "twins" / f"{image_id}.png")))
        feats["off_lesion"].append(colour_features(rgb, off))
    X = {k: np.stack(v) for k, v in feats.items()}
    out = {f"bcc/{k}": cv_auroc(X[k], y, seed) for k in X}
    isic = (images["source"] == "isic").to_numpy().astype(int)
    out.update({f"isic/{k}": cv_auroc(X[k], isic, seed) for k in ("twin", "off_lesion")})
    return out


def structure_figures(root: Path, train_size: int = 128) -> dict[str, float]:
    """Mask coverage, placement and stroke widths of a generated set with twins, over its segmented subset.

    ``coverage/<CODE>``, ``coverage/union``, ``coverage/lesion``: mean share of the image; ``prior/...``:
    the mean ``prior_aurocs`` of the union masks; ``width/<CODE>``:
    median stroke width (px, image resolution) of the visible core (``visible_core`` against the twin) in
    images with that one pattern; ``thick/<CODE>``: the least ``block_share`` of those cores at
    ``train_size`` px, and ``thick_mask/<CODE>`` of the masks."""
    import pandas as pd

    root = Path(root)
    truth = pd.read_csv(root / "truth.csv", dtype={"image_id": str}).set_index("image_id")
    cov: dict[str, list[float]] = {}
    width: dict[str, list[float]] = {}
    thick: dict[str, list[float]] = {}
    thick_mask: dict[str, list[float]] = {}
    prior: dict[str, list[float]] = {}
    for image_id, t in truth.iterrows():
        lesion = _read(root / "masks" / f"{image_id}_{LESION}.png", cv2.IMREAD_GRAYSCALE) > 0
        cov.setdefault("lesion", []).append(float(lesion.mean()))
        if not (root / "masks" / f"{image_id}.png").is_file():
            continue
        union = _read(root / "masks" / f"{image_id}.png", cv2.IMREAD_GRAYSCALE) > 0
        cov.setdefault("union", []).append(float(union.mean()))
        for k, v in prior_aurocs(lesion, union).items():
            prior.setdefault(k, []).append(v)
        present = [c for c in CODES if t[c]]
        for c in present:
            m = _read(root / "masks" / f"{image_id}_{c}.png", cv2.IMREAD_GRAYSCALE) > 0
            cov.setdefault(c, []).append(float(m.mean()))
            thick_mask.setdefault(c, []).append(block_share(downsample(m, train_size)))
        if len(present) == 1:
            c = present[0]
            core = visible_core(_rgb(root / "images" / f"{image_id}.png"), _rgb(root / "twins" / f"{image_id}.png"))
            width.setdefault(c, []).append(stroke_width(core))
            thick.setdefault(c, []).append(block_share(downsample(core, train_size)))
    out = {f"coverage/{k}": float(np.mean(v)) for k, v in cov.items()}
    out.update({f"prior/{k}": float(np.mean(v)) for k, v in prior.items()})
    out.update({f"width/{k}": float(np.median(v)) for k, v in width.items()})
    out.update({f"thick/{k}": float(np.min(v)) for k, v in thick.items()})
    out.update({f"thick_mask/{k}": float(np.min(v)) for k, v in thick_mask.items()})
    return out
