"""Table 4's records: each test image's maps (the model's, of the predicted class, and the baselines) scored
against its masks, and the inputs of the deletion tests.

Per image with masks (``image_records``): the Grad-CAM map of each output's *predicted class* — the
positive logit where p >= threshold, the negative logit otherwise (Grad-CAM is linear in the target, so
that map is the raw map negated before the ReLU: ``predicted_class_cams``) — and the baselines of
``baselines``, against the output's mask (``map_masks``) with every background there is: the rest
of the image (the paper's), the rest of the lesion (where ``masks/<id>_lesion.png`` exists) and, for a
pattern head, the other patterns' masks. Each pair is scored by ``statistics.region_stats`` and
Quantus' localisation metrics (``quantus_metrics``).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from bcc.core.errors import BadInput
from bcc.core.layout import BEST, PREDICTIONS
from bcc.core.patterns import BCC_CODES, CODES, OUTPUTS
from bcc.core.predictions import PROB_COLUMNS, read_predictions
from bcc.data.contract import LESION
from bcc.data.images import UnreadableImage, read_mask, read_rgb, to_input
from bcc.evaluation.localisation.baselines import centre_map, fit_mask, shuffled_pairs, uniform_map
from bcc.evaluation.localisation.faithfulness import road_scores, twin_path, twin_probabilities
from bcc.evaluation.localisation.quantus_metrics import localisation
from bcc.evaluation.localisation.statistics import placements, region_stats
from bcc.explanation.gradcam import maps_on_picture, postprocess, raw_cams
from bcc.models.checkpoint import load_network
from bcc.models.network import MultitaskNet

BCC = OUTPUTS.index("bcc")


@dataclass(frozen=True)
class Table4Settings:
    """Table 4's settings: the ``eval.table4`` node of conf/eval.yaml builds one (``allow_outside`` from
    ``data.allow_outside``)."""

    threshold: float = 0.5          # p >= threshold: the positive class is predicted (and explained)
    centre_sigma: float = 0.25      # the centre baseline's standard deviation, a fraction of the side
    seed: int = 0                   # shuffled-mask pairing, ROAD's choice of images and imputation noise
    road_images: int = 20           # per run; 0 turns ROAD off (a few seconds per image at 224 px)
    road_percentiles: Sequence[int] = (20, 40, 60, 80)
    max_figures: int = 3            # Fig. 3: median, best, worst
    max_side: int | None = 512      # statistics at most this many pixels on the longer side; None: the image's
    batch_size: int = 16
    allow_outside: bool = False     # data.allow_outside: the dataset's paths may leave its folder
    gradcam_layer: str | None = None  # the maps' layer; None: the run's own (its backbone.gradcam_layer)


def explained_network(run_dir: Path, settings: Table4Settings) -> MultitaskNet:
    """The run's ``best.ckpt``, its Grad-CAM at ``settings.gradcam_layer`` when one is given."""
    net = load_network(Path(run_dir) / BEST)
    if settings.gradcam_layer is not None:
        net.explain_at(settings.gradcam_layer)
    return net


# ---- masks and maps ---------------------------------------------------------------------------------
def map_masks(masks: dict[str, Path]) -> dict[str, np.ndarray]:
    """Which mask each output's map is compared with: output name → boolean mask.

    ``bcc`` (the diagnosis map) → the union of the BCC-pattern masks (U..AT), as the paper combines the
    pattern segmentations into one image; where a dataset has only the union ``<id>.png`` it is used.
    The diagnosis map explains the BCC logit, so PN (evidence against BCC) is left out of its mask;
    images whose only pattern is PN get no diagnosis record. Each code's map → that code's own mask.
    """
    out = {c: read_mask(masks[c]) for c in CODES if c in masks}
    bcc = [out[c] for c in BCC_CODES if c in out]
    if bcc:
        out["bcc"] = np.logical_or.reduce(bcc)
    elif "all" in masks and not any(c in masks for c in CODES):
        out["bcc"] = read_mask(masks["all"])
    return {o: out[o] for o in OUTPUTS if o in out and out[o].any()}


