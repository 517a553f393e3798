"""Grad-CAM for all 8 outputs at about the cost of one forward pass (paper §3.2, issue 5).

    from bcc.inference import load_network, read_image
    from bcc.explain import gradcam_maps
    net = load_network("outputs/demo/mobilenet/fold0/stage3/best.ckpt")
    x, rgb = read_image("lesion.jpg", net.image_size)
    maps, logits = gradcam_maps(net, x[None], size=rgb.shape[:2])   # (1, 8, H, W) in [0, 1], (1, 8)

CLI: ``python -m bcc.explain checkpoint=<ckpt> input=<dir|image> output=<dir> [save_raw=true]
[batch_size=16] [device=cpu]`` writes ``<stem>_<output>.png`` overlays (one per output in
``bcc.patterns.OUTPUTS`` order), ``explanations.csv`` (probabilities) and, with ``save_raw=true``,
``<stem>_maps.npy`` (float32, 8 x H x W at the image's own resolution, OUTPUTS order).

Why it is cheap. Grad-CAM weights channel c of the target feature map A (C x h x w) by the spatial mean
of d y_k / d A_c. Where the network ends in global average pooling, the gradient at every position is
the same, (1 / hw) * d y_k / d p_c with p the pooled vector, so the 8 maps are
``relu(sum_c J[k, c] A_c) / hw`` with J the (8 x C) Jacobian of the logits with respect to p:

- ``linear`` (mobilenet): pooling is the last nonlinear step and the heads are linear, so J is the
  stacked head weights (diagnosis, negative, pattern rows) — one forward of ``forward_features`` and one
  einsum, no backward at all.
- ``pooled`` (convnext): timm's ConvNeXt head applies a LayerNorm *after* pooling, so J depends on the
  image; it is obtained by one batched backward (8 vector-Jacobian products at once) through the tiny
  post-pool head only, then the same einsum.
- ``tokens`` (vit): ViT pools the class token, so the last block's output patch tokens get zero
  gradient (the pytorch-grad-cam documentation's point); the target is ``blocks[-1].norm1`` (the
  input of the last attention), with a reshape transform dropping the prefix tokens. One forward, and
  one batched backward from the 8 logits to that layer (the graph below it is cut off).

Gradients are taken with respect to a leaf made from the target activation, so they flow when every
parameter is frozen; the backward paths run with grad enabled (never under ``no_grad`` /
``inference_mode``). The ``linear`` path needs no gradient and computes its features under ``no_grad``.

Post-processing is pytorch-grad-cam 1.5.7's (``BaseCAM.compute_cam_per_layer`` and
``aggregate_multi_layers``): ReLU, per-map min-max ``(c - min) / (1e-7 + max)``, bilinear resize
(cv2 ``INTER_LINEAR`` = torch ``align_corners=False``), ReLU and min-max again — the last two folded
into the small maps so the full-size maps are written once (``postprocess``). ``reference_maps`` runs
pytorch-grad-cam's ``GradCAM`` once per target for comparison (tests, ``benchmarks/bench_explain.py``).
"""
from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bcc.network import MultitaskNet
from bcc.patterns import OUTPUTS

#: How each backbone's maps are computed (see the module docstring).
MODES = {"mobilenet": "linear", "convnext": "pooled", "vit": "tokens"}
EPS = 1e-7  # pytorch-grad-cam's scale_cam_image epsilon


@dataclass(frozen=True)
class Target:
    """The Grad-CAM target layer of a network and the transform making its output (N, C, h, w)."""

    layer: nn.Module
    reshape: Callable[[torch.Tensor], torch.Tensor] | None
    mode: str


def _mode(net: MultitaskNet) -> str:
    if net.backbone_name in MODES:
        return MODES[net.backbone_name]
    return "tokens" if hasattr(net.backbone, "num_prefix_tokens") else "pooled"


def token_reshape(backbone: nn.Module, image_hw: Sequence[int]) -> Callable[[torch.Tensor], torch.Tensor]:
    """ViT tokens (N, prefix + gh*gw, D) → (N, D, gh, gw), dropping the class/register prefix tokens."""
    prefix = int(getattr(backbone, "num_prefix_tokens", 1))
    ph, pw = backbone.patch_embed.patch_size
    gh, gw = int(image_hw[0]) // ph, int(image_hw[1]) // pw

    def reshape(t: torch.Tensor) -> torch.Tensor:
        return t[:, prefix:, :].reshape(t.shape[0], gh, gw, t.shape[-1]).permute(0, 3, 1, 2)

    return reshape


