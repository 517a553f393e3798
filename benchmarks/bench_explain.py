"""Grad-CAM for all 8 outputs (``bcc.explain.gradcam_maps``) against a bare forward pass and against
pytorch-grad-cam's per-target loop (8 ``GradCAM`` calls), measured side by side in one run.

Goal (issue 5): all-8-maps time / bare forward time ≤ 1.2 for MobileNetV2 at 224 px on CPU. The bare
forward is ``net(x)`` under ``inference_mode`` in the layout ``load_network`` gives (channels_last);
``gradcam_maps`` includes the post-processing to the 224 px maps. Repeats are interleaved (A B C A B C …)
and medians reported, because the machine is shared. ``python -m benchmarks.bench_explain`` alone.
"""
from __future__ import annotations

import torch

from bcc.explanation.gradcam import gradcam_maps, reference_maps
from bcc.models.network import MultitaskNet
from benchmarks.timing import interleaved

THREADS = 2


def _net(name: str, size: int) -> MultitaskNet:
    torch.manual_seed(0)
    net = MultitaskNet.build(name, image_size=size).eval()
    return net.to(memory_format=torch.channels_last)


def measure(name: str, size: int = 224, batch: int = 8, repeat: int = 9, ref_repeat: int = 2) -> dict:
    """Ratio to the bare forward (`repeat` interleaved rounds), then the speed-up over pytorch-grad-cam
    (`ref_repeat` rounds of forward, gradcam_maps and the reference loop; the reference warmed up on one
    image, since a round of it costs 8 forward+backward passes of the batch)."""
    net = _net(name, size)
    x = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0))

    def forward():
        with torch.inference_mode():
            return net(x.contiguous(memory_format=torch.channels_last))

    fast = interleaved({"forward": forward, "gradcam_maps": lambda: gradcam_maps(net, x)}, repeat)
    reference_maps(net, x[:1])
    slow = interleaved({"forward": forward, "gradcam_maps": lambda: gradcam_maps(net, x),
                        "pytorch_grad_cam": lambda: reference_maps(net, x)}, ref_repeat, warmup=False)
    res = {"backbone": name, "size": size, "batch": batch, "threads": torch.get_num_threads(),
           "forward_ms_per_image": 1e3 * fast["forward"] / batch,
           "gradcam_ms_per_image": 1e3 * fast["gradcam_maps"] / batch,
           "ratio_to_forward": fast["gradcam_maps"] / fast["forward"],
           "reference_ms_per_image": 1e3 * slow["pytorch_grad_cam"] / batch,
           "speedup_over_reference": slow["pytorch_grad_cam"] / slow["gradcam_maps"],
           "reference_to_forward": slow["pytorch_grad_cam"] / slow["forward"]}
    print(f"{name:>9} {size}px batch {batch}, {res['threads']} threads: forward {res['forward_ms_per_image']:.1f} ms/img,"
          f" all 8 maps {res['gradcam_ms_per_image']:.1f} ms/img → ratio {res['ratio_to_forward']:.2f}"
          f" (goal ≤ 1.2); pytorch-grad-cam, 8 targets: {res['reference_ms_per_image']:.0f} ms/img"
          f" = {res['reference_to_forward']:.0f} forwards → {res['speedup_over_reference']:.0f}× faster (same run)",
          flush=True)
    return res


def run(convnext: bool = True) -> dict:
    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        out = {"mobilenet": measure("mobilenet", batch=8)}
        if convnext:  # ~3x slower per image and its reference loop dominates: a smaller batch
            out["convnext"] = measure("convnext", batch=2, repeat=5)
        return out
    finally:
        torch.set_num_threads(threads)


if __name__ == "__main__":
    run()