def lesion_mask(masks: dict[str, Path]) -> np.ndarray | None:
    """The whole-lesion mask, None where the dataset has none (or it is empty)."""
    if LESION not in masks:
        return None
    lesion = read_mask(masks[LESION])
    return lesion if lesion.any() else None


def working_shape(shape: tuple[int, int], max_side: int | None) -> tuple[int, int]:
    """The (H, W) the statistics are computed at: the image's, scaled down to `max_side` on the longer side.
    The maps carry nothing finer than a feature cell (an image side / 7 at 224 px input), so this costs them
    nothing; masks are resized with nearest neighbours."""
    h, w = shape
    if max_side is None or max(h, w) <= max_side:
        return h, w
    scale = max_side / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


def fitted_masks(masks: dict[str, np.ndarray], max_side: int | None) -> dict[str, np.ndarray]:
    """The masks at the statistics' working size (``working_shape``); one that vanishes there is dropped."""
    fitted = {o: fit_mask(m, working_shape(m.shape, max_side)) for o, m in masks.items()}
    return {o: m for o, m in fitted.items() if m.any()}


def predicted_signs(p: np.ndarray, threshold: float) -> np.ndarray:
    """+1 where the output's positive class is predicted (p >= threshold), −1 where the negative one is."""
    return np.where(np.asarray(p, dtype=np.float64) >= threshold, 1.0, -1.0)


def signed_cams(cams: torch.Tensor, signs: np.ndarray) -> torch.Tensor:
    """Raw (pre-ReLU) Grad-CAM maps (N, 8, h, w) of the classes `signs` (N, 8) picks: Grad-CAM is linear in
    the target logit, so the map of −y is −(map of y)."""
    return cams * torch.as_tensor(signs, dtype=cams.dtype, device=cams.device)[..., None, None]


def predicted_class_cams(net, rgbs: list[np.ndarray], p: np.ndarray, threshold: float,
                         aspects: list[float | None] | None = None) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """``(inputs (N, 3, S, S), raw maps of the predicted classes (N, 8, h, w), signs (N, 8))`` for images
    whose predicted probabilities are `p` (N, 8, OUTPUTS order); ``maps_on_picture`` makes them [0, 1] maps."""
    aspects = aspects or [None] * len(rgbs)
    x = torch.stack([to_input(rgb, net.preprocess, a) for rgb, a in zip(rgbs, aspects, strict=True)])
    signs = predicted_signs(p, threshold)
    return x, signed_cams(raw_cams(net, x)[0], signs), signs


def _backgrounds(output: str, fg: np.ndarray, masks: dict[str, np.ndarray], lesion: np.ndarray | None,
                 other_patterns: bool = True) -> dict[str, np.ndarray]:
    out = {"image": ~fg}
    if lesion is not None:
        out["lesion"] = lesion & ~fg
    others = [masks[c] for c in CODES if c != output and c in masks]
    if other_patterns and output in CODES and others:
        out["other_patterns"] = np.logical_or.reduce(others) & ~fg
    return out


