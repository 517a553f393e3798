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
from bcc.core.machine import machine
from bcc.data.consensus import ensure_labels
from bcc.data.contract import DatasetError
from bcc.data.folds import ensure_splits
from bcc.data.public import prepare_public
from bcc.data.table import read_table
from bcc.evaluation.pipeline import evaluate
from bcc.training.config import check_config
from bcc.training.protocol import run_job, run_protocol
from bcc.training.stages import sequence

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


def take_data_option(argv: list[str]) -> tuple[Path | None, list[str]]:
    """``--data <folder>`` (the downloaded sets, merged as the first step) and the other arguments."""
    rest, data = [], None
    it = iter(argv)
    for a in it:
        if a == "--data":
            value = next(it, None)
            if value is None:
                raise UsageError("--data needs a folder: --data <folder holding HAM10000, Derm7pt, PH2>")
            data = Path(value)
        elif a.startswith("--data="):
            data = Path(a.split("=", 1)[1])
        else:
            rest.append(a)
    return data, rest


def task(cfg: DictConfig, eval_overrides: Sequence[str] = (), data: Path | None = None) -> None:
    root, out = Path(cfg.data.root), Path(cfg.paths.output_dir)
    compose = lambda o: hydra.compose(config_name="config", overrides=o)  # the running app's composer
    overrides = [o for o in HydraConfig.get().overrides.task if not o.startswith("hydra")]
    report_cfg = lambda: resolve_dirs(hydra.compose(config_name="eval", overrides=[
        f"experiment={cfg.experiment_name}", *overrides, *eval_overrides]))
    # every option checked before anything is written: keys and ranges, the datamodule's own (sampler,
    # resize, colour), the evaluation's
    check_config(cfg)
    report_cfg()
    if not (root / "images.csv").is_file() and data is None:
        raise DatasetError(f"{root}: no merged dataset there; give the downloaded sets: `python -m bcc.real --data "
                           f"<folder holding HAM10000, Derm7pt, PH2>` (`make real DATA=<folder>`), or merge them "
                           f"yourself: `python -m bcc.data.public <folder> --out {root.parent}`")
    if data is not None and not data.is_dir():
        raise UsageError(f"--data {data}: no such folder (the one holding HAM10000, Derm7pt and PH2 as downloaded)")
    timings: dict[str, float] = {}
    load: dict[str, float] = {}  # 1-minute load average at each step's end: a shared machine's times say little alone

    def step(name: str, work: Callable[[], object]) -> None:
        print(f"\n== {name} ==", flush=True)
        t0 = time.perf_counter()
        work()
        timings[name] = round(time.perf_counter() - t0, 1)
        load[name] = round(os.getloadavg()[0], 2)
        print(f"[bcc] {name}: {timings[name] / 60:.1f} min (load average {load[name]})", flush=True)

    stages = "-".join(str(s) for s in sequence("all", cfg.backbone))
    if (root / "images.csv").is_file():
        print(f"[bcc] reusing the merged set {root} (delete {root.parent} to merge --data afresh)")
    else:
        merge_from = cast(Path, data)  # checked above: a folder when there is no merged set
        step("merge", lambda: prepare_public(merge_from, root.parent))
    step("consensus", lambda: ensure_labels(root, verbose=True))
    step("folds", lambda: ensure_splits(root, k=int(cfg.data.k), seed=int(cfg.data.split_seed), verbose=True,
                                        by_source=bool(cfg.data.stratify_source)))
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
        ev = evaluate(report_cfg(), "python -m bcc.real (evaluation)")
        print(f"[bcc] report: {ev.report_dir / 'report.md'}")

    step("evaluation", report)
    total = sum(timings.values())
    write_json({"steps_seconds": timings, "total_seconds": round(total, 1), "load_average_at_end": load,
                "threads": torch.get_num_threads(), "machine": machine()}, out / "timings.json")
    print("\n" + pd.Series({k: f"{v / 60:.1f} min" for k, v in timings.items()}).to_string())
    print(f"total: {total / 60:.1f} min on {machine().get('cpu', 'this machine')}")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)

    def run(cfg: DictConfig) -> None:
        task(cfg, evaluation, data)

    try:
        data, argv = take_data_option(argv)
        training, evaluation = split_overrides(argv)
    except UsageError as e:
        print(f"bcc.real: {e}", file=sys.stderr)
        return 2
    return hydra_command("bcc.real", "config", run, ["experiment=real", *training, "hydra/job_logging=none"])
