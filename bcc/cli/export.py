"""``python -m bcc.export checkpoint=<ckpt | glob | [ckpt, ...]> format=onnx [quantize=int8] [output=<file.onnx>]
[guarantee_data=<dataset> epsilon=0.05 delta=0.1]``: CPU deployment.

Options: ``conf/export.yaml``, all checked (``core.settings.ExportConfig``, ``bcc.deploy.option_checks``) before anything is written; the work:
``bcc.deploy.onnx_export`` (fp32, with the Grad-CAM maps in the graph where the backbone allows),
``bcc.deploy.ensemble`` (several checkpoints: the fold ensemble as one graph), ``bcc.deploy.int8`` and
``bcc.deploy.guarantee_calibration`` (the guaranteed threshold).
"""
from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig

from bcc.core.cli import hydra_command, options
from bcc.core.errors import UsageError
from bcc.core.log import get_logger
from bcc.core.settings import ExportConfig
from bcc.deploy.ensemble import checkpoints_of, export_ensemble
from bcc.deploy.guarantee import check_levels
from bcc.deploy.guarantee_calibration import attach_guarantee, calibration_labels
from bcc.deploy.int8 import int8_inputs, quantize_int8, require_check
from bcc.deploy.onnx_export import allow_outside_of, check_datasets, check_output, export_onnx
from bcc.deploy.option_checks import choice, existing_folder, onnx_output

log = get_logger(__name__)


def task(cfg: DictConfig) -> None:
    a = options(cfg, ("checkpoint",), ExportConfig)
    members = checkpoints_of(a["checkpoint"])
    batch = a["guarantee_batch"]
    check_levels(a["epsilon"], a["delta"], batch)
    guarantee_data = existing_folder(a, "guarantee_data")
    if len(members) > 1 and a["quantize"] is not None and (a["check_data"] is None or a["check_fold"] is None) \
            and not a["force"]:
        raise UsageError("quantize=int8 of an ensemble: its members' test folds differ, so name the images the int8 "
                         "model is checked against fp32 on: check_data=<dataset dir> check_fold=<k> (or force=true to "
                         "keep an unchecked int8 model)")
    a["checkpoint"] = str(members[0])
    choice(a, "format", ["onnx"])
    int8 = choice(a, "quantize", [None, "int8"]) == "int8"
    a.update(output=onnx_output(a), **{k: existing_folder(a, k) for k in ("data_root", "calibration", "check_data")})
    if a["allow_outside"] is None:
        a["allow_outside"] = allow_outside_of(a["checkpoint"])
    check_datasets(a, int8)
    fp32 = a["output"] or (Path(a["checkpoint"]).with_suffix(".onnx") if len(members) == 1 else None)
    if fp32 is not None and fp32 != Path(a["checkpoint"]):  # an .onnx as the checkpoint is refused by export_onnx
        check_output(fp32)
    if int8 and fp32 is not None:
        require_check(a)
        check_output(fp32.with_suffix(".int8.onnx"))
    if guarantee_data is not None:
        check_datasets({**a, "data_root": guarantee_data}, False)
        y = calibration_labels(guarantee_data, members, a["epsilon"], a["delta"], batch, a["allow_outside"])
    if len(members) > 1:
        path = export_ensemble(members, a["output"], tolerance=a["tolerance"], allow_outside=a["allow_outside"])
    else:
        path = export_onnx(a["checkpoint"], a["output"], data_root=a["data_root"], tolerance=a["tolerance"],
                           allow_outside=a["allow_outside"])
    if guarantee_data is not None:
        attach_guarantee(path, guarantee_data, y, a["epsilon"], a["delta"], batch, a["allow_outside"])
    if int8:
        calib, source, check = int8_inputs(a, path)
        if check is None:
            log.info("[bcc.export] WARNING: int8 accuracy NOT checked (force=true): no dataset and test fold found for "
                     "this checkpoint (pass check_data=<dataset dir> check_fold=<k>)")
        q = quantize_int8(path, calibration=calib, n_calibration=a["n_calibration"], check=check, force=a["force"],
                          calibration_source=source)
        if guarantee_data is not None:  # int8 scores differ from fp32's: the threshold is its own
            attach_guarantee(q, guarantee_data, y, a["epsilon"], a["delta"], batch, a["allow_outside"])


def main(argv: Sequence[str] | None = None) -> int:
    return hydra_command("bcc.export", "export", task, sys.argv[1:] if argv is None else argv)