def image_records(maps: np.ndarray, masks: dict[str, np.ndarray], lesion: np.ndarray | None,
                  shuffled: dict[str, tuple[np.ndarray, np.ndarray | None, str]], centre_sigma: float = 0.25
                  ) -> list[dict]:
    """Records of one image: its predicted-class maps (8, H, W) and the baselines against its masks.

    `shuffled`: output → (another image's mask, that image's lesion or None, its id), fitted to this image.
    """
    centre = centre_map(maps.shape[-2:], centre_sigma)
    # (map name, output, z, fg, backgrounds, whose mask when not this image's)
    jobs: list[tuple[str, str, np.ndarray, np.ndarray, dict[str, np.ndarray], str | None]] = []
    for output, fg in masks.items():
        z = maps[OUTPUTS.index(output)]
        bgs = _backgrounds(output, fg, masks, lesion)
        jobs += [("gradcam", output, z, fg, bgs, None), ("centre", output, centre, fg, bgs, None)]
        if lesion is not None:
            jobs.append(("uniform_lesion", output, uniform_map(lesion), fg,
                         _backgrounds(output, fg, masks, lesion, other_patterns=False), None))
        if output in shuffled:
            other, other_lesion, other_id = shuffled[output]
            jobs.append(("shuffled_mask", output, z, other,
                         _backgrounds(output, other, {}, other_lesion, other_patterns=False), other_id))
    rows, triples = [], []
    where: dict[tuple[str, str | None, str], Any] = {}
    for name, output, z, fg, bgs, mask_of in jobs:
        for bg_name, bg in bgs.items():
            key = (output, mask_of, bg_name)  # the same mask and region: the same placements for every map
            where[key] = where.get(key) or placements(fg, fg | bg)
            stats = region_stats(z, fg, bg, where=where[key])
            if stats is None:
                continue
            rows.append({"map": name, "output": output, "mask_of": mask_of, "background": bg_name,
                         "empty_map": bool(z.max() <= 0), **stats})
            triples.append((z, fg, fg | bg))
    scores = localisation(*zip(*triples, strict=True)) if triples else {}
    for k, row in enumerate(rows):
        row.update({m: float(v[k]) for m, v in scores.items()})
    return rows


# ---- trained runs --------------------------------------------------------------------------------------
def prediction_correct(row: pd.Series, output: str, threshold: float = 0.5):
    """A record's ``correct``: whether p >= `threshold` agrees with the label; NA where it is unknown."""
    y = row.get(f"y_{output}")
    if y is None or pd.isna(y):
        return pd.NA
    return bool((row[f"p_{output}"] >= threshold) == bool(int(y)))


def read_image(path: Path) -> np.ndarray:
    """RGB of an image file; an unreadable one stops with its path and the reason."""
    try:
        return read_rgb(path)[0]
    except UnreadableImage as e:
        raise BadInput(f"{path}: {e}") from None


def _twin_records(net, preds: pd.DataFrame, batch_size: int) -> pd.DataFrame:
    """p(BCC) of every test image with a twin, and of the twin."""
    rows = []
    for start in range(0, len(preds), batch_size):
        chunk = preds.iloc[start:start + batch_size]
        x = torch.stack([to_input(read_image(p), net.preprocess) for p in chunk["image_path"]])
        t = torch.stack([to_input(read_image(p), net.preprocess) for p in chunk["twin_path"]])
        p_image, p_twin = twin_probabilities(net, x, t)
        rows += [{"image_id": i, "y_bcc": y, "p_image": a, "p_twin": b}
                 for i, y, a, b in zip(chunk["image_id"], chunk["y_bcc"], p_image, p_twin, strict=True)]
    return pd.DataFrame(rows)


def _road_records(net, inputs: list[tuple[str, torch.Tensor, np.ndarray, float]], settings: Table4Settings
                  ) -> pd.DataFrame:
    """ROAD of the diagnosis map of the predicted class and of the centre baseline, per chosen image; NaN
    for a map that is 0 everywhere (it ranks no pixel above another)."""
    rows = []
    for start in range(0, len(inputs), settings.batch_size):
        ids, xs, maps, signs = zip(*inputs[start:start + settings.batch_size], strict=True)
        x = torch.stack(xs)
        centre = np.broadcast_to(centre_map(x.shape[-2:], settings.centre_sigma), (len(ids), *x.shape[-2:]))
        for name, m in (("gradcam", np.stack(maps)), ("centre", centre)):
            flat = m.reshape(len(m), -1)
            ok = flat.max(axis=1) > flat.min(axis=1)
            scores = np.full(len(m), np.nan)
            if ok.any():
                scores[ok] = road_scores(net, x[ok], m[ok], np.asarray(signs)[ok], settings.road_percentiles,
                                         settings.seed)
            rows += [{"image_id": i, "map": name, "road": s} for i, s in zip(ids, scores, strict=True)]
    return pd.DataFrame(rows)


