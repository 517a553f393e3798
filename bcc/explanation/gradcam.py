"""Grad-CAM for all 8 outputs at about the cost of one forward pass (paper §3.2).

    from bcc.models.checkpoint import load_network
    from bcc.data.images import read_image
    from bcc.explanation.gradcam import gradcam_maps
    net = load_network("outputs/demo/mobilenet/fold0/stage3/best.ckpt")
    x, rgb = read_image("lesion.jpg", net.image_size)
    maps, logits = gradcam_maps(net, x[None], size=rgb.shape[:2])   # (1, 8, H, W) in [0, 1], (1, 8)

The default target layer and the mode of each backbone are in the registry
``bcc.models.backbones.BACKBONES``; ``backbone.gradcam_layer`` (recorded in the network's spec) moves
the maps to another layer, e.g. MobileNetV2's stride-16 ``blocks.4``.

Why it is cheap. Grad-CAM weights channel c of the target feature map A (C x h x w) by the spatial mean
of d y_k / d A_c. Where the network ends in global average pooling, the gradient at every position is
the same, (1 / hw) * d y_k / d p_c with p the pooled vector, so the 8 maps are
``relu(sum_c J[k, c] A_c) / hw`` with J the (8 x C) Jacobian of the logits with respect to p:

- ``linear`` (mobilenet): pooling is the last nonlinear step and the heads are linear, so J is the
  stacked head weights (``MultitaskNet.head_weights``) — one forward of ``forward_features`` and one
  einsum, no backward at all.
- ``pooled`` (convnext): timm's ConvNeXt head applies a LayerNorm *after* pooling, so J depends on the
  image; it is obtained by one batched backward (8 vector-Jacobian products at once) through the tiny
  post-pool head only, then the same einsum.
- ``tokens`` (vit): ViT pools the class token, so the last block's output patch tokens get zero
  gradient (the pytorch-grad-cam documentation's point); the target is ``blocks[-1].norm1`` (the
  input of the last attention), with a reshape transform dropping the prefix tokens. One forward, and
  one batched backward from the 8 logits to that layer (the graph below it is cut off).
- ``autograd`` (any other layer, ``backbone.gradcam_layer``): the same forward and batched backward as
  ``tokens``, on a feature map that needs no reshape.

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

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bcc.core.patterns import OUTPUTS
from bcc.data.images import Preprocess, view_region
from bcc.models.backbones import cam_target
from bcc.models.network import MultitaskNet

EPS = 1e-7  # pytorch-grad-cam's scale_cam_image epsilon


@dataclass(frozen=True)
class Target:
    """The Grad-CAM target layer of a network and the transform making its output (N, C, h, w)."""

    layer: nn.Module
    reshape: Callable[[torch.Tensor], torch.Tensor] | None
    mode: str


def token_reshape(backbone: Any, image_hw: Sequence[int]) -> Callable[[torch.Tensor], torch.Tensor]:
    """ViT tokens (N, prefix + gh*gw, D) → (N, D, gh, gw), dropping the class/register prefix tokens."""
    prefix = int(getattr(backbone, "num_prefix_tokens", 1))
    ph, pw = backbone.patch_embed.patch_size
    gh, gw = int(image_hw[0]) // ph, int(image_hw[1]) // pw

    def reshape(t: torch.Tensor) -> torch.Tensor:
        return t[:, prefix:, :].reshape(t.shape[0], gh, gw, t.shape[-1]).permute(0, 3, 1, 2)

    return reshape


def target(net: MultitaskNet, image_hw: Sequence[int] = (224, 224)) -> Target:
    """The network's Grad-CAM target layer (its spec's ``gradcam_layer``, else the backbone's default) and
    mode, with the token reshape for ViT."""
    path, mode = cam_target(net.backbone_name, net.spec.get("gradcam_layer"))
    reshape = token_reshape(net.backbone, image_hw) if mode == "tokens" else None
    return Target(net.backbone.get_submodule(path), reshape, mode)


def logits_from_pooled(net: MultitaskNet, pooled: torch.Tensor) -> torch.Tensor:
    """The net's logits given the globally pooled feature vector (N, C): the rest of timm's head, then ours."""
    f = net.backbone.forward_head(pooled[:, :, None, None])  # pooling a 1x1 map is the identity
    return net.head_logits(net.dropout(f))


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
        t = target(net, x.shape[-2:])
        if t.mode in ("tokens", "autograd"):
            return _hooked_cams(net, x, t)
        with torch.no_grad():
            feats = net.backbone.forward_features((x - net.mean) / net.std)
        hw = feats.shape[-2] * feats.shape[-1]
        pooled = feats.mean(dim=(2, 3))
        if t.mode == "linear":
            with torch.no_grad():
                w = net.head_weights()
                cams = torch.einsum("kc,nchw->nkhw", w, feats) / hw
                return cams, pooled @ w.T + net.head_bias()
        with torch.enable_grad():
            leaf = pooled.detach().requires_grad_(True)
            logits = logits_from_pooled(net, leaf)
            jac = _batched_vjp(logits, leaf)  # (8, N, C)
        cams = torch.einsum("knc,nchw->nkhw", jac.detach(), feats) / hw
        return cams, logits.detach()
    finally:
        net.train(was_training)


def _hooked_cams(net: MultitaskNet, x: torch.Tensor, t: Target) -> tuple[torch.Tensor, torch.Tensor]:
    """Grad-CAM at any layer: its output made a leaf by a forward hook, one batched backward from the logits."""
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
    shape = t.reshape or (lambda a: a)
    acts = shape(held[0].detach())  # (N, D, gh, gw)
    k = grads.shape[0]
    g = shape(grads.flatten(0, 1)).unflatten(0, (k, -1))  # (8, N, D, gh, gw)
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


def maps_on_picture(cams: torch.Tensor, shape: Sequence[int], preprocess: Preprocess,
                    aspect: float | None = None) -> torch.Tensor:
    """Raw maps (N, 8, h, w) post-processed onto an (H, W) picture: over the part the network saw
    (``bcc.data.images.view_region``: all of it for ``square``, the centre square for ``crop``), 0 outside."""
    top, left, height, width = view_region((int(shape[0]), int(shape[1])), preprocess, aspect)
    region = postprocess(cams, (height, width))
    if (height, width) == tuple(int(s) for s in shape):
        return region
    out = region.new_zeros((*region.shape[:2], int(shape[0]), int(shape[1])))
    out[..., top:top + height, left:left + width] = region
    return out


def gradcam_maps(net: MultitaskNet, x: torch.Tensor, size: Sequence[int] | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """All 8 Grad-CAM maps, (N, 8, H, W) float32 in [0, 1], and the logits (N, 8), for a batch.

    `x`: float images in [0, 1], (N, 3, S, S), or one image (3, S, S) as ``bcc.data.images.read_image``
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
