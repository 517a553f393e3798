"""The fold ensemble as one ONNX model.

``python -m bcc.export checkpoint='outputs/demo/mobilenet/fold*/stage3/best.ckpt' output=<file.onnx>``
(a glob or a list: several checkpoints) writes one graph running the K fold networks side by side:

- ``logits`` (N, 8): the mean of the folds' logits (a geometric mean of their odds), what triage ranks on;
- ``cams`` (N, 8, h, w): the mean of the folds' raw Grad-CAM maps. With linear heads each fold's map sums
  to its logit's share from the features (J_k · A_k / hw, ``bcc.deploy.onnx_export``), so the mean map is
  the same decomposition of the mean logit: the ensemble's own Grad-CAM, not a picture of one fold;
- ``fold_logits`` (N, K, 8): every fold's logits, from which triage reads the folds' disagreement (a case
  whose folds fall on both sides of the operating threshold is flagged for review whatever its mean).

The members must share backbone and preprocessing (their maps are then on one grid); an output counts as
trained when every member's head for it was (``bcc.trained_outputs``). They must also be one stage of
distinct folds of one training (:func:`fold_members`, from each checkpoint's ``trained_on`` record, else its
run folder): stage 0 and stage 3 of one fold, a fold twice, or folds trained on different data are
refused; a part of the folds (2 of 5) is exported and the card and the message say what it is, never
"fold ensemble". The graph is checked against torch (the members' own logits and ``raw_cams``) before it
is kept, as a single-model export is (``bcc.deploy.onnx_model.export_checked``). The guaranteed threshold
is ``bcc.deploy.guarantee_calibration``'s.
"""
from __future__ import annotations

import glob
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException
from torch import nn

from bcc.core.errors import BadInput
from bcc.core.layout import parse_job, read_job_config
from bcc.core.log import get_logger
from bcc.core.patterns import CODES, OUTPUTS
from bcc.data.contract import dataset_hash
from bcc.deploy.model_card import ModelCard
from bcc.deploy.onnx_export import ExplainedNet, closed_form, dataset_root_of, maps_metadata, reference
from bcc.deploy.onnx_model import FOLDS_NAME, MAPS_NAME, OUTPUT_NAME, export_checked
from bcc.deploy.scorers import load_torch_network
from bcc.deploy.thresholds import load_thresholds
from bcc.models.checkpoint import read_checkpoint
from bcc.models.network import MultitaskNet, untrained_note

log = get_logger(__name__)


def checkpoints_of(value: str | Sequence[str]) -> list[Path]:
    """``checkpoint=``'s files: one path, a glob (``fold*``) or a list of either, sorted; none found is an error."""
    items = [value] if isinstance(value, (str, Path)) else list(value)
    found: list[Path] = []
    for item in map(str, items):
        hits = sorted(glob.glob(item)) if glob.has_magic(item) else [item]
        if not hits:
            raise BadInput(f"checkpoint={item}: no file matches (quote a glob so the shell leaves it to bcc)")
        found += [Path(h) for h in hits]
    if len(set(found)) != len(found):
        raise BadInput(f"checkpoint=: the same file is listed twice ({', '.join(map(str, found))})")
    return found


class EnsembleNet(nn.Module):
    """K explained networks → (mean logits, mean raw maps, per-fold logits); `form` None: no maps."""

    def __init__(self, nets: Sequence[MultitaskNet], form: str | None):
        super().__init__()
        self.form = form
        self.members = nn.ModuleList(nets if form is None else [ExplainedNet(n, form) for n in nets])

    def forward(self, x: torch.Tensor):
        outs = [m(x) for m in self.members]
        if self.form is None:
            folds = torch.stack(outs, 1)
            return folds.mean(1), folds
        folds = torch.stack([o[0] for o in outs], 1)                 # (N, K, 8)
        return folds.mean(1), torch.stack([o[1] for o in outs], 1).mean(1), folds


def _members(checkpoints: Sequence[Path]):
    nets = [load_torch_network(c, channels_last=False) for c in checkpoints]
    first = nets[0]
    for c, n in zip(checkpoints[1:], nets[1:], strict=True):
        if (n.backbone_name, n.preprocess) != (first.backbone_name, first.preprocess):
            raise BadInput(f"checkpoint={c}: {n.backbone_name} at {n.image_size} px ({n.preprocess}), but "
                           f"{checkpoints[0]} is {first.backbone_name} at {first.image_size} px ({first.preprocess}); "
                           f"an ensemble's members share backbone and preprocessing")
    forms = {closed_form(n)[0] for n in nets}
    return nets, (forms.pop() if len(forms) == 1 else None), closed_form(first)[1]


def _median_thresholds(checkpoints: Sequence[Path]) -> dict:
    """The members' operating thresholds (each as ``bcc.predict`` would read it), median per output."""
    ths = [load_thresholds(c) for c in checkpoints]
    return {"bcc": float(np.median([t.bcc for t in ths])),
            "patterns": {c: float(np.median([t.patterns[c] for t in ths])) for c in CODES},
            "uncertainty_band": float(np.median([t.band for t in ths])),
            "source": f"median of the {len(ths)} members' thresholds ({ths[0].source}, …)"}


