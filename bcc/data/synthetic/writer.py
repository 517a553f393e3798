"""The synthetic dataset directory: images, masks, twins and the contract's CSV files, written atomically."""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from bcc.core.config import Range
from bcc.core.errors import UsageError
from bcc.core.io import check_replaceable, staged_folder
from bcc.core.patterns import CODES, clinical_rule
from bcc.data.contract import LESION
from bcc.data.synthetic.labels import global_rng, sample_devices, sample_sources, sample_truth, sample_xai
from bcc.data.synthetic.raters import RATER_NAMES, RATERS, simulate_raters
from bcc.data.synthetic.rendering import render

OWNER_NAME = "bcc.data.synthetic"
N_RANGE = Range(int, 1, 1_000_000)
SIZE_RANGE = Range(int, 32, 4096, why="a 4096 px set of 1559 images is already 78 GB decoded")
PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 3, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]
MASK_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 3, cv2.IMWRITE_PNG_BILEVEL, 0]


def _write_png(path: Path, arr: np.ndarray, params) -> None:
    ok, buf = cv2.imencode(".png", arr, params)
    if not ok:  # pragma: no cover
        raise RuntimeError(f"PNG encoding failed for {path}")
    path.write_bytes(buf.tobytes())


def _render_one(job) -> None:
    """Render and write image ``i``: its lesion mask, its pattern masks in the XAI subset, its twin if asked.

    Runs in workers too."""
    root, i, image_id, patterns, size, seed, device, with_masks, twins = job
    r = render(np.random.default_rng([seed, i]), patterns, size, device, twin=twins)
    root = Path(root)
    _write_png(root / "images" / f"{image_id}.png", cv2.cvtColor(r.rgb, cv2.COLOR_RGB2BGR), PNG_PARAMS)
    if r.twin is not None:  # asked for with twins
        _write_png(root / "twins" / f"{image_id}.png", cv2.cvtColor(r.twin, cv2.COLOR_RGB2BGR), PNG_PARAMS)
    _write_png(root / "masks" / f"{image_id}_{LESION}.png", r.lesion.astype(np.uint8) * 255, MASK_PARAMS)
    if with_masks and r.masks:
        union = np.zeros((size, size), bool)
        for c, m in r.masks.items():
            union |= m
            _write_png(root / "masks" / f"{image_id}_{c}.png", m.astype(np.uint8) * 255, MASK_PARAMS)
        _write_png(root / "masks" / f"{image_id}.png", union.astype(np.uint8) * 255, MASK_PARAMS)


def _init_worker() -> None:
    cv2.setNumThreads(1)


def _write_csv(path: Path, header, rows) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def _fmt(v: float) -> str:
    return "" if np.isnan(v) else str(int(v))


@dataclass(frozen=True)
class Plan:
    """Everything about the set but its pixels, drawn from the global streams of ``seed``."""

    truth: np.ndarray  # (n, 7) 0/1 in CODES order
    sources: list[str]  # images.csv's source
    devices: list[str]  # the device look each image is rendered with (a centre's)
    xai: np.ndarray  # bool (n,): the segmented subset, whose pattern masks are written
    ratings: np.ndarray  # (4, n, 7) the raters' 1/0/NaN


def plan(n: int, seed: int) -> Plan:
    """What ``generate(n=n, seed=seed)`` gives each image before drawing it (image ``i`` is then rendered
    from ``default_rng([seed, i])`` with ``truth[i]`` and ``devices[i]``)."""
    truth = sample_truth(n, global_rng(seed, n, 0))
    sources = sample_sources(truth, global_rng(seed, n, 1))
    return Plan(truth, sources, sample_devices(sources, global_rng(seed, n, 4)),
                sample_xai(truth, global_rng(seed, n, 2)), simulate_raters(truth, global_rng(seed, n, 3)))


