"""``make real DATA=<folder>`` (``python -m bcc.real [overrides]``): the public dermoscopy sets end to end.

``--data <folder>`` (``make real DATA=<folder>``) merges the sets found there first, as a timed step
(``bcc.data.public``, into ``data.root``'s parent; an existing merged set is reused), then this command runs, on ``experiment=real`` (EfficientNet-Lite0 from its installed ImageNet weights): the
Dawid–Skene consensus and the folds (stratified on each source and its BCC), the paper's protocol (stages
1 → 2 → 3; stage 0 first only for a backbone without weights, ``experiment=real_scratch``) on every fold, the
leave-one-source-out runs (the BCC stages, one per source with both classes, into
``<output_dir>/loso/<source>/``) and the evaluation report (``<output_dir>/report/``). Each step's wall time
and the machine's load are printed and kept in ``<output_dir>/timings.json``.

Arguments are Hydra overrides of the training config, e.g. ``make real ARGS="data.image_size=192"``; those of
the evaluation (``eval.*``, ``wandb.*``, ``report_dir``: told apart by Hydra's own override parser) go to the
report only. Every option is checked before anything is written into the dataset or the output folder.

``--controls`` (``make real-controls``, after ``make real``) trains the control runs of ``CONTROLS`` on the same
folds and writes ``<output_dir>/controls/comparison.md``: Table 5 on real pictures, what ImageNet brings apart
from the architecture and the input size (``bcc.evaluation.controls``).
"""
from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import cast

import hydra
import pandas as pd
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import OverrideParseException
from omegaconf import DictConfig

from bcc.cli.evaluate import resolve_dirs
from bcc.core.cli import hydra_command
from bcc.core.config import with_override
from bcc.core.errors import UsageError
from bcc.core.io import write_json
from bcc.core.log import configure, get_logger
from bcc.core.machine import machine
from bcc.data.consensus import ensure_labels
from bcc.data.contract import DatasetError
from bcc.data.folds import ensure_splits
from bcc.data.public import prepare_public
from bcc.data.table import read_table
from bcc.evaluation.controls import comparison, write_comparison
from bcc.evaluation.pipeline import evaluate
from bcc.training.config import check_config
from bcc.training.protocol import run_job, run_protocol
from bcc.training.stages import sequence

log = get_logger(__name__)

#: the evaluation's config nodes: overrides of these go to the report, every other one to training
EVAL_NODES = ("eval", "wandb", "report_dir")


def loso_sources(root: Path) -> list[str]:
    """The sources a leave-one-source-out AUROC can be measured on: both classes among their pictures, and
    other sources left to train on."""
    table = read_table(root, splits=False)
    both = table.groupby(table["source"].astype(str))["bcc"].agg(lambda y: 0 < y.sum() < len(y))
    return sorted(both.index[both]) if table["source"].nunique() > 1 else []


