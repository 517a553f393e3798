"""Triage speed on CPU (issue 6): images/s at 224 px with 2 threads for MobileNetV2, measured side by side in
one run (repeats interleaved, medians), because the machine is shared and noisy.

1. The model alone, a batch of 32: torch eager, torch channels_last, ONNX Runtime fp32 and int8, each for
   the scores only and with all 8 Grad-CAM maps post-processed to 224 px (torch: ``raw_cams``; ONNX: the
   graph's own ``cams`` output, ``bcc.deploy.onnx_export``); and the int8 graph alone, fetching the
   logits against the logits and the maps (what the maps cost inside the model).
2. Triage end to end on the int8 model (what ``bcc.predict checkpoint=<model>.int8.onnx`` does once the
   model is loaded): a folder of lesion images read, scored, ranked, ``triage.csv``, ``report.html`` and
   ``run.json`` written — logits only (``explain=false``: the report without maps) against all 8 maps
   (the graph's ``cams`` output, kept raw: ``maps.npy`` and the report's canvases, which the page draws,
   ``bcc.deploy.maps_js``). Target (issue 24): triage with maps ≥ 0.9 x triage without (0.41 when triage
   drew and JPEG-encoded eight overlays per lesion). Two kinds of folder: 224 x 224 PNGs, the network's
   own size, where decoding is as cheap as it gets and the maps' share as large as it gets; and
   1024 x 768 JPEGs, the size of a dermoscopy photo.

The network is MobileNetV2 with untrained weights whose BatchNorm statistics are first re-estimated on
synthetic lesions (a few train-mode forwards), so that activations have realistic ranges for the int8
calibration; speed does not depend on the weights' values. The ONNX models come from the real code path:
a checkpoint is written and ``bcc.deploy.onnx_export.export_onnx`` / ``bcc.deploy.int8.quantize_int8``
(calibrated on synthetic lesions) turn it into ``.onnx`` / ``.int8.onnx``. (How far the int8 maps are
from the fp32 ones is not measured here: an untrained network's maps change as much under ±0.5/255 input
noise; ``bcc.export quantize=int8`` reports it for a trained checkpoint, docs/deploy.md.)

``python -m benchmarks.bench_predict`` alone, or ``make bench ARGS=predict``.
"""
from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bcc.deploy.int8 import quantize_int8, synthetic_calibration_images
from bcc.deploy.onnx_export import export_onnx
from bcc.deploy.onnx_model import INPUT_NAME, MAPS_NAME, OUTPUT_NAME, ort_session
from bcc.deploy.scorers import OnnxScorer
from bcc.deploy.thresholds import Thresholds
from bcc.deploy.triage import triage, write_worklist
from bcc.explanation.batch import list_inputs
from bcc.explanation.gradcam import postprocess, raw_cams
from bcc.models.checkpoint import load_network
from bcc.models.network import MultitaskNet
from benchmarks.timing import interleaved

THREADS = 2
SIZE = 224
BATCH = 32
N_FILES = 48


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


#: the folders triage is timed on: name → (width, height, format)
FOLDERS = {"224x224 PNG": (224, 224, "PNG"), "1024x768 JPEG": (1024, 768, "JPEG")}


