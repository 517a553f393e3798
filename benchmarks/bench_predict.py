"""Triage scoring speed on CPU (issue 6): images/s at 224 px with 2 threads for MobileNetV2, torch eager,
torch channels_last, ONNX Runtime fp32 and ONNX Runtime int8, each with and without explanations, measured
side by side in one run (repeats interleaved, medians), because the machine is shared and noisy.

The network is MobileNetV2 with untrained weights whose BatchNorm statistics are first re-estimated on
synthetic lesions (a few train-mode forwards), so that activations have realistic ranges for the int8
calibration; speed does not depend on the weights' values. The ONNX models come from the real code path:
a checkpoint is written and ``bcc.deploy.onnx_export.export_onnx`` / ``bcc.deploy.int8.quantize_int8`` (calibrated on synthetic
lesions) turn it into ``.onnx`` / ``.int8.onnx``.

"With explanations" adds what ``bcc.predict`` computes per image beyond the scores: all 8 Grad-CAM maps
(``bcc.explanation.gradcam.raw_cams``, torch, channels_last) post-processed to the 224 px input size. On the torch
rows the scores come from the same pass; on the ONNX rows the scores are ONNX Runtime's and the maps
torch's (explanations use torch). Not included: decoding files and encoding the report's JPEGs.

Goal (issue 6): ≥ 150 images/s for ONNX Runtime on MobileNetV2 (torch eager was measured at 80 images/s).
``python -m benchmarks.bench_predict`` alone, or ``make bench ARGS=predict``.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from bcc.deploy.int8 import quantize_int8, synthetic_calibration_images
from bcc.deploy.onnx_export import export_onnx
from bcc.deploy.onnx_model import INPUT_NAME, OUTPUT_NAME, ort_session
from bcc.explanation.gradcam import postprocess, raw_cams
from bcc.models.checkpoint import load_network
from bcc.models.network import MultitaskNet
from benchmarks.timing import interleaved

THREADS = 2
SIZE = 224
BATCH = 32


def _lesions(n: int, size: int, seed: int) -> torch.Tensor:
    return torch.from_numpy(synthetic_calibration_images(n, size, seed=seed))


def _network(size: int):
    """MobileNetV2 (untrained) with BatchNorm statistics re-estimated on synthetic lesions, in eval mode."""
    torch.manual_seed(0)
    net = MultitaskNet.build("mobilenet", "mobilenetv2_100", pretrained=False, image_size=size)
    for m in net.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the batches below
    net.train()
    with torch.no_grad():
        for i in range(4):
            net(_lesions(16, size, seed=100 + i))
    return net.eval()


def _models(net, size: int, tmp: Path) -> tuple[Path, Path]:
    ckpt = tmp / "bench.ckpt"
    torch.save({"state_dict": {f"net.{k}": v for k, v in net.state_dict().items()},
                "hyper_parameters": {"network": {**net.spec, "image_size": size}}}, ckpt)
    fp32 = export_onnx(ckpt, tmp / "bench.onnx", data_root=None, verbose=False)
    return fp32, quantize_int8(fp32, n_calibration=32, verbose=False)


def run(size: int = SIZE, batch: int = BATCH, repeat: int = 5) -> dict:
    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        with tempfile.TemporaryDirectory() as d:
            tmp = Path(d)
            fp32, int8 = _models(_network(size), size, tmp)
            eager = load_network(tmp / "bench.ckpt", channels_last=False)
            cl = load_network(tmp / "bench.ckpt", channels_last=True)
            sessions = {"fp32": ort_session(fp32, THREADS), "int8": ort_session(int8, THREADS)}
        x = _lesions(batch, size, seed=7)
        x_np = x.numpy()
        x_cl = x.contiguous(memory_format=torch.channels_last)

        def torch_scores(net, t):
            with torch.inference_mode():
                return torch.sigmoid(net(t))

        def torch_explained(net, t):
            cams, logits = raw_cams(net, t)
            return torch.sigmoid(logits), postprocess(cams, (size, size))

        def ort_scores(kind):
            logits = sessions[kind].run([OUTPUT_NAME], {INPUT_NAME: x_np})[0]
            return 1 / (1 + np.exp(-logits))

        def ort_explained(kind):
            return ort_scores(kind), postprocess(raw_cams(cl, x)[0], (size, size))

        fns = {
            ("torch eager", False): lambda: torch_scores(eager, x),
            ("torch channels_last", False): lambda: torch_scores(cl, x_cl),
            ("ONNX Runtime fp32", False): lambda: ort_scores("fp32"),
            ("ONNX Runtime int8", False): lambda: ort_scores("int8"),
            ("torch eager", True): lambda: torch_explained(eager, x),
            ("torch channels_last", True): lambda: torch_explained(cl, x_cl),
            ("ONNX Runtime fp32", True): lambda: ort_explained("fp32"),
            ("ONNX Runtime int8", True): lambda: ort_explained("int8"),
        }
        sec = interleaved(fns, repeat)
        ips = {k: batch / v for k, v in sec.items()}
        p32, p8 = ort_scores("fp32"), ort_scores("int8")
        with torch.inference_mode():
            pt = torch.sigmoid(eager(x)).numpy()
    finally:
        torch.set_num_threads(threads)

    base = ips[("torch eager", False)]
    print(f"MobileNetV2 {size}px, batch {batch}, {THREADS} threads, median of {repeat} interleaved repeats:")
    print(f"{'':22s}{'scores img/s':>14s}{'+ Grad-CAM img/s':>18s}{'× eager (scores)':>18s}")
    for name in ("torch eager", "torch channels_last", "ONNX Runtime fp32", "ONNX Runtime int8"):
        print(f"{name:22s}{ips[(name, False)]:14.1f}{ips[(name, True)]:18.1f}{ips[(name, False)] / base:18.2f}")
    print(f"goal ≥ 150 images/s on ONNX Runtime: fp32 {ips[('ONNX Runtime fp32', False)]:.0f}, "
          f"int8 {ips[('ONNX Runtime int8', False)]:.0f} (same run)")
    print(f"agreement on these {batch} images: max |p(ORT fp32) − p(torch)| = {np.abs(p32 - pt).max():.1e}, "
          f"max |p(int8) − p(fp32)| = {np.abs(p8 - p32).max():.3f}")
    return {"size": size, "batch": batch, "threads": THREADS,
            "images_per_s": {f"{k[0]}{' + gradcam' if k[1] else ''}": round(v, 1) for k, v in ips.items()},
            "max_abs_dp_fp32_torch": float(np.abs(p32 - pt).max()),
            "max_abs_dp_int8_fp32": float(np.abs(p8 - p32).max())}


if __name__ == "__main__":
    run()
