"""``python -m bcc.export checkpoint=<ckpt> format=onnx [quantize=int8] [output=<file.onnx>]``: CPU deployment.

Options: ``conf/export.yaml``; the work: ``bcc.deploy.onnx_export`` (fp32) and ``bcc.deploy.int8``.
"""
from __future__ import annotations

import sys
from collections.abc import Sequence

from omegaconf import DictConfig

from bcc.core.cli import hydra_command, options
from bcc.core.errors import UsageError
from bcc.deploy.int8 import int8_inputs, quantize_int8
from bcc.deploy.onnx_export import export_onnx


def task(cfg: DictConfig) -> None:
    a = options(cfg, ("checkpoint",))
    if a["format"] != "onnx":
        raise UsageError(f"format={a['format']}: only format=onnx is supported")
    if a["quantize"] not in (None, "int8"):
        raise UsageError(f"quantize={a['quantize']}: only quantize=int8 is supported")
    path = export_onnx(a["checkpoint"], a["output"], data_root=a["data_root"], tolerance=float(a["tolerance"]))
    if a["quantize"] == "int8":
        calib, source, check = int8_inputs(a, path)
        if check is None:
            print("[bcc.export] WARNING: int8 accuracy NOT checked: no dataset and test fold found for this "
                  "checkpoint (pass check_data=<dataset dir> check_fold=<k>)")
        quantize_int8(path, calibration=calib, n_calibration=int(a["n_calibration"]), check=check,
                      force=bool(a["force"]), calibration_source=source)


def main(argv: Sequence[str] | None = None) -> int:
    return hydra_command("bcc.export", "export", task, sys.argv[1:] if argv is None else argv)
