"""``python -m bcc.explain checkpoint=<ckpt|onnx> input=<dir|image> output=<dir> [save_raw=true]``: Grad-CAM.

Options: ``conf/explain.yaml`` (``core.settings.ExplainConfig``; checked by ``bcc.deploy.option_checks``); the work:
``bcc.explanation.batch.explain_files``. The maps come from the torch checkpoint, or from an ONNX model
exported with them (``bcc.deploy.scorers``).
"""
from __future__ import annotations

import sys
from collections.abc import Sequence

from omegaconf import DictConfig

from bcc.core.cli import hydra_command, options
from bcc.core.errors import BadInput
from bcc.core.io import OutputSet, shown
from bcc.core.log import get_logger
from bcc.core.patterns import OUTPUTS
from bcc.core.settings import ExplainConfig
from bcc.deploy.option_checks import device, input_and_output
from bcc.deploy.scorers import OnnxScorer, make_scorer
from bcc.explanation.batch import explain_files, list_inputs, output_names
from bcc.models.checkpoint import CheckpointError

log = get_logger(__name__)


def task(cfg: DictConfig) -> None:
    a = options(cfg, ("checkpoint", "input", "output"), ExplainConfig)
    batch_size, megapixels, save_raw, dev = a["batch_size"], a["max_megapixels"], a["save_raw"], device(a)
    inp, out = input_and_output(a)
    root, files = list_inputs(inp)
    if not files:
        raise BadInput(f"input={shown(inp)}: no files in it")
    outputs = OutputSet(out, "bcc.explain", output_names(files, root, save_raw), a["overwrite"])
    scorer = make_scorer(a["checkpoint"], device=dev)
    if isinstance(scorer, OnnxScorer) and not scorer.explains:
        raise CheckpointError(f"{a['checkpoint']}: has no Grad-CAM maps ({scorer.why_no_maps()}); pass the torch "
                              f"checkpoint it was exported from ({scorer.card.source_checkpoint})")
    with outputs.staging() as staged:
        table = explain_files(lambda x: scorer(x, maps=True), scorer.preprocess, files, staged, root,
                              save_raw=save_raw, batch_size=batch_size, max_megapixels=megapixels)
    ok = table["status"].eq("ok")
    log.info(f"[bcc.explain] explained {int(ok.sum())} image(s) x {len(OUTPUTS)} outputs ({', '.join(OUTPUTS)}), "
             f"skipped {int((~ok).sum())} → {shown(out)} (explanations.csv lists every input)")


def main(argv: Sequence[str] | None = None) -> int:
    return hydra_command("bcc.explain", "explain", task, sys.argv[1:] if argv is None else argv)