def _record(checkpoint: Path) -> dict[str, Any]:
    """What a member trained on: fold, stage, k and dataset hash from its ``trained_on`` record, else from
    its run folder (``core.layout.parse_job``) and the Hydra config beside it; None where nothing says."""
    hp = dict(read_checkpoint(checkpoint).get("hyper_parameters") or {})
    rec = dict(hp.get("trained_on") or {})
    job = parse_job(checkpoint.parent)
    out = {"fold": rec.get("fold", job.fold if job else None),
           "stage": rec.get("stage", hp.get("stage", job.stage if job else None)), "k": rec.get("k"),
           "dataset_hash": rec.get("dataset_hash")}
    if out["k"] is None:
        try:
            cfg = read_job_config(checkpoint.parent)
            out["k"] = None if cfg is None else OmegaConf.select(cfg, "data.k", default=None)
        except (OmegaConfBaseException, OSError, ValueError):
            pass
    return {k: (None if v is None else (str(v) if k == "dataset_hash" else int(v))) for k, v in out.items()}


def fold_members(checkpoints: Sequence[Path]) -> dict[str, Any]:
    """What the members are, for the card's ``ensemble`` entry (``what``: in words). Refused: different
    stages, a fold twice, different training data or fold counts — a mean of those is no fold ensemble."""
    recs = [_record(c) for c in checkpoints]
    named = [f"{c} (fold {r['fold']}, stage {r['stage']})" for c, r in zip(checkpoints, recs, strict=True)]
    for key, words in (("stage", "stages"), ("k", "fold counts (data.k)"), ("dataset_hash", "training data")):
        values = {r[key] for r in recs if r[key] is not None}
        if len(values) > 1:
            raise BadInput(f"checkpoint=: the members differ in {words} ({', '.join(named)}); a fold ensemble "
                           f"averages one stage of each fold of one training, e.g. "
                           f"checkpoint='<output_dir>/<backbone>/fold*/stage3/best.ckpt'")
    folds = [r["fold"] for r in recs]
    if None in folds:
        return {"folds": None, "what": f"ensemble of {len(recs)} fold models (their folds are not recorded)"}
    twice = sorted({f for f in folds if folds.count(f) > 1})
    if twice:
        raise BadInput(f"checkpoint=: fold {', '.join(map(str, twice))} twice ({', '.join(named)}); a fold "
                       f"ensemble takes each fold once")
    k, stage = recs[0]["k"], recs[0]["stage"]
    at = f"stage {stage}" if stage is not None else "stage not recorded"
    if k is not None and sorted(folds) == list(range(k)):
        what = f"fold ensemble of all {k} fold models ({at})"
    else:
        what = (f"{len(folds)} of the {k if k is not None else '?'} fold models (folds "
                f"{', '.join(map(str, sorted(folds)))}, {at}): not the whole fold ensemble")
    return {"folds": sorted(folds), "k": k, "stage": stage, "what": what}


def export_ensemble(checkpoints: Sequence[str | Path], output: str | Path | None = None, tolerance: float = 1e-4,
                    allow_outside: bool = False, verbose: bool = True) -> Path:
    """Export `checkpoints` (two or more) as one ONNX model (module docstring); returns its path."""
    paths = [Path(c) for c in checkpoints]
    if len(paths) < 2:
        raise BadInput("checkpoint=: an ensemble needs two or more checkpoints")
    if output is None:  # beside the members: their common folder (the run's <backbone> folder for fold*)
        output = Path(os.path.commonpath([c.resolve().parent for c in paths])) / "ensemble.onnx"
    output = Path(output)
    kind = fold_members(paths)
    nets, form, why = _members(paths)
    size = int(nets[0].image_size)
    names = [OUTPUT_NAME] + ([] if form is None else [MAPS_NAME]) + [FOLDS_NAME]
    roots = {dataset_root_of(c) for c in paths}
    root = roots.pop() if len(roots) == 1 else None
    card = ModelCard.of(nets[0]).but(
        trained_outputs=tuple(o for o, *t in zip(OUTPUTS, *(n.trained for n in nets), strict=True) if all(t)),
        not_trained="; ".join(filter(None, (untrained_note(n.spec) for n in nets[:1]))) or "none",
        thresholds=_median_thresholds(paths), training_data_hash=dataset_hash(root, allow_outside) if root else "unknown",
        training_data=str(root.resolve()) if root else "unknown", source_checkpoint=str(paths[0].resolve()),
        stage=",".join(sorted({_stage(c) for c in paths})), maps=maps_metadata(nets[0], form, why, size),
        ensemble={**kind, "members": [str(c.resolve()) for c in paths],
                  "combine": "mean of the logits; mean of the raw Grad-CAM maps", "fold_logits": FOLDS_NAME,
                  "disagreement": "flagged for review when the members' p(BCC) fall on both sides of the "
                                  "operating threshold"})
    doc = (f"bcc ensemble of {len(nets)} fold networks: logits (N, 8) = mean of fold_logits "
           f"(N, {len(nets)}, 8), order " + ",".join(OUTPUTS))
    t0 = time.perf_counter()
    diff, _ = export_checked(EnsembleNet(nets, form), output, size, names, reference(nets, form is not None), card,
                             doc, tolerance)
    if verbose:
        log.info(f"[bcc.export] {output} ({output.stat().st_size / 1e6:.1f} MB, {time.perf_counter() - t0:.1f} s): "
                 f"{kind['what']} ({', '.join(map(str, checkpoints))}); "
                 + ", ".join(f"max |{k}(ORT) - {k}(torch)| = {v:.2e}" for k, v in diff.items()))
    return output


def _stage(checkpoint: Path) -> str:
    return str(dict(read_checkpoint(checkpoint).get("hyper_parameters") or {}).get("stage", ""))
