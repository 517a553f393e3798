"""The fp32 ONNX export of a checkpoint (``python -m bcc.export``; int8: ``bcc.deploy.int8``).

Writes ``<checkpoint stem>.onnx`` beside the checkpoint (or ``output=``, a ``.onnx`` file): input
``image`` float32 (N, 3, S, S) RGB in [0, 1] with a dynamic batch N, output ``logits`` (N, 8) in
``bcc.core.patterns.OUTPUTS`` order (normalisation happens inside the graph, as in ``MultitaskNet``) and,
where the backbone allows it, output ``cams`` (N, 8, h, w): the 8 raw Grad-CAM maps at the target
layer's resolution (7 x 7 for MobileNetV2 at 224 px), before ReLU, exactly what
``bcc.explanation.gradcam.raw_cams`` gives and ``bcc.explanation.gradcam.postprocess`` turns into the
overlays. So the model explains itself: ``bcc.predict`` on it needs neither torch's network nor the
source checkpoint. The maps need no backward pass where the Jacobian J (8 x C) of the logits with
respect to the pooled features has a closed form (:class:`ExplainedNet`), maps = J · A / (h·w):

- ``linear`` (MobileNetV2: global average pooling, then the linear heads): J = the stacked head weights.
- ``layernorm`` (ConvNeXt: pooling, LayerNorm, then the linear heads): J = (G − mean_c G − (G·x̂ / C) x̂) / s
  per image, with G = head weights ⊙ LayerNorm weight, x̂ = (p − mean p) / s, s = sqrt(var p + eps).

ViT pools its class token, so its maps need a backward pass through the last block: it is exported with
``logits`` only, and ``bcc.predict`` computes its maps with torch from ``bcc.source_checkpoint``. The
export is checked against torch on random images at batch 1 and 5 (max |Δlogit| and max |Δmap| ≤
``tolerance``, 1e-4) before it is kept.

The model's card (``bcc.deploy.model_card.ModelCard``, in ``onnx`` ``metadata_props``, strings; JSON where
structured) — what ``bcc.predict`` reads:
``bcc.backbone``, ``bcc.timm_name``, ``bcc.input_size``, ``bcc.input`` (layout and range),
``bcc.normalisation`` (``{"mean": [...], "std": [...], "applied": "inside the model"}``),
``bcc.outputs`` (code order), ``bcc.thresholds`` (``bcc.predict`` thresholds format),
``bcc.training_data_hash`` (SHA-256 over the training dataset's CSVs and image files, or ``unknown``;
the dataset is found from the Hydra ``.hydra/config.yaml`` beside the checkpoint, or ``data_root=``),
``bcc.training_data`` (its path), ``bcc.source_checkpoint`` (absolute path; explanations of a model
without maps need the torch weights), ``bcc.stage``, ``bcc.opset``, ``bcc.quantization``, and
``bcc.maps``: ``{"output": "cams", "shape": ["batch", 8, h, w], "form": "linear" | "layernorm",
"layer", "values", "postprocess", "max_abs_diff_torch"}`` or ``{"output": null, "why", "fallback"}``
(an int8 copy adds ``"int8_vs_fp32"``: ``bcc.deploy.int8``). Read it back with ``ModelCard.read``.

The export, its check and the atomic write are ``bcc.deploy.onnx_model.export_checked``'s (a temporary
file renamed into place only after the checks pass).
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException
from timm.layers import LayerNorm2d
from torch import nn

from bcc.core.errors import UsageError
from bcc.core.layout import read_job_config
from bcc.core.log import get_logger
from bcc.core.patterns import OUTPUTS
from bcc.data.contract import dataset_hash, load_image_table
from bcc.deploy.model_card import ModelCard, read_metadata
from bcc.deploy.onnx_model import FOLDS_NAME, MAPS_NAME, OUTPUT_NAME, export_checked
from bcc.deploy.scorers import load_torch_network
from bcc.deploy.thresholds import load_thresholds
from bcc.explanation.gradcam import logits_from_pooled, raw_cams, target
from bcc.models.checkpoint import read_checkpoint
from bcc.models.network import MultitaskNet

log = get_logger(__name__)


# ---- the checkpoint's training data ---------------------------------------------------------------------
def dataset_root_of(checkpoint: str | Path) -> Path | None:
    """The dataset a checkpoint was trained on, from the Hydra config saved beside it (``.hydra/config.yaml``)."""
    try:
        cfg = read_job_config(Path(checkpoint).parent)
        root = None if cfg is None else Path(str(OmegaConf.select(cfg, "data.root", throw_on_missing=True)))
    except (OmegaConfBaseException, OSError, ValueError):  # unresolvable, missing key: hash unknown
        return None
    return root if root is not None and root.is_dir() else None


def test_fold_of(checkpoint: str | Path) -> int | None:
    """The fold a checkpoint was tested on (``fold`` in its saved Hydra config), or None."""
    try:
        cfg = read_job_config(Path(checkpoint).parent)
        fold = None if cfg is None else OmegaConf.select(cfg, "fold", default=None)
        return None if fold is None else int(fold)
    except (OmegaConfBaseException, OSError, ValueError, TypeError):
        return None


def allow_outside_of(checkpoint: str | Path) -> bool:
    """``data.allow_outside`` of the job that wrote the checkpoint (its saved Hydra config; false when absent):
    a dataset that job was allowed to read outside its folder, the export may read too."""
    try:
        cfg = read_job_config(Path(checkpoint).parent)
        return bool(cfg is not None and OmegaConf.select(cfg, "data.allow_outside", default=False))
    except (OmegaConfBaseException, OSError, ValueError):
        return False


def check_output(path: Path) -> None:
    """An existing file at an export's output is replaced only if it is a model ``bcc.export`` wrote (its
    ``bcc.source_checkpoint`` metadata): never a file of the user's that happens to have that name."""
    if not os.path.lexists(path):
        return
    try:
        ours = path.is_file() and not path.is_symlink() and "source_checkpoint" in read_metadata(path)
    except Exception:  # noqa: BLE001 — onnx raises its own types on a file that is no model
        ours = False
    if not ours:
        raise UsageError(f"output={path} exists and is not a model bcc.export wrote; choose another output= "
                         f"(an export replaces only its own earlier models)")


