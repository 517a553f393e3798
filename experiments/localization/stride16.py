"""Would a finer Grad-CAM grid localise better? Table 4 of the localisation run with the maps taken at
MobileNetV2's stride-16 stage (``blocks[4]``, 12 x 12 cells at 192 px) instead of the stride-32 head.

    make localization                      # once: the run and its report
    .venv/bin/python experiments/localization/stride16.py   # -> outputs/localization/stride16/table4.csv

A one-off measurement (docs/table4.md, "Measured"), not part of ``bcc.evaluate``: the maps come from
autograd (Grad-CAM's channel weights = spatial mean of d logit / d A at ``blocks[4]``), everything else
— predicted-class sign, masks, baselines, statistics — is the evaluation's own code. ROAD and Fig. 3 off.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from bcc.evaluation import mask_records
from bcc.evaluation.localisation.table4 import mask_report
from bcc.evaluation.localisation.records import Table4Settings

RUN = Path("outputs/localization/mobilenet/fold0/stage3")
OUT = Path("outputs/localization/stride16")
STAGE = 4  # blocks[4]: the last stride-16 stage of timm's MobileNetV2


def stride16_cams(net, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw (pre-ReLU) Grad-CAM maps (N, 8, h, w) at ``blocks[STAGE]`` and the logits (N, 8)."""
    net.eval()
    bb = net.backbone
    with torch.no_grad():
        a = bb.bn1(bb.conv_stem((x - net.mean) / net.std))
        for block in bb.blocks[:STAGE + 1]:
            a = block(a)
    a = a.detach().requires_grad_(True)
    with torch.enable_grad():
        h = a
        for block in bb.blocks[STAGE + 1:]:
            h = block(h)
        logits = net.head_logits(bb.global_pool(bb.bn2(bb.conv_head(h))).flatten(1))
        cams = []
        for k in range(logits.shape[1]):
            (grad,) = torch.autograd.grad(logits[:, k].sum(), a, retain_graph=True)
            cams.append((grad.mean(dim=(2, 3), keepdim=True) * a).sum(1))
    return torch.stack(cams, 1).detach(), logits.detach()


if __name__ == "__main__":
    torch.set_num_threads(2)
    mask_records.raw_cams = stride16_cams  # the one substitution: where Table 4 takes its maps
    mask_report([RUN], Path("data/synthetic"), OUT, Table4Settings(road_images=0, max_figures=0))
    t = pd.read_csv(OUT / "table4.csv")
    t = t[(t["group"] == "correct") & (t["background"] == "lesion")]
    print(t[["map", "kind", "n_maps", "gap", "auc", "sig_placement_uncorrected", "sig_placement_bh"]].to_string())
