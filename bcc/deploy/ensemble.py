"""The fold ensemble as one ONNX model, and a guaranteed operating threshold written into a model.

``python -m bcc.export checkpoint='outputs/demo/mobilenet/fold*/stage3/best.ckpt' output=<file.onnx>``
(a glob or a list: several checkpoints) writes one graph running the K fold networks side by side:

- ``logits`` (N, 8): the mean of the folds' logits (a geometric mean of their odds), what triage ranks on;
- ``cams`` (N, 8, h, w): the mean of the folds' raw Grad-CAM maps. With linear heads each fold's map sums
  to its logit's share from the features (J_k · A_k / hw, ``bcc.deploy.onnx_export``), so the mean map is
  the same decomposition of the mean logit: the ensemble's own Grad-CAM, not a picture of one fold;
- ``fold_logits`` (N, K, 8): every fold's logits, from which triage reads the folds' disagreement (a case
  whose folds fall on both sides of the operating threshold is flagged for review whatever its mean).

The members must share backbone and preprocessing (their maps are then on one grid); an output counts as
trained when every member's head for it was (``bcc.trained_outputs``). The graph is checked
against torch (the members' own logits and ``raw_cams``) before it is kept, as a single-model export is.

:func:`attach_guarantee` turns a calibration dataset that none of the model's networks trained on into
the operating threshold of ``bcc.deploy.guarantee`` and stores it in the model (``bcc.thresholds``' bcc and
``bcc.guarantee``: ε, δ, the calibration set's size, its BCC count, its path and content hash). The model's
own scores are used — ONNX Runtime on the file being deployed, so an int8 copy gets its own threshold.
"""
from __future__ import annotations

import glob
import json
import os
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.special import expit
from torch import nn

from bcc.core.errors import BadInput
from bcc.core.io import atomic_path
from bcc.core.patterns import CODES, OUTPUTS
from bcc.data.contract import dataset_hash
from bcc.data.table import read_table
from bcc.deploy.guarantee import Guarantee, guaranteed_threshold
from bcc.deploy.int8 import dataset_images
from bcc.deploy.onnx_export import (
    OPSET,
    ExplainedNet,
    ExportError,
    closed_form,
    dataset_root_of,
    maps_metadata,
)
from bcc.deploy.onnx_model import (
    FOLDS_NAME,
    INPUT_NAME,
    MAPS_NAME,
    OUTPUT_NAME,
    ort_session,
    read_metadata,
    set_metadata,
)
from bcc.deploy.scorers import load_torch_network
from bcc.deploy.thresholds import load_thresholds
from bcc.explanation.gradcam import raw_cams
from bcc.models.checkpoint import read_checkpoint
from bcc.models.network import MultitaskNet, untrained_note


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


def _check(ens: EnsembleNet, nets, path: Path, size: int) -> dict[str, float]:
    """Largest |ONNX Runtime − torch| per output on random images (batch 1 and 5): the members' own logits
    and ``raw_cams``, averaged here independently of the graph's code."""
    sess = ort_session(path)
    names = [o.name for o in sess.get_outputs()]
    rng = np.random.default_rng(0)
    worst = dict.fromkeys(names, 0.0)
    for n in (1, 5):
        x = rng.random((n, 3, size, size), dtype=np.float32)
        got = dict(zip(names, sess.run(names, {INPUT_NAME: x}), strict=True))
        with torch.inference_mode():
            folds = np.stack([net(torch.from_numpy(x)).numpy() for net in nets], 1)
        want = {OUTPUT_NAME: folds.mean(1), FOLDS_NAME: folds}
        if MAPS_NAME in names:
            want[MAPS_NAME] = np.mean([raw_cams(net, torch.from_numpy(x))[0].numpy() for net in nets], 0)
        worst = {k: max(worst[k], float(np.abs(got[k] - want[k]).max())) for k in names}
    return worst