def target(net: MultitaskNet, image_hw: Sequence[int] = (224, 224)) -> Target:
    """Target layer per backbone: mobilenet ``bn2`` (BatchNormAct2d, the last feature map), convnext
    ``stages[-1]`` (its ``norm_pre`` is the identity), vit ``blocks[-1].norm1`` with the token reshape."""
    b, mode = net.backbone, _mode(net)
    if mode == "tokens":
        return Target(b.blocks[-1].norm1, token_reshape(b, image_hw), mode)
    if net.backbone_name == "mobilenet" or hasattr(b, "bn2"):
        return Target(b.bn2, None, mode)
    if hasattr(b, "stages"):
        if not isinstance(getattr(b, "norm_pre", nn.Identity()), nn.Identity):
            return Target(b.norm_pre, None, mode)
        return Target(b.stages[-1], None, mode)
    raise ValueError(f"no Grad-CAM target layer known for backbone {net.backbone_name!r}")


def head_weights(net: MultitaskNet) -> torch.Tensor:
    """(8, C) stacked head weights in OUTPUTS order: diagnosis, negative criterion, 6 BCC patterns."""
    return torch.cat([net.diagnosis_head.weight, net.negative_head.weight, net.pattern_head.weight], dim=0)


def head_bias(net: MultitaskNet) -> torch.Tensor:
    return torch.cat([net.diagnosis_head.bias, net.negative_head.bias, net.pattern_head.bias], dim=0)


def logits_from_pooled(net: MultitaskNet, pooled: torch.Tensor) -> torch.Tensor:
    """The net's logits given the globally pooled feature vector (N, C): the rest of timm's head, then ours."""
    f = net.backbone.forward_head(pooled[:, :, None, None])  # pooling a 1x1 map is the identity
    f = net.dropout(f)
    return torch.cat([net.diagnosis_head(f), net.negative_head(f), net.pattern_head(f)], dim=1)


def _batched_vjp(outputs: torch.Tensor, leaf: torch.Tensor) -> torch.Tensor:
    """d outputs[:, k] / d leaf for every k at once: (K, *leaf.shape), one batched backward."""
    k = outputs.shape[1]
    eye = torch.eye(k, dtype=outputs.dtype, device=outputs.device)[:, None, :].expand(k, *outputs.shape)
    try:
        return torch.autograd.grad(outputs, leaf, grad_outputs=eye, is_grads_batched=True)[0]
    except RuntimeError:  # an op without a vmap rule: K backward passes over the same graph
        return torch.stack([torch.autograd.grad(outputs, leaf, grad_outputs=eye[i], retain_graph=i < k - 1)[0]
                            for i in range(k)])


