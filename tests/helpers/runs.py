"""Hand-made run folders for the evaluation tests: 5 folds x stages of predictions.csv, configs, a dataset."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from bcc.core.patterns import CODES, OUTPUTS
from bcc.models.calibration import fit_calibration

# four lesions per fold, labels in OUTPUTS order (bcc, PN, U, ON, MG, ML, SW, AT)
LESIONS = {
    "A": [1, 0, 1, 0, 0, 0, 0, 1],  # BCC with U and AT
    "B": [0, 1, 0, 0, 0, 0, 0, 0],  # non-BCC with PN
    "C": [0, 0, 0, 0, 0, 0, 0, 0],  # non-BCC, no pattern
    "D": [1, 0, 0, 1, 0, 0, 0, 0],  # BCC with ON
}
# per fold: (lesion, output) → probability overriding the perfect 0.9/0.1
CHANGES = {
    0: {},
    1: {("D", "bcc"): 0.2, ("A", "U"): 0.1, ("A", "AT"): 0.1, ("A", "ON"): 0.9},  # BCC miss; A's patterns missed
    2: {("D", "bcc"): 0.2, ("C", "bcc"): 0.8},
    3: {("C", "bcc"): 0.6, ("C", "MG"): 0.7},                                      # C not all-zero any more
    4: {},
}
# expected: BCC accuracy per fold 1, .75, .5, .75, 1; detection rate 1, .5, 1, 1, 1; no-pattern recall 1,1,1,0,1
BCC_ACC = [1.0, 0.75, 0.5, 0.75, 1.0]
DETECTION = [1.0, 0.5, 1.0, 1.0, 1.0]
NO_PATTERN_RECALL = [1.0, 1.0, 1.0, 0.0, 1.0]


def fold_predictions(fold: int) -> pd.DataFrame:
    rows = []
    for name, y in LESIONS.items():
        row = {"image_id": f"{name}{fold}", "fold": fold}
        row.update({f"y_{o}": v for o, v in zip(OUTPUTS, y, strict=True)})
        row.update({f"p_{o}": CHANGES[fold].get((name, o), 0.9 if v else 0.1) for o, v in zip(OUTPUTS, y, strict=True)})
        rows.append(row)
    return pd.DataFrame(rows)


def write_runs(root: Path, backbone: str = "mobilenet", stages=(0, 1, 2, 3), folds=range(5), k: int = 5,
               dataset: Path | None = None, image_size: int = 32, experiment: str = "demo") -> Path:
    """Run folders under `root` whose config names `dataset` as the data, by default ``<root>/data/synthetic``:
    an absolute path under the test's own folder that no test writes, never a path relative to the
    working directory (after ``make demo`` the checkout's ``data/synthetic`` would be found there)."""
    dataset = Path(dataset) if dataset is not None else Path(root).resolve() / "data" / "synthetic"
    for fold in folds:
        for stage in stages:
            job = root / backbone / f"fold{fold}" / f"stage{stage}"
            (job / ".hydra").mkdir(parents=True, exist_ok=True)
            fold_predictions(fold).to_csv(job / "predictions.csv", index=False)
            (job / ".hydra" / "config.yaml").write_text(
                f"experiment_name: {experiment}\nfold: {fold}\n"
                f"paths: {{data_dir: {dataset.parent}}}\n"
                f"data: {{kind: synthetic, root: '${{paths.data_dir}}/{dataset.name}', "
                f"k: {k}, image_size: {image_size}}}\n"
                f"backbone: {{name: {backbone}, timm_name: mobilenetv2_100, pretrained: false, weights: null}}\n")
            start = {0: "scratch", 1: "stage0"}.get(stage, f"stage{stage - 1}")
            (job / "metrics.json").write_text(json.dumps({
                "experiment": experiment, "backbone": backbone, "timm_name": "mobilenetv2_100", "fold": fold,
                "stage": stage, "start": start, "epochs": 1, "image_size": image_size, "seed": 0,
                "machine": {"cpu": "Test CPU", "cores": 2, "gpu": None, "torch": "2.14.1"}}))
    return root


def write_val(root: Path, backbone: str = "mobilenet", stage: int = 3, folds=range(5)) -> None:
    """val_predictions.csv where p_bcc separates the classes between 0.3 and 0.4 (others at 0.5), and the
    calibration.json training fits on it."""
    for fold in folds:
        rows = []
        for i, (y, p) in enumerate([(1, 0.4), (1, 0.8), (0, 0.3), (0, 0.1)]):
            row = {"image_id": f"v{fold}{i}", "fold": fold}
            row.update({f"y_{o}": y for o in OUTPUTS})
            row.update({f"p_{o}": p if o == "bcc" else (0.9 if y else 0.1) for o in OUTPUTS})
            rows.append(row)
        job = root / backbone / f"fold{fold}" / f"stage{stage}"
        val = pd.DataFrame(rows)
        val.to_csv(job / "val_predictions.csv", index=False)
        (job / "calibration.json").write_text(json.dumps({"fitted_on": "test fixture",
                                                          "outputs": fit_calibration(val)}))


def write_dataset(root: Path, n: int = 20, raters: int = 3, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    ids = [f"img{i}" for i in range(n)]
    pd.DataFrame({"image_id": ids, "image": [f"images/{i}.png" for i in ids], "source": "x"}).to_csv(
        root / "images.csv", index=False)
    truth = rng.integers(0, 2, (n, len(CODES)))
    ann = []
    for r in range(raters):
        noisy = np.where(rng.random(truth.shape) < 0.1, 1 - truth, truth)
        for i, img in enumerate(ids):
            ann.append({"image_id": img, "rater": f"r{r}", **dict(zip(CODES, noisy[i], strict=True))})
    pd.DataFrame(ann).to_csv(root / "annotations.csv", index=False)
    labels = pd.DataFrame(truth, columns=list(CODES))
    labels.insert(0, "image_id", ids)
    labels["bcc"] = ((labels["PN"] == 0) & (labels[list(CODES[1:])].sum(axis=1) > 0)).astype(int)
    labels.to_csv(root / "labels.csv", index=False)
    pd.DataFrame([{"rater": f"r{r}", "code": c, "sensitivity": 0.9, "specificity": 0.92}
                  for r in range(raters) for c in CODES]).to_csv(root / "rater_quality.csv", index=False)
    return root
