"""Checks of the deployment commands' option values that a type and a range cannot say: a wrong value is a
usage error (exit 2) naming the key and what it takes.

Keys, numbers and switches are the commands' structured configs' (``bcc.core.settings.PredictConfig``,
``ExplainConfig``, ``ExportConfig``, checked by ``bcc.core.cli.options``: Hydra hands ``batch_size=0`` or
``report=flase`` over as typed). Here: choices, folders, devices and the ONNX output name. The folders: ``output=`` must
not be ``input=`` or lie inside it when ``input=`` is a folder (the outputs of one run would be the
inputs of the next, and this run would have to leave them out), and must not be an existing file;
``input=`` inside ``output=`` is fine (the outputs go beside the input folder, never into it).
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from bcc.core.errors import BadInput, UsageError
from bcc.core.io import shown


def choice(a: Mapping[str, Any], key: str, choices: Iterable[Any]) -> Any:
    """``a[key]`` when it is one of `choices`."""
    choices = list(choices)
    if a[key] not in choices:
        said = ", ".join(f"{key}={'null' if c is None else c}" for c in choices)
        raise UsageError(f"{key}={a[key]}: not supported; the choices are {said}")
    return a[key]


def existing_folder(a: Mapping[str, Any], key: str) -> Path | None:
    """``a[key]`` as a folder that exists, or None when unset."""
    if a[key] in (None, ""):
        return None
    path = Path(str(a[key]))
    if not path.is_dir():
        raise BadInput(f"{key}={shown(path)}: no such folder")
    return path


def input_and_output(a: Mapping[str, Any]) -> tuple[Path, Path]:
    """``(input, output)`` when ``output=`` is a folder (or not there yet) outside a folder ``input=`` (see
    the module docstring); whether ``input=`` exists is ``bcc.explanation.batch.list_inputs``'s to say."""
    inp, out = Path(str(a["input"])), Path(str(a["output"]))
    if out.exists() and not out.is_dir():
        raise UsageError(f"output={shown(out)} is a file; output= is the folder the results go to")
    above = next((p for p in Path(os.path.abspath(out)).parents if os.path.lexists(p)), None)
    if above is not None and not above.is_dir():
        raise UsageError(f"output={shown(out)} lies below {shown(above)}, which is a file, not a folder; choose an "
                         f"output folder")
    if inp.is_dir():
        ri, ro = inp.resolve(), out.resolve()
        if ro == ri or ri in ro.parents:
            where = "is the input folder" if ro == ri else f"is inside the input folder {shown(inp)}"
            raise UsageError(f"output={shown(out)} {where}: its files would be read as inputs by the next run; "
                             f"choose an output folder outside input=")
    return inp, out


def device(a: Mapping[str, Any], key: str = "device") -> str:
    """``a[key]`` as a torch device (the CPU or a CUDA GPU) that this machine has."""
    try:
        dev = torch.device(str(a[key]))
    except RuntimeError:
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda"):
        raise UsageError(f"{key}={a[key]}: expected cpu, cuda or cuda:<index>")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"{key}={a[key]}: no CUDA device on this machine; use {key}=cpu")
    return str(dev)


def onnx_output(a: Mapping[str, Any], key: str = "output") -> Path | None:
    """``a[key]`` as the ``.onnx`` file to write (None when unset): ``bcc.predict`` tells an exported model
    from a checkpoint by that suffix."""
    if a[key] in (None, ""):
        return None
    path = Path(str(a[key]))
    if path.suffix != ".onnx" or path.is_dir():
        raise UsageError(f"{key}={shown(path)}: expected a file name ending in .onnx (bcc.predict reads a model "
                         f"by that suffix)")
    return path