def split_overrides(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """(training, evaluation) overrides, told apart by the key Hydra's parser reads in each (``++eval.x=1``,
    ``~eval.x``, ``+wandb.y=2`` included)."""
    try:
        parsed = OverridesParser.create().parse_overrides(list(argv))
    except OverrideParseException as e:
        raise UsageError(f"cannot read the overrides {' '.join(argv)}: {str(e).splitlines()[0]}") from None
    training: list[str] = []
    evaluation: list[str] = []
    for o in parsed:
        (evaluation if o.key_or_group.split(".")[0] in EVAL_NODES else training).append(str(o.input_line))
    return training, evaluation


def loso_stages(backbone: DictConfig) -> list[int]:
    """The stages of a leave-one-source-out run: those that train the diagnosis (0?, 1, 2), not stage 3."""
    return [s for s in sequence("all", backbone) if s != 3]


#: ``--controls``: the runs that tell ImageNet's gain apart from the architecture's and the input size's, each on
#: the main run's folds into ``<output_dir>/controls/<name>/`` (the linear probe comes with the main run's report)
CONTROLS: dict[str, list[str]] = {
    "mobilenet_scratch_112": ["experiment=real_scratch"],
    "lite0_scratch_112": ["experiment=real_scratch", "backbone=efficientnet_lite0", "backbone.pretrained=false"],
    "lite0_imagenet_112": ["experiment=real", "data.image_size=112"],
}
#: the controls' evaluation: what the comparison reads, without the main run's costlier probes
CONTROL_EVAL = ["eval.source_probe=false", "eval.linear_probe=false"]


def take_options(argv: list[str]) -> tuple[Path | None, list[str] | None, list[str]]:
    """``--data <folder>`` (the downloaded sets, merged as the first step), ``--controls[=a,b]`` (None: not asked)
    and the other arguments."""
    rest: list[str] = []
    data, controls = None, None
    it = iter(argv)
    for a in it:
        if a == "--data" or a.startswith("--data="):
            value = a.split("=", 1)[1] if "=" in a else next(it, None)
            if not value:
                raise UsageError("--data needs a folder: --data <folder holding HAM10000, Derm7pt, PH2>")
            data = Path(value)
        elif a == "--controls" or a.startswith("--controls="):
            controls = a.split("=", 1)[1].split(",") if "=" in a else list(CONTROLS)
            if unknown := [c for c in controls if c not in CONTROLS]:
                raise UsageError(f"--controls={','.join(controls)}: unknown {', '.join(unknown)}; choose from "
                                 f"{', '.join(CONTROLS)}")
        else:
            rest.append(a)
    return data, controls, rest


class Steps:
    """Each step's wall time and the machine's 1-minute load average at its end (a shared machine's times say
    little alone), printed as they finish and written to ``timings.json``."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.load: dict[str, float] = {}

    def __call__(self, name: str, work: Callable[[], object]) -> None:
        log.info(f"\n== {name} ==")
        t0 = time.perf_counter()
        work()
        self.seconds[name] = round(time.perf_counter() - t0, 1)
        self.load[name] = round(os.getloadavg()[0], 2)
        log.info(f"[bcc] {name}: {self.seconds[name] / 60:.1f} min (load average {self.load[name]})")

    def write(self, path: Path) -> None:
        total = sum(self.seconds.values())
        write_json({"steps_seconds": self.seconds, "total_seconds": round(total, 1), "load_average_at_end": self.load,
                    "threads": torch.get_num_threads(), "machine": machine()}, path)
        log.info("\n" + pd.Series({k: f"{v / 60:.1f} min" for k, v in self.seconds.items()}).to_string())
        log.info(f"total: {total / 60:.1f} min on {machine().get('cpu', 'this machine')}")


def task(cfg: DictConfig, eval_overrides: Sequence[str] = (), data: Path | None = None,
         controls: Sequence[str] | None = None) -> None:
    root, out = Path(cfg.data.root), Path(cfg.paths.output_dir)
    compose = lambda o: hydra.compose(config_name="config", overrides=o)  # the running app's composer
    overrides = [o for o in HydraConfig.get().overrides.task if not o.startswith("hydra")]
    report_cfg = lambda ovr, extra=(): resolve_dirs(hydra.compose(config_name="eval", overrides=[
        f"experiment={compose(ovr).experiment_name}", *ovr, *eval_overrides, *extra]))
    runs = {"": overrides} if controls is None else {
        name: with_override(_with_all(overrides, CONTROLS[name]), "paths.output_dir", str(out / "controls" / name))
        for name in controls}
    # every option checked before anything is written: keys and ranges, the datamodule's own (sampler,
    # resize, colour), the evaluation's
    for ovr in runs.values():
        check_config(compose(ovr))
        report_cfg(ovr, CONTROL_EVAL if controls is not None else ())
    if not (root / "images.csv").is_file() and data is None:
        raise DatasetError(f"{root}: no merged dataset there; give the downloaded sets: `python -m bcc.real --data "
                           f"<folder holding HAM10000, Derm7pt, PH2>` (`make real DATA=<folder>`), or merge them "
                           f"yourself: `python -m bcc.data.public <folder> --out {root.parent}`")
    if data is not None and not data.is_dir():
        raise UsageError(f"--data {data}: no such folder (the one holding HAM10000, Derm7pt and PH2 as downloaded)")
    step = Steps()
    if (root / "images.csv").is_file():
        log.info(f"[bcc] reusing the merged set {root} (delete {root.parent} to merge --data afresh)")
    else:
        merge_from = cast(Path, data)  # checked above: a folder when there is no merged set
        step("merge", lambda: prepare_public(merge_from, root.parent))
    step("consensus", lambda: ensure_labels(root, verbose=True))
    step("folds", lambda: ensure_splits(root, k=int(cfg.data.k), seed=int(cfg.data.split_seed), verbose=True,
                                        by_source=bool(cfg.data.stratify_source)))
    if controls is None:
        _main_run(cfg, overrides, compose, report_cfg, step)
        step.write(out / "timings.json")
        return
    for name, ovr in runs.items():
        ccfg = compose(ovr)
        stages = "-".join(str(s) for s in sequence("all", ccfg.backbone))

        def train(ovr: list[str] = ovr) -> None:
            run_protocol(ovr, compose=compose)

        def report(ovr: list[str] = ovr) -> None:
            evaluate(report_cfg(ovr, CONTROL_EVAL), "python -m bcc.real --controls")

        step(f"{name}: {ccfg.data.k} folds x stages {stages}", train)
        step(f"{name}: evaluation", report)
    table = comparison(("ImageNet, fine-tuned (make real)", out / "report"),
                       {name: out / "controls" / name / "report" for name in runs})
    log.info(f"[bcc] comparison: {write_comparison(table, out / 'controls')}")
    step.write(out / "controls" / "timings.json")


def _with_all(overrides: Sequence[str], extra: Sequence[str]) -> list[str]:
    result = list(overrides)
    for o in extra:
        key, _, value = o.partition("=")
        result = with_override(result, key, value)
    return result


def _main_run(cfg: DictConfig, overrides: list[str], compose, report_cfg, step: Steps) -> None:
    """The protocol on every fold, the held-out sources, the report."""
    out, root = Path(cfg.paths.output_dir), Path(cfg.data.root)
    stages = "-".join(str(s) for s in sequence("all", cfg.backbone))
    step(f"protocol: {cfg.data.k} folds x stages {stages}", lambda: run_protocol(overrides, compose=compose))
    for source in loso_sources(root):
        job = with_override(with_override(overrides, "data.test_source", source), "paths.output_dir",
                            str(out / "loso" / source))

        def held_out(job: list[str] = job) -> None:
            for s in loso_stages(cfg.backbone):
                staged = with_override(job, "stage", f"'{s}'")
                run_job(compose(staged), compose, staged)

        step(f"leave out {source} (stages {'-'.join(map(str, loso_stages(cfg.backbone)))})", held_out)

    def report() -> None:
        ev = evaluate(report_cfg(overrides), "python -m bcc.real (evaluation)")
        log.info(f"[bcc] report: {ev.report_dir / 'report.md'}")

    step("evaluation", report)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)

    def run(cfg: DictConfig) -> None:
        task(cfg, evaluation, data, controls)

    try:
        data, controls, argv = take_options(argv)
        training, evaluation = split_overrides(argv)
    except UsageError as e:
        configure()  # before hydra_command, which configures the logging of every command
        log.error(f"bcc.real: {e}")
        return 2
    return hydra_command("bcc.real", "config", run, ["experiment=real", *training, "hydra/job_logging=none"])
