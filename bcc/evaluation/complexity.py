"""Table 5: model complexity per backbone — parameters, MACs/FLOPs, size on disk and CPU latency.

* Parameters: all parameters of our :class:`bcc.models.network.MultitaskNet` (backbone + three heads; no
  ImageNet 1000-class classifier, which is why MobileNetV2 counts 2.2 M here and 3.5 M in the paper).
* GFLOPs: ``torch.utils.flop_counter.FlopCounterMode`` on one forward pass of one image at the runs'
  input size. It counts **2 FLOPs per multiply–accumulate** (matmul/convolution only), so
  **GMACs = GFLOPs / 2** — the paper's "0.3G" for MobileNetV2 at 224 px is MACs (0.60 GFLOPs here).
* Size (MB): the float32 ``state_dict`` serialised with ``torch.save``, in 10⁶ bytes (the paper's 14 MB).
* CPU ms/image: median over `repeats` timed forward passes of a batch (after one warm-up), divided by
  the batch size, under ``torch.inference_mode`` with ``channels_last``, on this machine's CPU threads
  (``torch.get_num_threads()``, stated in the table) — a relative, not absolute, number.
"""
from __future__ import annotations

import io
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from bcc.models.network import MultitaskNet


def count_parameters(model: torch.nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def count_flops(model: torch.nn.Module, image_size: int) -> int:
    """FLOPs of one forward pass of one (1, 3, S, S) image (2 per MAC, as FlopCounterMode counts)."""
    model.eval()
    x = torch.rand(1, 3, image_size, image_size)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return int(counter.get_total_flops())


def size_mb(model: torch.nn.Module) -> float:
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.getbuffer().nbytes / 1e6


def cpu_ms_per_image(model: torch.nn.Module, image_size: int, batch: int = 8, repeats: int = 3) -> float:
    model = model.eval().to(memory_format=torch.channels_last)
    x = torch.rand(batch, 3, image_size, image_size).to(memory_format=torch.channels_last)
    times = []
    with torch.inference_mode():
        model(x)  # warm-up
        for _ in range(repeats):
            t = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t)
    return float(np.median(times) / batch * 1000)


def complexity(backbone: str, image_size: int, timm_name: str | None = None, batch: int = 8, repeats: int = 3,
               timing: bool = True) -> dict:
    """One Table 5 row's complexity columns for `backbone` (random weights: complexity does not depend on them)."""
    model = MultitaskNet.build(backbone, timm_name=timm_name, pretrained=False, image_size=image_size)
    flops = count_flops(model, image_size)
    return {
        "backbone": backbone, "timm_name": timm_name or getattr(model.backbone, "default_cfg", {}).get("architecture"),
        "input_px": int(image_size), "params_M": count_parameters(model) / 1e6,
        "GMACs": flops / 2 / 1e9, "GFLOPs": flops / 1e9, "size_MB": size_mb(model),
        "cpu_ms_per_image": cpu_ms_per_image(model, image_size, batch, repeats) if timing else float("nan"),
        "cpu_threads": torch.get_num_threads(),
    }