def generate(out: Path, n: int = 1559, size: int = 256, seed: int = 0, progress: bool = True,
             workers: int | None = None, twins: bool = False) -> Path:
    """Write the synthetic dataset into ``out`` and return ``out``: built in a temporary folder and swapped in
    whole; an existing ``out`` is replaced only if it is empty or a synthetic set this function wrote
    (``core.io.staged_folder``), never a folder holding anything else.

    ``workers``: processes for rendering (default: 1 for n < 200, else min(cpu count, 8)); the output
    does not depend on it. ``twins``: also write ``twins/<image_id>.png``, each image without its patterns.
    """
    from tqdm import tqdm

    out = Path(out)
    for key, value, rng in (("--n", n, N_RANGE), ("--size", size, SIZE_RANGE)):
        if not rng.accepts(value):
            raise UsageError(f"{key} {value}: expected {rng.describe()}")
    check_replaceable(out, OWNER_NAME, "--out")  # before minutes of rendering
    p = plan(n, seed)
    truth, sources, ratings = p.truth, p.sources, p.ratings
    ids = [f"syn_{i:05d}" for i in range(n)]

    with staged_folder(out, OWNER_NAME, "--out") as tmp:
        (tmp / "images").mkdir()
        (tmp / "masks").mkdir()
        if twins:
            (tmp / "twins").mkdir()
        jobs = [(str(tmp), i, ids[i], tuple(int(v) for v in truth[i]), size, seed, p.devices[i], bool(p.xai[i]),
                 bool(twins)) for i in range(n)]
        if workers is None:
            workers = 1 if n < 200 else max(1, min(os.cpu_count() or 1, 8))
        bar = tqdm(total=n, disable=not progress, desc="synthetic", unit="img")
        if workers <= 1:
            for job in jobs:
                _render_one(job)
                bar.update()
        else:
            import multiprocessing as mp

            with mp.get_context("spawn").Pool(workers, initializer=_init_worker) as pool:
                for _ in pool.imap_unordered(_render_one, jobs, chunksize=8):
                    bar.update()
        bar.close()

        _write_csv(tmp / "images.csv", ["image_id", "image", "source"],
                   [(ids[i], f"images/{ids[i]}.png", sources[i]) for i in range(n)])
        _write_csv(tmp / "truth.csv", ["image_id", *CODES],
                   [(ids[i], *map(int, truth[i])) for i in range(n)])
        _write_csv(tmp / "annotations.csv", ["image_id", "rater", *CODES],
                   [(ids[i], name, *(_fmt(v) for v in ratings[r, i]))
                    for i in range(n) for r, name in enumerate(RATER_NAMES)])
        _write_csv(tmp / "raters.csv", ["rater", "code", "sensitivity", "specificity"],
                   [(name, c, f"{RATERS[name][0][j]:.2f}", f"{RATERS[name][1][j]:.2f}")
                    for name in RATER_NAMES for j, c in enumerate(CODES)])
    return out


def summary(out: Path) -> str:
    """A short text summary of a generated dataset (counts per code, BCC/non-BCC, masks, twins, sources)."""
    import pandas as pd

    out = Path(out)
    truth = pd.read_csv(out / "truth.csv")
    images = pd.read_csv(out / "images.csv")
    bcc = clinical_rule(truth[list(CODES)].to_numpy())
    ids = set(truth["image_id"])
    n_masked = sum((out / "masks" / f"{i}.png").is_file() for i in ids)
    n_lesion = sum((out / "masks" / f"{i}_{LESION}.png").is_file() for i in ids)
    n_twins = sum((out / "twins" / f"{i}.png").is_file() for i in ids)
    lines = [f"{out}: {len(truth)} images, BCC {int(bcc.sum())} / non-BCC {int(len(bcc) - bcc.sum())}",
             "codes: " + ", ".join(f"{c} {int(truth[c].sum())}" for c in CODES),
             f"pattern masks: {n_masked} images; lesion masks: {n_lesion}; twins: {n_twins}",
             "sources: " + ", ".join(f"{k} {v}" for k, v in sorted(images["source"].value_counts().items()))]
    return "\n".join(lines)
