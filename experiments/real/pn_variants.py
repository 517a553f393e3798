"""What holds PN back on Derm7pt? The record against variants of it, on the same folds.

The paper's stage 2 fine-tunes the last three blocks on BCC/non-BCC only; stage 3 then trains the PN and AT
heads on that frozen backbone, and PN stays where a linear probe on its features does (0.83). Two variants:

- ``stage 2 on BCC, PN and AT``: from the record's own stage-1 models, stage 2 trains the last blocks and the
  diagnosis, PN and AT heads on every labelled output; the record's stage 3 follows unchanged;
- ``Lite1 at 240 px``: the whole run with the larger installed backbone at its ImageNet input.

    mkdir -p /tmp/s2/efficientnet_lite0 && for f in 0 1 2; do mkdir -p /tmp/s2/efficientnet_lite0/fold$f
        cp -r outputs/real/efficientnet_lite0/fold$f/stage1 /tmp/s2/efficientnet_lite0/fold$f/; done
    python -m bcc.train experiment=real stage=2 fold=0,1,2 --multirun paths.output_dir=/tmp/s2 \\
        'stage.trainable=[last_blocks,diagnosis_head,negative_head,patterns_head]' \\
        stage.loss_weights.negative=1.0 stage.loss_weights.patterns=1.0
    python -m bcc.train experiment=real stage=3 fold=0,1,2 --multirun paths.output_dir=/tmp/s2
    python -m bcc.train experiment=real backbone=efficientnet_lite1 data.image_size=240 stage=1,2,3 \\
        fold=0,1,2 --multirun paths.output_dir=/tmp/lite1
    python experiments/real/pn_variants.py --dataset data/real/merged --out experiments/real \\
        "record (Lite0 224 px)=outputs/real/efficientnet_lite0" \\
        "stage 2 on BCC, PN and AT=/tmp/s2/efficientnet_lite0" "Lite1 at 240 px=/tmp/lite1/efficientnet_lite1"

writes ``pn_variants.csv``: AUROC per run, stage, split (each fold's validation slice and its test fold),
fold and target (PN, AT and BCC within Derm7pt, BCC within HAM10000 and over all sources), and prints the
means. Read the validation rows to choose, the test rows to report.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from bcc.core.classification import roc_auc
from bcc.core.layout import PREDICTIONS, VAL_PREDICTIONS
from bcc.core.predictions import read_predictions

TARGETS = (("PN", "derm7pt"), ("AT", "derm7pt"), ("bcc", "derm7pt"), ("bcc", "ham10000"), ("bcc", None))
SPLITS = {"validation": VAL_PREDICTIONS, "test": PREDICTIONS}


def scores(runs: dict[str, Path], sources: pd.DataFrame, stages=(2, 3)) -> pd.DataFrame:
    rows = []
    for name, root in runs.items():
        for stage in stages:
            for split, file in SPLITS.items():
                for fold_dir in sorted(root.glob("fold*")):
                    path = fold_dir / f"stage{stage}" / file
                    if not path.is_file():
                        continue
                    d = read_predictions(path).merge(sources, on="image_id")
                    for output, source in TARGETS:
                        s = d if source is None else d[d["source"] == source]
                        s = s[s[f"y_{output}"].notna() & s[f"p_{output}"].notna()]
                        if s[f"y_{output}"].nunique() == 2:
                            rows.append({"run": name, "stage": stage, "split": split, "fold": fold_dir.name,
                                         "target": f"{output} {source or 'all sources'}",
                                         "auroc": roc_auc(s[f"y_{output}"], s[f"p_{output}"])})
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="NAME=FOLDER: a run's backbone folder (fold*/stage*/), the record first")
    parser.add_argument("--dataset", type=Path, required=True, help="the merged dataset (its images.csv names sources)")
    parser.add_argument("--out", type=Path, required=True)
    a = parser.parse_args()
    if bad := [r for r in a.runs if "=" not in r]:
        parser.error(f"{bad[0]!r}: give each run as NAME=FOLDER")
    runs = {name: Path(folder) for name, folder in (r.split("=", 1) for r in a.runs)}
    sources = pd.read_csv(a.dataset / "images.csv", usecols=["image_id", "source"])
    table = scores(runs, sources)
    a.out.mkdir(parents=True, exist_ok=True)
    table.round(4).to_csv(a.out / "pn_variants.csv", index=False)
    summary = table.groupby(["split", "target", "stage", "run"])["auroc"].agg(["mean", "std", "count"])
    print(summary.round(3).to_string())


if __name__ == "__main__":
    main()