def check_datasets(a: dict, int8: bool) -> None:
    """Before anything is written: every dataset ``bcc.export`` will read (the training set for the hash,
    with int8 the calibration and check sets) lists only paths its contract allows (``a["allow_outside"]``)."""
    own = a["data_root"] or dataset_root_of(a["checkpoint"])
    roots = {own, *((a["calibration"], a["check_data"] or own) if int8 else ())}
    for root in sorted(str(r) for r in roots if r is not None):
        if (Path(root) / "images.csv").is_file():
            load_image_table(Path(root), check_files=False, allow_outside=a["allow_outside"])


# ---- the maps in the graph -------------------------------------------------------------------------------
def closed_form(net: MultitaskNet) -> tuple[str | None, str]:
    """``(form, why)``: how the graph computes the 8 maps without a backward pass (module docstring), or
    None and why it cannot."""
    mode = target(net).mode
    if mode == "linear":
        return "linear", "global average pooling, then the linear heads: d logits / d pooled = head_weights"
    head = getattr(net.backbone, "head", None)
    if (mode == "pooled" and isinstance(getattr(head, "norm", None), LayerNorm2d)
            and getattr(getattr(head, "global_pool", None), "pool_type", None) == "avg"
            and all(isinstance(getattr(head, m, None), (nn.Identity, nn.Dropout)) for m in ("pre_logits", "drop", "fc"))):
        return "layernorm", "global average pooling, LayerNorm, then the linear heads: J in closed form per image"
    if mode == "tokens":
        return None, "ViT pools its class token: the maps need a backward pass through the last block"
    if mode == "autograd":
        return None, f"maps at backbone.gradcam_layer={net.spec['gradcam_layer']} need a backward pass"
    return None, f"the head after pooling of {net.backbone_name} has no closed-form Jacobian here"


class ExplainedNet(nn.Module):
    """The network with its maps: images (N, 3, S, S) → (logits (N, 8), raw Grad-CAM (N, 8, h, w)), one
    forward pass; the logits are the network's own (``logits_from_pooled``), the maps J · A / (h·w)."""

    def __init__(self, net: MultitaskNet, form: str):
        super().__init__()
        self.net, self.form = net, form

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        net = self.net
        feats = net.backbone.forward_features((x - net.mean) / net.std)  # (N, C, h, w)
        h, w = feats.shape[-2:]
        flat = feats.flatten(2)                                            # (N, C, hw)
        pooled = flat.mean(2)
        jac = net.head_weights()[None]                                     # (1, 8, C)
        if self.form == "layernorm":
            norm = net.backbone.head.norm
            centred = pooled - pooled.mean(1, keepdim=True)
            s = torch.sqrt((centred * centred).mean(1, keepdim=True) + norm.eps)  # (N, 1)
            xh = centred / s
            g = jac[0] * norm.weight
            g = g - g.mean(1, keepdim=True)                                # x̂ sums to 0: G·x̂ = (G − mean G)·x̂
            proj = xh @ g.T / xh.shape[1]                                  # (N, 8)
            jac = (g[None] - proj[:, :, None] * xh[:, None, :]) / s[:, :, None]  # (N, 8, C)
        cams = (jac @ flat) / (h * w)
        return logits_from_pooled(net, pooled), cams.unflatten(2, (h, w))