def run_records(run_dir: Path, dataset, settings: Table4Settings | None = None
                ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """``(records, twins, road)`` of one run's test fold (``best.ckpt`` + ``predictions.csv``).

    records: one row per (image, output with a mask, map, background) — ``image_records`` plus image_id,
    fold, backbone, run_dir, kind, target (the explained class) and correct; twins: image_id, y_bcc, p_image, p_twin
    for test images with ``twins/<id>.png``; road: image_id, map, road for up to ``settings.road_images``
    images with a diagnosis mask (a seeded choice).
    """
    settings, run_dir = settings or Table4Settings(), Path(run_dir)
    preds = read_predictions(run_dir / PREDICTIONS)
    patterned = {i for i, files in dataset.masks.items() if set(files) - {LESION}}  # a lesion mask alone: no record
    masked = preds[preds["image_id"].isin(patterned)].reset_index(drop=True)
    preds["twin_path"] = [twin_path(dataset.root, i) for i in preds["image_id"]]
    preds = preds[preds["twin_path"].notna()].assign(image_path=lambda d: [dataset.image_path(i) for i in d["image_id"]])
    if masked.empty and preds.empty:
        return pd.DataFrame(), pd.DataFrame(), pd.DataFrame()
    net = explained_network(run_dir, settings)
    masks = {i: fitted_masks(map_masks(dataset.masks[i]), settings.max_side) for i in masked["image_id"]}
    lesions = {i: fitted_masks({"lesion": m} if (m := lesion_mask(dataset.masks[i])) is not None else {},
                          settings.max_side).get("lesion") for i in masked["image_id"]}
    pairs = {o: shuffled_pairs([i for i in masked["image_id"] if o in masks[i]], settings.seed) for o in OUTPUTS}
    with_bcc = [i for i in masked["image_id"] if "bcc" in masks[i]]
    road_ids = set(np.random.default_rng(settings.seed).permutation(with_bcc)[:settings.road_images])
    rows, road_inputs = [], []
    for start in range(0, len(masked), settings.batch_size):
        chunk = masked.iloc[start:start + settings.batch_size]
        rgbs = [read_image(dataset.image_path(i)) for i in chunk["image_id"]]
        aspects = [dataset.aspect(i) for i in chunk["image_id"]]
        x, cams, signs = predicted_class_cams(net, rgbs, chunk[PROB_COLUMNS].to_numpy(np.float64), settings.threshold,
                                              aspects)
        for k, ((_, row), rgb) in enumerate(zip(chunk.iterrows(), rgbs, strict=True)):
            image_id, shape = str(row["image_id"]), working_shape(rgb.shape[:2], settings.max_side)
            maps = maps_on_picture(cams[k:k + 1], shape, net.preprocess, aspects[k])[0].numpy()
            shuffled = {o: (fit_mask(masks[j][o], shape), None if (lj := lesions[j]) is None else fit_mask(lj, shape), j)
                        for o, pr in pairs.items() if (j := pr.get(image_id))}
            for rec in image_records(maps, masks[image_id], lesions[image_id], shuffled, settings.centre_sigma):
                o = rec["output"]
                rows.append({"image_id": image_id, "fold": row.get("fold"), "backbone": net.backbone_name,
                             "run_dir": str(run_dir),
                             "kind": "diagnosis" if o == "bcc" else "patterns",
                             "target": "positive" if signs[k, OUTPUTS.index(o)] > 0 else "negative",
                             "correct": prediction_correct(row, o, settings.threshold), **rec})
            if image_id in road_ids:
                road_map = postprocess(cams[k:k + 1, BCC:BCC + 1], x.shape[-2:])[0, 0].numpy()
                road_inputs.append((image_id, x[k], road_map, signs[k, BCC]))
    road = _road_records(net, road_inputs, settings).assign(run_dir=str(run_dir)) if road_inputs else pd.DataFrame()
    twins = _twin_records(net, preds, settings.batch_size).assign(run_dir=str(run_dir)) \
        if len(preds) else pd.DataFrame()
    return pd.DataFrame(rows), twins, road
