"""Would a finer Grad-CAM grid localise better? Table 4 of the localisation run with the maps taken at
MobileNetV2's stride-16 stage (``blocks.4``, 12 x 12 cells at 192 px) instead of the stride-32 head.

    make localization                      # once: the run and its report
    .venv/bin/python experiments/localization/stride16.py   # -> outputs/localization/stride16/table4.csv

A one-off measurement (docs/table4.md, "Measured"), not part of ``bcc.evaluate``. The layer is a setting
of the maps, not of the run: ``Table4Settings(gradcam_layer=...)`` here, ``backbone.gradcam_layer=blocks.4``
for a run trained to explain itself there. Everything else — predicted-class sign, masks, baselines,
statistics — is the evaluation's own code. ROAD and Fig. 3 off.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from bcc.evaluation.localisation.records import Table4Settings
from bcc.evaluation.localisation.table4 import mask_report

RUN = Path("outputs/localization/mobilenet/fold0/stage3")
OUT = Path("outputs/localization/stride16")
LAYER = "blocks.4"  # the last stride-16 stage of timm's MobileNetV2


if __name__ == "__main__":
    torch.set_num_threads(2)
    mask_report([RUN], Path("data/synthetic"), OUT, Table4Settings(road_images=0, max_figures=0, gradcam_layer=LAYER))
    t = pd.read_csv(OUT / "table4.csv")
    t = t[(t["group"] == "correct") & (t["background"] == "lesion")]
    print(t[["map", "kind", "n_maps", "gap", "auc", "sig_placement_uncorrected", "sig_placement_bh"]].to_string())