def maps_metadata(net: MultitaskNet, form: str | None, why: str, size: int) -> dict:
    """``bcc.maps``: what the ``cams`` output is, or why there is none."""
    if form is None:
        return {"output": None, "why": why, "fallback": "bcc.predict computes the maps with torch from "
                "bcc.source_checkpoint (or explain_checkpoint=)"}
    with torch.no_grad():
        h, w = net.backbone.forward_features(torch.zeros(1, 3, size, size)).shape[-2:]
    return {"output": MAPS_NAME, "shape": ["batch", len(OUTPUTS), int(h), int(w)], "form": form, "why": why,
            "layer": f"the last feature map of {net.backbone_name} (bcc.models.backbones: Grad-CAM target layer)",
            "values": "raw Grad-CAM before ReLU: J · A / (h·w), J = d logits / d pooled features, OUTPUTS order",
            "postprocess": "bcc.explanation.gradcam.postprocess (ReLU, min-max, bilinear resize, min-max)"}


# ---- export ---------------------------------------------------------------------------------------------
def reference(nets: list[MultitaskNet], maps: bool) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """torch's outputs for the parity check: the networks' own logits (their mean, and each one's as
    ``fold_logits`` when there are several) and ``raw_cams`` (their mean), computed apart from the graph's code."""
    def outputs(x: np.ndarray) -> dict[str, np.ndarray]:
        t = torch.from_numpy(x)
        with torch.inference_mode():
            folds = np.stack([net(t).numpy() for net in nets], 1)
        out = {OUTPUT_NAME: folds.mean(1)}
        if len(nets) > 1:
            out[FOLDS_NAME] = folds
        if maps:
            out[MAPS_NAME] = np.mean([raw_cams(net, t)[0].numpy() for net in nets], 0)
        return out
    return outputs


def export_onnx(checkpoint: str | Path, output: str | Path | None = None, thresholds: dict | None = None,
                data_root: str | Path | None = None, tolerance: float = 1e-4, verbose: bool = True,
                allow_outside: bool = False) -> Path:
    """Export the checkpoint's network (with its maps where it can) to ONNX (fp32), embed its card, check
    it against torch; return the path. `allow_outside`: the training dataset's paths may leave its folder."""
    checkpoint = Path(checkpoint)
    output = Path(output) if output else checkpoint.with_suffix(".onnx")
    net = load_torch_network(checkpoint, channels_last=False)
    size = int(net.image_size)
    form, why = closed_form(net)
    hp = dict(read_checkpoint(checkpoint).get("hyper_parameters") or {})
    th = thresholds if thresholds is not None else load_thresholds(checkpoint).as_dict()
    root = Path(data_root) if data_root else dataset_root_of(checkpoint)
    card = ModelCard.of(net, thresholds=th, training_data_hash=dataset_hash(root, allow_outside),
                        training_data=str(root.resolve()) if root else "unknown",
                        source_checkpoint=str(checkpoint.resolve()), stage=str(hp.get("stage", "")),
                        maps=maps_metadata(net, form, why, size))
    names = [OUTPUT_NAME] if form is None else [OUTPUT_NAME, MAPS_NAME]
    doc = ("bcc multitask BCC network: logits (N, 8) in order " + ",".join(OUTPUTS)
           + ("" if form is None else "; cams (N, 8, h, w): raw Grad-CAM maps, same order"))
    t0 = time.perf_counter()
    diff, _ = export_checked(net if form is None else ExplainedNet(net, form), output, size, names,
                             reference([net], form is not None), card, doc, tolerance)
    if verbose:
        log.info(f"[bcc.export] {output} ({output.stat().st_size / 1e6:.1f} MB, {time.perf_counter() - t0:.1f} s): "
                 + ", ".join(f"max |{k}(ORT) - {k}(torch)| = {v:.2e}" for k, v in diff.items())
                 + " on random images (batch 1 and 5)"
                 + ("" if form is None else f"; Grad-CAM maps in the graph ({form} closed form)")
                 + ("" if form is not None else f"; no maps in the graph ({why}): bcc.predict explains with torch"))
    return output
