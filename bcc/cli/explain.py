"""``python -m bcc.explain checkpoint=<ckpt> input=<dir|image> output=<dir> [save_raw=true]``: Grad-CAM.

Options: ``conf/explain.yaml``; the work: ``bcc.explanation.batch.explain_files``.
"""
from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig

from bcc.core.cli import hydra_command, options
from bcc.core.patterns import OUTPUTS
from bcc.explanation.batch import explain_files, list_images
from bcc.models.checkpoint import load_network


def task(cfg: DictConfig) -> None:
    a = options(cfg, ("checkpoint", "input", "output"))
    net = load_network(str(a["checkpoint"]), device=str(a["device"]))
    files = list_images(str(a["input"]))
    root = Path(str(a["input"]))
    explain_files(net, files, Path(str(a["output"])), save_raw=bool(a["save_raw"]), batch_size=int(a["batch_size"]),
                  root=root if root.is_dir() else None)
    print(f"explained {len(files)} image(s) x {len(OUTPUTS)} outputs ({', '.join(OUTPUTS)}) → {a['output']}")


def main(argv: Sequence[str] | None = None) -> int:
    return hydra_command("bcc.explain", "explain", task, sys.argv[1:] if argv is None else argv)
