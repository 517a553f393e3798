"""``python -m bcc.export checkpoint=<ckpt> format=onnx [quantize=int8] [output=<file.onnx>]``: CPU deployment.

Options: ``conf/export.yaml``, all checked (``bcc.deploy.options``) before anything is written; the work:
``bcc.deploy.onnx_export`` (fp32, with the Grad-CAM maps in the graph where the backbone allows) and
``bcc.deploy.int8``.
"""
from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig

from bcc.core.cli import hydra_command, options
from bcc.deploy.int8 import int8_inputs, quantize_int8, require_check
from bcc.deploy.onnx_export import allow_outside_of, check_datasets, check_output, export_onnx
from bcc.deploy.options import choice, existing_folder, flag, fraction, onnx_output, positive, whole


def task(cfg: DictConfig) -> None:
    a = options(cfg, ("checkpoint",))
    choice(a, "format", ["onnx"])
    int8 = choice(a, "quantize", [None, "int8"]) == "int8"
    a.update(output=onnx_output(a), n_calibration=whole(a, "n_calibration"), tolerance=positive(a, "tolerance"),
             max_accuracy_drop=fraction(a, "max_accuracy_drop"), force=flag(a, "force"),
             check_fold=None if a["check_fold"] is None else whole(a, "check_fold", low=0),
             **{k: existing_folder(a, k) for k in ("data_root", "calibration", "check_data")})
    allow = flag(a, "allow_outside", nullable=True)
    a["allow_outside"] = allow_outside_of(a["checkpoint"]) if allow is None else allow
    check_datasets(a, int8)
    fp32 = a["output"] or Path(a["checkpoint"]).with_suffix(".onnx")
    if fp32 != Path(a["checkpoint"]):  # an .onnx given as the checkpoint is refused as such by export_onnx
        check_output(fp32)
    if int8:
        require_check(a)
        check_output(fp32.with_suffix(".int8.onnx"))
    path = export_onnx(a["checkpoint"], a["output"], data_root=a["data_root"], tolerance=a["tolerance"],
                       allow_outside=a["allow_outside"])
    if int8:
        calib, source, check = int8_inputs(a, path)
        if check is None:
            print("[bcc.export] WARNING: int8 accuracy NOT checked (force=true): no dataset and test fold found for "
                  "this checkpoint (pass check_data=<dataset dir> check_fold=<k>)")
        quantize_int8(path, calibration=calib, n_calibration=a["n_calibration"], check=check, force=a["force"],
                      calibration_source=source)


def main(argv: Sequence[str] | None = None) -> int:
    return hydra_command("bcc.export", "export", task, sys.argv[1:] if argv is None else argv)