def export_ensemble(checkpoints: Sequence[str | Path], output: str | Path | None = None, tolerance: float = 1e-4,
                    allow_outside: bool = False, verbose: bool = True) -> Path:
    """Export `checkpoints` (two or more) as one ONNX model (module docstring); returns its path."""
    import onnx

    paths = [Path(c) for c in checkpoints]
    if len(paths) < 2:
        raise BadInput("checkpoint=: an ensemble needs two or more checkpoints")
    if output is None:  # beside the members: their common folder (the run's <backbone> folder for fold*)
        output = Path(os.path.commonpath([c.resolve().parent for c in paths])) / "ensemble.onnx"
    output = Path(output)
    nets, form, why = _members(paths)
    size = int(nets[0].image_size)
    ens = EnsembleNet(nets, form).eval()
    names = [OUTPUT_NAME] + ([] if form is None else [MAPS_NAME]) + [FOLDS_NAME]
    roots = {dataset_root_of(c) for c in paths}
    root = roots.pop() if len(roots) == 1 else None
    meta: dict[str, Any] = {
        "backbone": nets[0].backbone_name, "timm_name": str(nets[0].spec.get("timm_name") or ""),
        "input_size": str(size), "input": "float32 NCHW RGB in [0, 1], dynamic batch",
        "preprocess": {"resize": nets[0].preprocess.resize, "colour": nets[0].preprocess.colour,
                       "how": "bcc.data.images.network_view: the picture's view box resized to input_size, then the "
                              "colour constancy"},
        "trained_outputs": [o for o, *t in zip(OUTPUTS, *(n.trained for n in nets), strict=True) if all(t)],
        "not_trained": "; ".join(filter(None, (untrained_note(n.spec) for n in nets[:1]))) or "none",
        "normalisation": {"mean": nets[0].mean.flatten().tolist(), "std": nets[0].std.flatten().tolist(),
                          "applied": "inside the model"},
        "outputs": list(OUTPUTS), "codes": list(CODES), "thresholds": _median_thresholds(paths),
        "training_data_hash": dataset_hash(root, allow_outside) if root else "unknown",
        "training_data": str(root.resolve()) if root else "unknown",
        "source_checkpoint": str(paths[0].resolve()), "quantization": "none (fp32)", "opset": str(OPSET),
        "stage": ",".join(sorted({_stage(c) for c in paths})),
        "maps": maps_metadata(nets[0], form, why, size),
        "ensemble": {"members": [str(c.resolve()) for c in paths], "combine": "mean of the logits; mean of "
                     "the raw Grad-CAM maps", "fold_logits": FOLDS_NAME,
                     "disagreement": "flagged for review when the members' p(BCC) fall on both sides of the "
                                     "operating threshold"},
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with atomic_path(output) as tmp:
        with warnings.catch_warnings():  # the TorchScript exporter is deprecated; dynamo needs onnxscript
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(ens, (torch.rand(2, 3, size, size),), str(tmp), input_names=[INPUT_NAME],
                              output_names=names, dynamic_axes={k: {0: "batch"} for k in (INPUT_NAME, *names)},
                              opset_version=OPSET, do_constant_folding=True, dynamo=False)
        diff = _check(ens, nets, tmp, size)
        if max(diff.values()) > tolerance:
            raise ExportError(f"{output}: ONNX Runtime and torch disagree by "
                              + ", ".join(f"{v:.2e} ({k})" for k, v in diff.items()) + f" > {tolerance:.0e}")
        if form is not None:
            meta["maps"]["max_abs_diff_torch"] = diff[MAPS_NAME]
        model = onnx.load(str(tmp))
        set_metadata(model, meta)
        model.doc_string = (f"bcc ensemble of {len(nets)} fold networks: logits (N, 8) = mean of fold_logits "
                            f"(N, {len(nets)}, 8), order " + ",".join(OUTPUTS))
        onnx.checker.check_model(model)
        onnx.save(model, str(tmp))
    if verbose:
        print(f"[bcc.export] {output} ({output.stat().st_size / 1e6:.1f} MB, {time.perf_counter() - t0:.1f} s): "
              f"ensemble of {len(nets)} ({', '.join(map(str, checkpoints))}); "
              + ", ".join(f"max |{k}(ORT) - {k}(torch)| = {v:.2e}" for k, v in diff.items()))
    return output


def _stage(checkpoint: Path) -> str:
    return str(dict(read_checkpoint(checkpoint).get("hyper_parameters") or {}).get("stage", ""))


# ---- the guarantee --------------------------------------------------------------------------------------
def model_scores(model: str | Path, images: np.ndarray, batch_size: int = 32, threads: int | None = None
                 ) -> tuple[np.ndarray, np.ndarray | None]:
    """(p(BCC) (n,), the members' p(BCC) (n, K) or None) of an exported model on (n, 3, S, S) images."""
    sess = ort_session(model, threads)
    outputs = [o.name for o in sess.get_outputs()]
    names = [OUTPUT_NAME] + ([FOLDS_NAME] if FOLDS_NAME in outputs else [])
    runs = [sess.run(names, {INPUT_NAME: np.ascontiguousarray(images[i:i + batch_size])})
            for i in range(0, len(images), batch_size)]
    p = expit(np.concatenate([r[0] for r in runs])[:, 0]) if runs else np.zeros(0)
    folds = expit(np.concatenate([r[1] for r in runs])[..., 0]) if runs and len(names) == 2 else None
    return p, folds


def calibration_set(data: str | Path, members: Sequence[str | Path], epsilon: float, delta: float,
                    batch: int | None = None, allow_outside: bool = False) -> np.ndarray:
    """The labels (1 = BCC) of ``guarantee_data=``, checked before anything is exported: it has
    ``labels.csv``, none of the `members` (checkpoints) trained on it, and it holds enough BCC cases."""
    data = Path(data)
    trained = {r.resolve() for r in (dataset_root_of(m) for m in members) if r is not None}
    if data.resolve() in trained:
        raise BadInput(f"guarantee_data={data}: the model's networks were trained on this dataset, so their scores "
                       f"there are optimistic; calibrate on labelled cases none of them saw")
    y = read_table(data, splits=False, allow_outside=allow_outside)["bcc"].to_numpy().astype(int)
    guaranteed_threshold(y, y.astype(float), epsilon, delta, batch, source=f"guarantee_data={data}")  # enough BCC?
    return y


def attach_guarantee(model: str | Path, data: str | Path, y: np.ndarray, epsilon: float = 0.05, delta: float = 0.1,
                     batch: int | None = None, allow_outside: bool = False, verbose: bool = True) -> Guarantee:
    """Score the calibration dataset `data` (labels `y` from :func:`calibration_set`) with `model`, choose
    the guaranteed threshold and write it into the model's metadata (atomically)."""
    import onnx

    model, data = Path(model), Path(data)
    meta: dict[str, Any] = read_metadata(model)
    images = dataset_images(data, int(meta["input_size"]), allow_outside=allow_outside)
    p, _ = model_scores(model, images)
    g = guaranteed_threshold(y, p, epsilon, delta, batch, source=f"guarantee_data={data}")
    th = json.loads(meta.get("thresholds") or "{}")
    th.update(bcc=g.threshold, source=f"bcc.export guarantee on {data}")
    meta.update(thresholds=th, guarantee={**g.as_dict(), "data": str(data.resolve()),
                                          "data_hash": dataset_hash(data, allow_outside),
                                          "statement": g.statement()})
    m = onnx.load(str(model))
    set_metadata(m, meta)
    with atomic_path(model) as tmp:
        onnx.save(m, str(tmp))
    if verbose:
        print(f"[bcc.export] {model.name}: {g.statement()}; {g.deprioritised:.1%} of the calibration cases fall "
              f"below it")
    return g


