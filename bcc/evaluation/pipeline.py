"""The cross-fold evaluation of an experiment's runs (``python -m bcc.evaluate``, ``conf/eval.yaml``).

Reads every ``predictions.csv`` under ``<output_dir>/<backbone>/fold<k>/stage<s>/`` and writes
``<output_dir>/report/``: ``report.md``, ``table3.csv`` (+ per fold), ``table5.csv``, ``calibration.csv``,
``stages.csv``, ``thresholds.csv``, ``table4*.csv`` (when the dataset has masks), ``figures/`` and an
offline W&B summary run; ``thresholds.json`` beside each evaluated ``best.ckpt``. A backbone with a
missing fold at the reported stage stops the evaluation with the missing jobs and the commands that
produce them (``MissingRunsError``: exit code 2).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from hydra.utils import instantiate
from omegaconf import DictConfig

from bcc.core.classification import roc_auc
from bcc.core.io import staged_folder, write_csv, write_json
from bcc.core.layout import BEST, THRESHOLDS
from bcc.core.patterns import CODES, OUTPUTS
from bcc.data.contract import LESION, load_dataset
from bcc.data.images import Preprocess
from bcc.data.table import read_table
from bcc.evaluation import calibration as cal
from bcc.evaluation.agreement import summarise_dataset
from bcc.evaluation.clinical_metrics import BINARY, PATTERNS, ROW_BCC, ROW_RULE, table3
from bcc.evaluation.complexity import complexity
from bcc.evaluation.external import evaluate_external
from bcc.evaluation.figures import confusion_figure, pattern_bars, per_fold_auc, roc_figure
from bcc.evaluation.lesion_focus import lesion_report
from bcc.evaluation.linear_probe import linear_probe
from bcc.evaluation.localisation.table4 import describe, mask_report
from bcc.evaluation.report import BackboneResult, Evaluation, write_report
from bcc.evaluation.runs import (
    MissingRunsError,
    Run,
    check_complete,
    check_same_training,
    describe_missing,
    discover,
    folds_expected,
    load_predictions,
    run_facts,
)
from bcc.evaluation.seeds import seed_spread
from bcc.evaluation.sources import source_report
from bcc.evaluation.wandb_summary import log_wandb
from bcc.evaluation.within_bcc import within_bcc_auroc


# ---- per backbone -------------------------------------------------------------------------------------
def evaluate_backbone(runs: list[Run], backbone: str, cfg: DictConfig, figures: Path) -> BackboneResult:
    stage = int(cfg.eval.stage)
    chosen = [r for r in runs if r.backbone == backbone and r.stage == stage and r.finished]
    preds = load_predictions(runs, backbone, stage)
    val_only = str(cfg.eval.thresholds) == "val"
    calibrations = cal.read_calibrations(chosen) if val_only or all(r.calibrated for r in chosen) else None
    val_thresholds = cal.thresholds_of(calibrations) if calibrations else None
    thresholds = val_thresholds if val_only else float(cfg.eval.thresholds)
    summary, per_fold = table3(preds, thresholds)
    seen = preds.dropna(subset=["y_bcc"])
    n_bins = int(cfg.eval.ece_bins)
    calib = cal.triage_operating_point(preds, float(cfg.eval.target_sensitivity))
    calib.update(ece=cal.expected_calibration_error(seen["y_bcc"], seen["p_bcc"], n_bins),
                 ece_bins=n_bins, bcc_auroc_mean=float(np.nanmean(per_fold_auc(preds, "bcc"))))
    result = BackboneResult(backbone, run_facts(runs, backbone, stage), summary, per_fold, calib,
                            thresholds if isinstance(thresholds, dict) else {r.fold: thresholds for r in chosen},
                            preds.groupby("fold").size().to_dict())
    scaled = cal.scaled_on_validation(preds, calibrations) if calibrations else None
    if val_thresholds is not None:
        result.table3_val = summary if val_only else table3(preds, val_thresholds)[0]
    result.calibration_outputs = cal.calibration_per_output(preds, scaled, n_bins)
    result.within_bcc = within_bcc_auroc(preds)
    result.within_bcc, result.probe_note = with_probe(result.within_bcc, chosen, cfg, cfg.eval.dataset or
                                                     result.facts.get("dataset"), result.facts.get("image_size"),
                                                     result.facts.get("preprocess"))
    result.figures = {
        "roc": roc_figure(preds, figures / f"{backbone}_roc.png", f"ROC per output — {backbone}, stage {stage}"),
        "confusion": confusion_figure(preds, figures / f"{backbone}_confusion.png", thresholds),
        "patterns": pattern_bars(per_fold, figures / f"{backbone}_patterns.png",
                                 f"Pattern detection per code — {backbone}, stage {stage}: mean ± sd over folds"),
        "reliability": cal.reliability_diagram(seen["y_bcc"], seen["p_bcc"], figures / f"{backbone}_reliability.png",
                                               n_bins, f"p(BCC) — {backbone}"),
        "reliability_outputs": cal.reliability_grid(
            preds, scaled, figures / f"{backbone}_reliability_outputs.png", n_bins,
            f"Reliability per output — {backbone}, stage {stage}: raw and after the validation scaling"),
    }
    return result


def with_probe(within: pd.DataFrame, runs: list[Run], cfg: DictConfig, dataset: str | None,
               image_size, preprocess: dict | None = None) -> tuple[pd.DataFrame, str]:
    """The within-BCC table with the linear probe's columns (``bcc.evaluation.linear_probe``), or unchanged and
    the reason it was not computed."""
    if not cfg.eval.linear_probe:
        return within, "not computed (eval.linear_probe=false)."
    missing = [r.path / BEST for r in runs if not (r.path / BEST).is_file()]
    if missing:
        return within, f"not computed: no checkpoint {missing[0]} (the probe reads the runs' features)."
    if not image_size:
        return within, "not computed: the runs record no input size (metrics.json image_size)."
    root = Path(dataset) if dataset else None
    needed = [root / n for n in ("images.csv", "labels.csv", "splits.csv")] if root else []
    if root is None or not all(p.is_file() for p in needed):
        return within, (f"not computed: the runs' dataset {root} is not at hand (it needs images.csv, labels.csv, "
                        "splits.csv; `eval.dataset=DIR` points at it).")
    probe = linear_probe(runs, root, Preprocess.of({"image_size": int(image_size), **(preprocess or {})}),
                         c=float(cfg.eval.linear_probe_c),
                         allow_outside=bool(cfg.data.get("allow_outside", False)))
    return within.merge(probe, on="code", how="left"), ""


def write_model_thresholds(runs: list[Run], result: BackboneResult, stage: int) -> None:
    """``thresholds.json`` beside each fold's ``best.ckpt``, which ``bcc.predict`` and ``bcc.export`` read:
    p(BCC) at the triage operating point found on the *other* folds (never the model's own test fold),
    pattern thresholds from the fold's validation slice (``calibration.json``) where training fitted them,
    else as evaluated (``eval.thresholds``)."""
    target = float(result.calibration.get("target_sensitivity", float("nan")))
    operating = result.calibration.get("thresholds") or {}
    for r in runs:
        if r.backbone != result.backbone or r.stage != stage or not r.finished:
            continue
        t = (result.table3_val is not None and _val_thresholds(r)) or result.thresholds.get(r.fold, 0.5)
        per_output = {o: float(t[o] if isinstance(t, dict) else t) for o in OUTPUTS}
        bcc = float(operating.get(r.fold, float("nan")))
        d = {"bcc": bcc if np.isfinite(bcc) else per_output["bcc"], "patterns": {c: per_output[c] for c in CODES},
             "source": f"bcc.evaluate: {target:.0%} sensitivity operating point of p(BCC) from the other folds"}
        write_json(d, r.path / THRESHOLDS)


def _val_thresholds(run: Run) -> dict[str, float]:
    return cal.thresholds_of(cal.read_calibrations([run]))[run.fold]


def mean_of(summary: pd.DataFrame, section: str, row: str | None, metric: str) -> float:
    d = summary[(summary["section"] == section) & ((summary["row"] == row) if row else True)]
    return float(d[f"{metric}_mean"].mean()) if len(d) else float("nan")


def table5(results: list[BackboneResult], cfg: DictConfig) -> pd.DataFrame:
    rows = []
    for r in results:
        size = int(r.facts.get("image_size") or 224)
        row = complexity(r.backbone, size, r.facts.get("timm_name"), int(cfg.eval.bench_batch),
                         int(cfg.eval.bench_repeats)) if cfg.eval.complexity else {"backbone": r.backbone, "input_px": size}
        row.update(bcc_accuracy=mean_of(r.table3, BINARY, ROW_BCC, "accuracy"),
                   pattern_accuracy=mean_of(r.table3, PATTERNS, None, "accuracy"),
                   bcc_auroc=r.calibration["bcc_auroc_mean"], folds=len(r.n_test), stage=int(cfg.eval.stage))
        rows.append(row)
    return pd.DataFrame(rows)


def stages_table(runs: list[Run], experiment: str, k: int, output_dir: Path) -> pd.DataFrame:
    """Per backbone and stage found: BCC/rule/pattern accuracy means over folds at 0.5, or what is missing."""
    rows = []
    for b, s in sorted({(r.backbone, r.stage) for r in runs}):
        missing = describe_missing(runs, experiment, b, s, k, output_dir)
        row = {"backbone": b, "stage": s, "folds": k - len(missing)}
        if missing:
            row["missing"] = "; ".join(m.split(":")[0] for m in missing)
        else:
            summary, _ = table3(load_predictions(runs, b, s), 0.5)
            row.update(bcc_accuracy=mean_of(summary, BINARY, ROW_BCC, "accuracy"),
                       rule_accuracy=mean_of(summary, BINARY, ROW_RULE, "accuracy"),
                       pattern_accuracy=mean_of(summary, PATTERNS, None, "accuracy"),
                       bcc_auroc=float(np.nanmean(per_fold_auc(load_predictions(runs, b, s), "bcc"))))
        rows.append(row)
    return pd.DataFrame(rows)


# ---- Table 4 (Grad-CAM vs masks, bcc.evaluation.localisation.table4) ---------------------------------------
def table4(ev: Evaluation, runs: list[Run], cfg: DictConfig) -> None:
    """Table 4, its baselines and deletion tests, and Fig. 3 into the evaluation (``localisation.table4.mask_report``),
    or why not. Settings: the ``eval.table4`` node, a ``localisation.records.Table4Settings``."""
    if not cfg.eval.table4:
        ev.table4_note = "Not computed (eval.table4=null)."
        return
    if ev.dataset is None or ev.dataset.root is None or not ev.dataset.has_masks:
        ev.table4_note = "The dataset has no `masks/`: Table 4 needs the dermatologists' pattern masks."
        return
    done = {x.backbone for x in ev.results}
    dirs = [r.path for r in runs if r.stage == ev.stage and r.finished and r.backbone in done]
    settings = instantiate(cfg.eval.table4, allow_outside=bool(cfg.data.get("allow_outside", False)),
                           _convert_="all")
    result = mask_report(dirs, ev.dataset.root, ev.report_dir, settings)
    if result is None:
        ev.table4_note = "No test image of these runs has a mask: Table 4 is empty."
        return
    ev.table4, ev.table4_figures = result.statistics, result.figures
    ev.table4_note = (f"Grad-CAM maps of the stage-{ev.stage} runs ({', '.join(sorted(done))}, pooled) against the "
                      f"masks (per map: `gradcam_per_image.csv`). " + describe(result))


# ---- real data: sources as confounders, Grad-CAM on whole-lesion masks --------------------------------
def real_data_checks(ev: Evaluation, runs: list[Run], cfg: DictConfig) -> None:
    """Per source AUROC, shortcut baselines, the source probe, held-out sources (``bcc.evaluation.sources``)
    for a dataset with several sources; Grad-CAM mass on the lesion (``bcc.evaluation.lesion_focus``) where
    test pictures have lesion masks. Settings: ``eval.sources``, ``eval.source_probe``, ``eval.shortcuts``,
    ``eval.lesion_focus``."""
    if ev.dataset is None or not ev.dataset.root or not ev.results or not ev.dataset.n_images:
        return  # no dataset at hand (summarise_dataset noted why)
    root, result = Path(ev.dataset.root), ev.results[0]
    chosen = [r for r in runs if r.backbone == result.backbone and r.stage == ev.stage and r.finished]
    outside = bool(cfg.data.get("allow_outside", False))
    pre = Preprocess.of({"image_size": int(result.facts.get("image_size") or 224), **(result.facts.get("preprocess") or {})})
    table = read_table(root, splits=False, allow_outside=outside)
    sources = table.set_index("image_id")["source"].astype(str) if table["source"].nunique() > 1 else None
    ev.seeds = seed_spread(Path(cfg.output_dir), result.backbone, ev.stage, ev.k, sources)
    external = cfg.get("external") is not None  # scored copies: the checkpoints and folds are the source's
    if cfg.eval.sources:
        loso = sorted(p for p in (Path(cfg.output_dir) / "loso").glob("*") if p.is_dir())
        first = {r.fold: r.path.parent / "stage1" for r in chosen if (r.path.parent / "stage1" / BEST).is_file()}
        ev.sources = source_report(chosen, load_predictions(runs, result.backbone, ev.stage), root, pre, loso,
                                   result.backbone, probe=bool(cfg.eval.source_probe) and not external,
                                   shortcuts=bool(cfg.eval.shortcuts) and not external, allow_outside=outside,
                                   linear_probe_dirs=first if cfg.eval.linear_probe and len(first) == len(chosen) else None)
        if ev.sources is not None and external:
            ev.sources.notes.append("An external set: the shortcut baselines and the source probe are fitted on the "
                                    "training folds of the runs' own dataset, which an external set is not; not computed.")
    if external:
        return  # lesion focus reads each run's best.ckpt, which the scored copies do not hold
    if cfg.eval.lesion_focus and any((root / "masks").glob(f"*_{LESION}.[pP][nN][gG]")):
        dataset = load_dataset(root, allow_outside=outside)
        found = lesion_report([r.path for r in chosen], dataset, ev.report_dir / "figures" / "lesion_focus_worst.png")
        if found is not None:
            ev.lesion_focus, records, ev.lesion_focus_figures = found
            write_csv(records, ev.report_dir / "lesion_focus_per_image.csv")


# ---- main ---------------------------------------------------------------------------------------------
def fold_ensemble(preds: pd.DataFrame) -> pd.DataFrame:
    """Every fold model scored the same external pictures: their mean probability per picture (the fold
    ensemble a clinic would deploy), one row per picture, ``fold`` = -1."""
    cols = [c for c in preds.columns if c.startswith(("y_", "p_"))]
    mean = preds.groupby("image_id", sort=False)[cols].mean()
    return mean.reset_index().assign(fold=-1)


def ensemble_summary(preds: pd.DataFrame) -> pd.DataFrame:
    """AUROC of p(BCC) per fold model and of their ensemble, on the same pictures."""
    rows = [{"model": f"fold {int(f)}", "n": int(d["y_bcc"].notna().sum()), "positives": int(d["y_bcc"].sum()),
             "auroc": roc_auc(d["y_bcc"].dropna(), d.loc[d["y_bcc"].notna(), "p_bcc"])}
            for f, d in preds.groupby("fold")]
    ens = fold_ensemble(preds)
    seen = ens["y_bcc"].notna()
    rows.append({"model": "fold ensemble (mean p)", "n": int(seen.sum()), "positives": int(ens.loc[seen, "y_bcc"].sum()),
                 "auroc": roc_auc(ens.loc[seen, "y_bcc"], ens.loc[seen, "p_bcc"])})
    return pd.DataFrame(rows)


def evaluate(cfg: DictConfig, command: str = "python -m bcc.evaluate") -> Evaluation:
    """The report of an experiment's runs; with ``external`` (``experiment=external``), the source experiment's
    fold models first score the external set (``bcc.evaluation.external``), and the report adds their
    ensemble."""
    source = evaluate_external(cfg) if cfg.get("external") is not None else None
    hint = source.overrides if source is not None else ()  # a missing fold is trained in the source
    out, report_dir = Path(cfg.output_dir), Path(cfg.report_dir)
    runs = [r for r in discover(out) if r.path.resolve() != report_dir.resolve()]
    experiment = str(cfg.experiment_name)
    if not runs:
        raise MissingRunsError(f"no runs under {out}: train first, e.g. `python -m bcc.train experiment={experiment} "
                               f"stage=1,2,3 fold=0-4 --multirun` (or `make demo` for the demo)")
    stage, k = int(cfg.eval.stage), folds_expected(runs, cfg.eval.k)
    backbones = list(cfg.eval.backbones) if cfg.eval.backbones else sorted({r.backbone for r in runs})
    ev = Evaluation(experiment, out, report_dir, stage, k, str(cfg.eval.thresholds), command)
    errors, complete = [], []
    for b in backbones:
        try:
            check_complete(runs, experiment, b, stage, k, out, hint)
            complete.append(b)
        except MissingRunsError as e:
            errors.append(str(e))
            ev.missing[b] = describe_missing(runs, experiment, b, stage, k, out, hint)
    if errors and not cfg.eval.allow_incomplete:
        raise MissingRunsError("\n\n".join(errors))
    if not complete:
        raise MissingRunsError("no backbone has all its folds at stage "
                               f"{stage}:\n" + "\n".join(x for v in ev.missing.values() for x in v))
    ev.mixed = check_same_training(runs, stage, complete, bool(cfg.eval.allow_mixed))
    with staged_folder(report_dir, "bcc.evaluate", "report_dir=") as staged:  # an interrupted run leaves the old one
        ev.report_dir = staged
        figures = staged / "figures"
        figures.mkdir(parents=True, exist_ok=True)
        ev.results = [evaluate_backbone(runs, b, cfg, figures) for b in complete]
        ev.table5 = table5(ev.results, cfg)
        ev.stages = stages_table(runs, experiment, k, out)
        if cfg.get("external") is not None:
            preds = load_predictions(runs, ev.results[0].backbone, stage)
            ev.ensemble = ensemble_summary(preds)
            write_csv(fold_ensemble(preds), staged / "ensemble_predictions.csv")
        ev.dataset = summarise_dataset(cfg.eval.dataset or ev.results[0].facts.get("dataset"))
        table4(ev, runs, cfg)
        real_data_checks(ev, runs, cfg)
        tables = write_tables(ev)
        ev.wandb = bool(cfg.wandb.enabled)
        write_report(ev)
        if cfg.wandb.enabled:
            log_wandb(ev, tables, project=str(cfg.wandb.project), offline=bool(cfg.wandb.offline))
    ev.report_dir = report_dir

    def moved(p: Path) -> Path:
        return report_dir / Path(p).relative_to(staged)

    for r in ev.results:
        r.figures = {k: moved(p) for k, p in r.figures.items()}
        write_model_thresholds(runs, r, stage)
    ev.table4_figures = [moved(p) for p in ev.table4_figures]
    ev.lesion_focus_figures = [moved(p) for p in ev.lesion_focus_figures]
    return ev


def write_tables(ev: Evaluation) -> dict[str, pd.DataFrame]:
    def tag(df: pd.DataFrame, r: BackboneResult) -> pd.DataFrame:
        return df.assign(backbone=r.backbone, stage=ev.stage, thresholds=ev.thresholds)[
            ["backbone", "stage", "thresholds", *df.columns]]

    t3 = pd.concat([tag(r.table3, r) for r in ev.results], ignore_index=True)
    t3f = pd.concat([tag(r.per_fold, r) for r in ev.results], ignore_index=True)
    calib = pd.DataFrame([{"backbone": r.backbone, **{k: v for k, v in r.calibration.items() if k != "thresholds"}}
                          for r in ev.results])
    thr = pd.DataFrame([{"backbone": r.backbone, "fold": f, **({o: t[o] for o in OUTPUTS} if isinstance(t, dict)
                                                               else {o: t for o in OUTPUTS})}
                        for r in ev.results for f, t in sorted(r.thresholds.items())])
    tables = {"table3": t3, "table3_per_fold": t3f, "table5": ev.table5, "calibration": calib, "stages": ev.stages,
              "thresholds": thr,
              "calibration_per_output": pd.concat([r.calibration_outputs.assign(backbone=r.backbone)
                                                   for r in ev.results if r.calibration_outputs is not None], ignore_index=True),
              "within_bcc": pd.concat([r.within_bcc.assign(backbone=r.backbone) for r in ev.results
                                       if r.within_bcc is not None],
                                      ignore_index=True)}
    val = [tag(r.table3_val, r).assign(thresholds="val") for r in ev.results if r.table3_val is not None]
    if val:
        tables["table3_val_thresholds"] = pd.concat(val, ignore_index=True)
    if ev.sources is not None:
        tables.update(ev.sources.tables())
    if ev.ensemble is not None:
        tables["ensemble"] = ev.ensemble
    if ev.seeds is not None:
        tables["seeds"] = ev.seeds
    if ev.lesion_focus is not None:
        tables["lesion_focus"] = ev.lesion_focus
    for name, df in tables.items():
        write_csv(df, ev.report_dir / f"{name}.csv")
    if ev.table4 is not None:
        tables["table4"] = ev.table4
    return tables