def _prepare(net: MultitaskNet, x: torch.Tensor) -> torch.Tensor:
    p = next(net.parameters())
    x = x.to(p.device, torch.float32)
    if p.dim() == 4 and p.is_contiguous(memory_format=torch.channels_last):
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def raw_cams(net: MultitaskNet, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Grad-CAM before ReLU at feature resolution, (N, 8, h, w), and the logits (N, 8).

    `x`: float images in [0, 1], (N, 3, H, W). The net is used in eval mode (restored afterwards).
    """
    was_training = net.training
    net.eval()
    try:
        x = _prepare(net, x)
        mode = _mode(net)
        if mode == "tokens":
            return _token_cams(net, x)
        with torch.no_grad():
            feats = net.backbone.forward_features((x - net.mean) / net.std)
        hw = feats.shape[-2] * feats.shape[-1]
        pooled = feats.mean(dim=(2, 3))
        if mode == "linear":
            with torch.no_grad():
                w = head_weights(net)
                cams = torch.einsum("kc,nchw->nkhw", w, feats) / hw
                return cams, pooled @ w.T + head_bias(net)
        with torch.enable_grad():
            leaf = pooled.detach().requires_grad_(True)
            logits = logits_from_pooled(net, leaf)
            jac = _batched_vjp(logits, leaf)  # (8, N, C)
        cams = torch.einsum("knc,nchw->nkhw", jac.detach(), feats) / hw
        return cams, logits.detach()
    finally:
        net.train(was_training)


def _token_cams(net: MultitaskNet, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    t = target(net, x.shape[-2:])
    held: list[torch.Tensor] = []

    def make_leaf(module, inputs, output):
        leaf = output.detach().requires_grad_(True)  # cut the graph below: backward stops here
        held.append(leaf)
        return leaf

    handle = t.layer.register_forward_hook(make_leaf)
    try:
        with torch.enable_grad():
            logits = net(x)
            grads = _batched_vjp(logits, held[0])  # (8, N, T, D)
    finally:
        handle.remove()
    acts = t.reshape(held[0].detach())  # (N, D, gh, gw)
    k = grads.shape[0]
    g = t.reshape(grads.flatten(0, 1)).unflatten(0, (k, -1))  # (8, N, D, gh, gw)
    weights = g.mean(dim=(-2, -1))
    return torch.einsum("knd,ndhw->nkhw", weights, acts), logits.detach()


def _minmax(c: torch.Tensor) -> torch.Tensor:
    c = c - c.amin(dim=(-2, -1), keepdim=True)
    return c / (EPS + c.amax(dim=(-2, -1), keepdim=True))


def _extreme_samples(n_in: int, n_out: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Bilinear resize ``n_in → n_out`` along one axis (``align_corners=False``, torch's and cv2's rule) at
    only the output positions that can hold an extreme: the first and last of each run of outputs sharing
    the same two source pixels. Returns (indices (m,), weights (m, n_in)).

    Within such a run the value is linear in the position, so over the output grid the minimum and the
    maximum of the resized map are attained at these rows × these columns.
    """
    i = torch.arange(n_out, dtype=torch.float64)
    src = ((i + 0.5) * (n_in / n_out) - 0.5).clamp_min(0)
    i0 = src.floor().long().clamp_max(n_in - 1)
    i1 = (i0 + 1).clamp_max(n_in - 1)
    lam = (src - i0).clamp(0, 1)
    key = i0 * (n_in + 1) + i1
    edge = torch.ones(n_out, dtype=torch.bool)
    edge[1:-1] = (key[1:-1] != key[:-2]) | (key[1:-1] != key[2:])
    idx = edge.nonzero().squeeze(1)
    w = torch.zeros(idx.numel(), n_in, dtype=torch.float64)
    rows = torch.arange(idx.numel())
    w.index_put_((rows, i0[idx]), 1 - lam[idx], accumulate=True)
    w.index_put_((rows, i1[idx]), lam[idx], accumulate=True)
    return idx.to(device), w.to(device, torch.float32)


def postprocess(cams: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """pytorch-grad-cam's post-processing: ReLU, min-max, bilinear resize to `size` (H, W), ReLU, min-max.

    Equal to doing it step by step, in one pass over the full-size maps: bilinear resizing is linear with
    weights ≥ 0 summing to 1, so the second ReLU is a no-op and the second min-max is an affine map that
    commutes with the resize. It is applied to the small maps, with the full-size minimum and maximum read
    off the few positions where they can be (``_extreme_samples``) — not from the resized maps.
    """
    size = tuple(int(s) for s in size)
    c = _minmax(cams.float().clamp_min(0))
    h, w = c.shape[-2:]
    if (h, w) == size:
        return _minmax(c)
    _, wh = _extreme_samples(h, size[0], c.device)
    _, ww = _extreme_samples(w, size[1], c.device)
    corners = torch.einsum("ih,nkhw,jw->nkij", wh, c, ww).flatten(-2)
    lo, hi = corners.amin(dim=-1)[..., None, None], corners.amax(dim=-1)[..., None, None]
    c = (c - lo) / (EPS + hi - lo)
    up = F.interpolate(c, size=size, mode="bilinear", align_corners=False)
    return up.clamp_(0.0, 1.0)


def gradcam_maps(net: MultitaskNet, x: torch.Tensor, size: Sequence[int] | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """All 8 Grad-CAM maps, (N, 8, H, W) float32 in [0, 1], and the logits (N, 8), for a batch.

    `x`: float images in [0, 1], (N, 3, S, S), or one image (3, S, S) as ``bcc.inference.read_image``
    gives it (treated as N = 1). Maps are at `size` (H, W) — e.g. the original image's — or at the
    input's size by default. Channel order: OUTPUTS.
    """
    if x.dim() == 3:
        x = x[None]
    cams, logits = raw_cams(net, x)
    return postprocess(cams, size or x.shape[-2:]), logits


def reference_maps(net: MultitaskNet, x: torch.Tensor) -> np.ndarray:
    """pytorch-grad-cam ``GradCAM``, one call per output (the per-target loop): (N, 8, H, W) numpy.

    The input is given ``requires_grad`` so the target layer has gradients with a frozen network.
    """
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    t = target(net, x.shape[-2:])
    x = _prepare(net, x).detach().requires_grad_(True)
    out = []
    with GradCAM(model=net, target_layers=[t.layer], reshape_transform=t.reshape) as cam:
        for k in range(len(OUTPUTS)):
            out.append(cam(input_tensor=x, targets=[ClassifierOutputTarget(k)] * x.shape[0]))
    return np.stack(out, axis=1)


# ---- rendering and CLI ---------------------------------------------------------------------------------
def heat_rgb(z: np.ndarray) -> np.ndarray:
    """(H, W) map in [0, 1] → (H, W, 3) float RGB with the jet colour map (as the paper's figures)."""
    from matplotlib import colormaps

    return colormaps["jet"](np.clip(z, 0, 1))[..., :3]


def overlay(rgb: np.ndarray, z: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """uint8 RGB: `alpha` x heat map + (1 - alpha) x image."""
    mix = alpha * heat_rgb(z) + (1 - alpha) * (rgb.astype(np.float32) / 255.0)
    return np.clip(mix * 255.0 + 0.5, 0, 255).astype(np.uint8)


def explain_files(net: MultitaskNet, files: Sequence[Path], out_dir: Path, save_raw: bool = False,
                  batch_size: int = 16, root: Path | None = None) -> pd.DataFrame:  # noqa: F821
    """Write overlays (and raw maps) for `files`; returns the probabilities table written as CSV."""
    import pandas as pd
    from PIL import Image

    from bcc.inference import decode_image, to_input

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for start in range(0, len(files), batch_size):
        chunk = list(files[start:start + batch_size])
        rgbs = [decode_image(p) for p in chunk]
        x = torch.stack([to_input(rgb, net.image_size) for rgb in rgbs])
        cams, logits = raw_cams(net, x)
        probs = torch.sigmoid(logits).cpu().numpy()
        for i, (path, rgb) in enumerate(zip(chunk, rgbs)):
            name = _stem(path, root)
            maps = postprocess(cams[i:i + 1], rgb.shape[:2])[0].cpu().numpy()
            for k, output in enumerate(OUTPUTS):
                Image.fromarray(overlay(rgb, maps[k])).save(out_dir / f"{name}_{output}.png")
            if save_raw:
                np.save(out_dir / f"{name}_maps.npy", maps.astype(np.float32))
            rows.append({"image": str(path), "name": name, **{f"p_{o}": float(probs[i, k])
                                                              for k, o in enumerate(OUTPUTS)}})
    table = pd.DataFrame(rows)
    table.to_csv(out_dir / "explanations.csv", index=False)
    return table


def _stem(path: Path, root: Path | None) -> str:
    rel = path.relative_to(root) if root is not None and root.is_dir() else Path(path.name)
    return "__".join(rel.with_suffix("").parts)


USAGE = ("usage: python -m bcc.explain checkpoint=<ckpt> input=<dir|image> output=<dir> [save_raw=true] "
         "[batch_size=16] [device=cpu]")


def main(argv: Sequence[str] | None = None) -> int:
    from omegaconf import OmegaConf

    from bcc.inference import CheckpointError, list_images, load_network

    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in argv) or any("=" not in a for a in argv):
        print(USAGE, file=sys.stderr)
        return 0 if any(a in ("-h", "--help") for a in argv) else 2
    args = OmegaConf.from_dotlist(argv)
    unknown = set(args) - {"checkpoint", "input", "output", "save_raw", "batch_size", "device"}
    missing = [k for k in ("checkpoint", "input", "output") if not args.get(k)]
    if unknown or missing:
        print(f"{USAGE}\n" + (f"unknown: {sorted(unknown)} " if unknown else "")
              + (f"missing: {missing}" if missing else ""), file=sys.stderr)
        return 2
    try:
        net = load_network(str(args.checkpoint), device=str(args.get("device", "cpu")))
        files = list_images(str(args.input))
    except (CheckpointError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    save_raw = str(args.get("save_raw", False)).lower() in ("true", "1", "yes")
    root = Path(str(args.input))
    explain_files(net, files, Path(str(args.output)), save_raw=save_raw,
                  batch_size=int(args.get("batch_size", 16)), root=root if root.is_dir() else None)
    print(f"explained {len(files)} image(s) x {len(OUTPUTS)} outputs ({', '.join(OUTPUTS)}) → {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