def _folder(tmp: Path, n: int, size: int, kind: str) -> Path:
    """`n` synthetic lesions saved as `kind` (a key of ``FOLDERS``)."""
    w, h, fmt = FOLDERS[kind]
    d = tmp / kind.replace(" ", "_")
    d.mkdir()
    for i, img in enumerate(_lesions(n, size, seed=11)):
        im = Image.fromarray((img.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
        im.resize((w, h), Image.Resampling.BILINEAR).save(d / f"lesion_{i:03d}.{fmt.lower()}", fmt, quality=90)
    return d


def run(size: int = SIZE, batch: int = BATCH, repeat: int = 5, n_files: int = N_FILES) -> dict:
    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        with tempfile.TemporaryDirectory() as d:
            tmp = Path(d)
            fp32, int8 = _models(_network(size), size, tmp)
            eager = load_network(tmp / "bench.ckpt", channels_last=False)
            cl = load_network(tmp / "bench.ckpt", channels_last=True)
            sessions = {"fp32": ort_session(fp32, THREADS), "int8": ort_session(int8, THREADS)}
            scorer = OnnxScorer(int8, THREADS)
            folders = {kind: list_inputs(_folder(tmp, n_files, size, kind)) for kind in FOLDERS}
            th = Thresholds()
            info = {"model": scorer.describe, "input": "benchmark", "thresholds": th.as_dict(),
                    "explanations": scorer.maps_source, "seconds": 0.0}

            def triaged(kind: str, explain: bool):
                root, files = folders[kind]
                table, lesions = triage(files, root, scorer, th, scorer if explain else None,
                                        batch_size=batch, progress=False)
                write_worklist(tmp / "out", table, lesions, info)
                return lesions

            for kind in FOLDERS:
                assert all(les.cams is not None and les.cams.shape[0] == 8 for les in triaged(kind, True))
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
                logits, cams = sessions[kind].run([OUTPUT_NAME, MAPS_NAME], {INPUT_NAME: x_np})
                return 1 / (1 + np.exp(-logits)), postprocess(torch.from_numpy(cams), (size, size))

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
            ips = {k: batch / v for k, v in interleaved(fns, repeat).items()}
            graph = {("int8 graph", False): lambda: sessions["int8"].run([OUTPUT_NAME], {INPUT_NAME: x_np}),
                     ("int8 graph", True): lambda: sessions["int8"].run([OUTPUT_NAME, MAPS_NAME], {INPUT_NAME: x_np})}
            ips.update({k: batch / v for k, v in interleaved(graph, 4 * repeat).items()})  # two close figures
            tri = {k: n_files / v for k, v in interleaved(
                {(kind, explain): functools.partial(triaged, kind, explain) for kind in FOLDERS
                 for explain in (False, True)}, repeat).items()}
            p32, p8 = ort_scores("fp32"), ort_scores("int8")
            with torch.inference_mode():
                pt = torch.sigmoid(eager(x)).numpy()
    finally:
        torch.set_num_threads(threads)

    base = ips[("torch eager", False)]
    print(f"MobileNetV2 {size}px, batch {batch}, {THREADS} threads, median of {repeat} interleaved repeats:")
    print(f"{'':22s}{'scores img/s':>14s}{'+ 8 maps img/s':>16s}{'maps/scores':>13s}{'× eager (scores)':>18s}")
    for name in ("torch eager", "torch channels_last", "ONNX Runtime fp32", "ONNX Runtime int8"):
        print(f"{name:22s}{ips[(name, False)]:14.1f}{ips[(name, True)]:16.1f}"
              f"{ips[(name, True)] / ips[(name, False)]:13.2f}{ips[(name, False)] / base:18.2f}")
    graph = ips[("int8 graph", True)] / ips[("int8 graph", False)]
    print(f"int8 graph alone (no post-processing, {4 * repeat} repeats): logits {ips[('int8 graph', False)]:.1f} images/s, logits + 8 maps "
          f"{ips[('int8 graph', True)]:.1f} images/s → ratio {graph:.2f} (the maps in the model: goal ≤ 10 % cost)")
    print(f"triage end to end, ONNX Runtime int8, {n_files} files each (read, score, triage.csv, report.html, "
          f"run.json; with maps also maps.npy and the 8 raw maps per lesion in the page), images/s:")
    for kind in FOLDERS:
        ratio = tri[(kind, True)] / tri[(kind, False)]
        print(f"  {kind:14s} logits only {tri[(kind, False)]:6.1f}, with all 8 maps {tri[(kind, True)]:6.1f} → ratio "
              f"{ratio:.2f} (target ≥ 0.90; 0.41 when triage drew 8 overlay JPEGs per lesion)")
    print(f"agreement on these {batch} images: max |p(ORT fp32) − p(torch)| = {np.abs(p32 - pt).max():.1e}, "
          f"max |p(int8) − p(fp32)| = {np.abs(p8 - p32).max():.3f}")
    return {"size": size, "batch": batch, "threads": THREADS,
            "images_per_s": {f"{k[0]}{' + gradcam' if k[1] else ''}": round(v, 1) for k, v in ips.items()},
            "int8_graph_maps_ratio": graph,
            "triage_int8_images_per_s": {f"{k[0]}{', all 8 maps' if k[1] else ', logits only'}": round(v, 1)
                                         for k, v in tri.items()},
            "max_abs_dp_fp32_torch": float(np.abs(p32 - pt).max()),
            "max_abs_dp_int8_fp32": float(np.abs(p8 - p32).max())}


if __name__ == "__main__":
    run()
