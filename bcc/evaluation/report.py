"""``report.md``, readable on its own: what ``bcc.evaluate`` computed, rendered to markdown.

:class:`Evaluation` holds the results; :func:`write_report` renders them with the figures embedded by
relative path and, last, the list of the files the evaluation wrote beside it (read from the folder, so it
names every table a run produced). The W&B summary run is `bcc.evaluation.wandb_summary`'s.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bcc.core.io import write_text
from bcc.evaluation.agreement import DatasetSummary, format_dataset
from bcc.evaluation.clinical_metrics import format_table3
from bcc.evaluation.external import auroc_words
from bcc.evaluation.localisation.table4 import FILES, REPORT_COLUMNS, read_tables
from bcc.evaluation.markdown import markdown_table, markdown_text
from bcc.evaluation.sources import SourceReport


@dataclass
class BackboneResult:
    backbone: str
    facts: dict
    table3: pd.DataFrame
    per_fold: pd.DataFrame
    calibration: dict
    thresholds: dict
    n_test: dict[int, int]
    figures: dict[str, Path] = field(default_factory=dict)
    table3_val: pd.DataFrame | None = None       # Table 3 at the validation thresholds (calibration.json)
    calibration_outputs: pd.DataFrame | None = None  # ECE per output, raw and after the validation scaling
    within_bcc: pd.DataFrame | None = None       # pattern heads vs p(BCC) among BCC lesions
    probe_note: str = ""                         # why within_bcc has no linear-probe columns


@dataclass
class Evaluation:
    experiment: str
    output_dir: Path
    report_dir: Path
    stage: int
    k: int
    thresholds: str
    command: str
    results: list[BackboneResult] = field(default_factory=list)
    missing: dict[str, list[str]] = field(default_factory=dict)   # backbone → lines (incomplete ones)
    mixed: list[str] = field(default_factory=list)   # how the averaged runs' training differs (eval.allow_mixed)
    stages: pd.DataFrame | None = None
    table5: pd.DataFrame | None = None
    table4: pd.DataFrame | None = None
    table4_note: str = ""
    table4_figures: list[Path] = field(default_factory=list)
    dataset: DatasetSummary | None = None
    sources: SourceReport | None = None             # several sources: per-source AUROC, shortcuts, probe
    lesion_focus: pd.DataFrame | None = None        # Grad-CAM mass on whole-lesion masks, per output
    lesion_focus_figures: list[Path] = field(default_factory=list)
    seeds: pd.DataFrame | None = None               # this run and the seed runs under <output_dir>/seeds/
    ensemble: pd.DataFrame | None = None            # external set: each fold model and their mean, same pictures
    wandb: bool = False                             # a W&B summary run goes to <report_dir>/wandb/


def _start_words(start: str) -> str:
    if "stage0" in start:
        return "stage 0 — the whole network trained from scratch on the training folds (no ImageNet weights)"
    if "imagenet" in start:
        return "ImageNet weights (timm's architecture; from the Hugging Face cache or an installed package)"
    return start


def _threshold_words(ev: Evaluation) -> str:
    if ev.thresholds == "val":
        return ("per fold and output, chosen on that fold's validation split (Youden's J), never on the test "
                "fold — values in `thresholds.csv`")
    return f"{ev.thresholds} for every output"


def _fig(ev: Evaluation, path: Path, alt: str) -> str:
    return f"![{alt}]({path.relative_to(ev.report_dir).as_posix()})"


def _header(ev: Evaluation) -> list[str]:
    lines = [f"# Evaluation report — experiment `{ev.experiment}`", "",
             f"Written by `{ev.command}` on {dt.date.today().isoformat()} from the runs under `{ev.output_dir}`.",
             "", "## Setting", ""]
    for r in ev.results:
        f = r.facts
        n = sum(r.n_test.values())
        lines += [(f"- **Backbone** `{r.backbone}` ({f.get('timm_name')}), input {f.get('image_size')} px; "
                  f"start of stage 1: {_start_words(f.get('start', '?'))}."),
                  (f"  - test folds: {len(r.n_test)} (of the {ev.k} this report expects), n = {n} test images "
                  f"({', '.join(f'fold {k}: {v}' for k, v in sorted(r.n_test.items()))})."),
                  (f"  - trained with seed {', '.join(map(str, f.get('seeds') or ['?']))} on "
                   f"{'; '.join(f.get('machines') or ['a machine the runs do not record'])}. Same machine and "
                   "seed: bit-identical results; another CPU or seed: different ones, within the seed-to-seed "
                   "spread the README gives for the demo.")]
    d = ev.dataset
    root = d.root if d and d.root else (ev.results[0].facts.get("dataset") if ev.results else None)
    lines += [f"- **Dataset**: `{root}`" + (f", {d.n_images} images" if d and d.n_images else ""),
              f"- **Reported stage**: {ev.stage} (the paper's protocol ends with stage 3); earlier stages below.",
              f"- **Thresholds**: {_threshold_words(ev)}.",
              ("- Metrics are computed per test fold and summarised as mean (σ² = sample variance over folds), "
              "as in the paper's Table 3.")]
    if ev.mixed:
        lines += ["", "## Runs trained differently", "",
                  ("**The runs averaged below were not trained alike** (reported with `eval.allow_mixed=true`); the "
                   "dataset and input size above are the first run's:"), "", *[f"- {markdown_text(x)}" for x in ev.mixed]]
    if ev.missing:
        lines += ["", "## Missing runs", "",
                  ("These backbones are **not** in the tables below: some folds are missing and results are never "
                  "averaged over fewer folds. Produce them with:"), ""]
        for items in ev.missing.values():
            lines += [f"- {x}" for x in items]
    return lines


def _table3(ev: Evaluation) -> list[str]:
    lines = ["", "## Table 3 — binary, pattern and clinically-inspired metrics", ""]
    for r in ev.results:
        lines += [f"### {r.backbone}, stage {ev.stage} — thresholds {_threshold_words(ev)}", "",
                  format_table3(r.table3, ev.k), ""]
        if r.table3_val is not None and ev.thresholds != "val":
            lines += [f"### {r.backbone}, stage {ev.stage} — at the validation thresholds", "",
                      ("Each output cut at its own threshold, fitted by training on that fold's validation slice "
                       "(Youden's J; `calibration.json` beside `best.ckpt`; `table3_val_thresholds.csv`). The "
                       "pattern heads' focal loss balances rare codes, so 0.5 is not their natural cut."), "",
                      format_table3(r.table3_val, ev.k), ""]
    lines += [("Rows as in the paper (`table3.csv`; per fold: `table3_per_fold.csv`). *BCC/Non-BCC (clinical "
              "rule)* (not in the paper) applies the rule PN ⇒ non-BCC, else any BCC pattern ⇒ BCC to the "
              "predicted patterns. *No-pattern*: the class \"all seven codes 0\"; its recall is the paper's "
              "number (where heads are not trained, this row and the detection row judge the trained codes "
              "only). *Pigment Network*: the PN head, as in the paper. *BCC pattern detection*: **Accuracy "
              "column = detection rate** — among BCC lesions with ≥1 annotated BCC pattern (U, ON, MG, ML, SW, "
              "AT), the share where the model predicts at least one of the annotated patterns (paper: 0.99); "
              "recall/specificity/precision are those of the lesion-level task \"≥1 BCC pattern\" over all "
              "lesions (reference: ≥1 annotated, prediction: ≥1 predicted). `n` = lesions scored (for the "
              "detection row, the detection rate's population), summed over folds. – = undefined in every "
              "fold (no positives); σ² is left out when fewer than two folds define it.")]
    return lines


def _table5(ev: Evaluation) -> list[str]:
    if ev.table5 is None or ev.table5.empty:
        return []
    t = ev.table5.set_index("backbone")
    return ["", "## Table 5 — backbones: complexity and accuracy", "", markdown_table(t), "",
            ("Parameters: our multitask network (backbone + three heads, no ImageNet classifier). GMACs and "
            "GFLOPs: `torch.utils.flop_counter.FlopCounterMode`, one image at the runs' input size, which "
            "counts 2 FLOPs per multiply–accumulate — the paper's \"0.3G\" for MobileNetV2 at 224 px are MACs. "
            "Size: float32 state dict in 10⁶ bytes. CPU ms/image: median of timed batches on this machine "
            "(`cpu_threads` threads, `channels_last`, inference mode) — compare rows, not machines. "
            "Accuracies: mean over folds at the reported stage; pattern accuracy = mean over the seven codes.")]


def _calibration(ev: Evaluation) -> list[str]:
    lines = ["", "## Calibration and the triage operating point (beyond the paper)", ""]
    rows = []
    for r in ev.results:
        c = r.calibration
        rows.append({"backbone": r.backbone, "ECE p(BCC)": c["ece"], "bins": c["ece_bins"],
                     "target sens.": c["target_sensitivity"], "threshold (mean)": c["threshold_mean"],
                     "sensitivity": c["sensitivity"], "specificity": c["specificity"],
                     "deprioritised": c["deprioritised"], "missed BCC": c["missed_bcc"], "n": c["n"]})
    lines += [markdown_table(pd.DataFrame(rows).set_index("backbone")), "",
              ("ECE: expected calibration error of p(BCC), equal-width bins, test folds pooled. Operating point: "
              "for each test fold the highest threshold reaching the target sensitivity on the *other* folds' "
              "test predictions (out of fold), applied to that fold; sensitivity, specificity and the share of "
              "cases below the threshold (which a dermatologist could deprioritise in triage) pooled over folds."),
              ""]
    for r in ev.results:
        if "reliability" in r.figures:
            lines.append(_fig(ev, r.figures["reliability"], f"reliability {r.backbone}"))
        if r.calibration_outputs is not None:
            t = r.calibration_outputs.set_index("output").rename(
                columns={"ece": "ECE raw", "ece_scaled": "ECE after scaling"})
            lines += ["", f"**Every output — {r.backbone}** (`calibration_per_output.csv`)", "", markdown_table(t), "",
                      ("ECE of the pooled test folds, raw and after each fold's per-output scaling (a temperature T and "
                       "a bias b fitted on that fold's validation slice by training: sigmoid(logit(p)/T + b); it "
                       "changes calibration, not ranking). A code whose validation slice has one class keeps T = 1, "
                       "b = 0."), ""]
        if "reliability_outputs" in r.figures:
            lines.append(_fig(ev, r.figures["reliability_outputs"], f"reliability per output {r.backbone}"))
    return lines


def _within_bcc(ev: Evaluation) -> list[str]:
    lines = ["", "## Do the pattern heads know the patterns? (within-BCC AUROC, beyond the paper)", ""]
    for r in ev.results:
        if r.within_bcc is None:
            continue
        probe = "auroc_probe" in r.within_bcc.columns
        t = r.within_bcc.set_index("code")[["auroc_head", "auroc_head_sd", "auroc_p_bcc", "auroc_p_bcc_sd", "gap",
                                            *(["auroc_probe", "auroc_probe_sd"] if probe else []), "folds", "n"]]
        mean = r.within_bcc.set_index("code").loc["mean"]
        beats = (r.within_bcc.iloc[:-1]["gap"] > 0).sum()
        lines += [f"**{r.backbone}, stage {ev.stage}** (`within_bcc.csv`)", "", markdown_table(t), "",
                  (f"Among the BCC lesions of each test fold, the AUROC of each pattern head for its own code, beside "
                   f"the AUROC of p(BCC) used as that code's score — what a pattern head that is only a second BCC "
                   f"detector would reach. Mean over the six BCC codes: {mean['auroc_head']:.3f} for the heads vs "
                   f"{mean['auroc_p_bcc']:.3f} for p(BCC); the heads beat the baseline for {beats} of 6 codes."),
                  "", _probe_sentence(mean, ev.stage) if probe else f"Linear probe (`eval.linear_probe`): {r.probe_note}", ""]
    return lines


def _probe_sentence(mean: pd.Series, stage: int) -> str:
    head, ceiling = float(mean["auroc_head"]), float(mean["auroc_probe"])
    if head >= ceiling - 0.02:
        verdict = ("the heads reach what the frozen features hold: a better pattern read-out needs a backbone that "
                   "sees the patterns (pretraining, resolution), not another stage-3 setting")
    elif stage in (1, 2):
        verdict = "stages 1-2 leave the pattern heads as initialised (the paper's protocol); stage 3 trains them"
    else:
        verdict = "the heads fall short of what the features hold: their training (stage 3's lr, epochs) is the limit"
    return (f"`auroc_probe`: a logistic regression fitted on the pooled features of the same checkpoint "
            f"(training folds only, `bcc.evaluation.linear_probe`), scored on the same lesions — mean "
            f"{ceiling:.3f} against the heads' {head:.3f}: {verdict}.")


def _figures(ev: Evaluation) -> list[str]:
    lines = []
    for r in ev.results:
        lines += ["", f"## Figures — {r.backbone}, stage {ev.stage}", ""]
        for key, alt in (("roc", "ROC per output"), ("confusion", "Confusion matrices"),
                         ("patterns", "Per-pattern metrics with fold spread")):
            if key in r.figures:
                lines += [f"**{alt}**", "", _fig(ev, r.figures[key], alt), ""]
    return lines


def _stages(ev: Evaluation) -> list[str]:
    if ev.stages is None or ev.stages.empty:
        return []
    return ["", "## All stages (mean over folds of the test fold)", "",
            markdown_table(ev.stages.set_index(["backbone", "stage"]).reset_index(), index=False), "",
            ("Stage 0 = from scratch (only without ImageNet weights), 1 = heads, 2 = last blocks + heads, "
            "3 = pattern heads (reported). A stage with missing folds shows them instead of numbers.")]


def _table4(ev: Evaluation) -> list[str]:
    lines = ["", "## Table 4 — Grad-CAM against the dermatologists' masks", ""]
    if ev.table4 is not None:
        t = ev.table4
        shown = t[(t["map"] == "gradcam") | (t["group"] == "all")]
        lines += ["**Statistics** (`table4.csv`; the model's maps by prediction, the baselines on all images)", "",
                  markdown_table(shown[[c for c in ("map", "kind", "background", "group", *REPORT_COLUMNS)
                                        if c in shown.columns]], index=False), ""]
        extra = read_tables(ev.report_dir)
        for name, title in (("baselines", "The model's gap against each baseline"),
                            ("per_head", "Per pattern head: own mask vs the other patterns' masks"),
                            ("faithfulness", "Deletion tests: counterfactual twins and ROAD")):
            if name in extra and not extra[name].empty:
                lines += [f"**{title}** (`{FILES[name]}`)", "", markdown_table(extra[name], index=False), ""]
        lines += [_fig(ev, p, p.stem) for p in ev.table4_figures]
        lines.append("")
    if ev.table4_note:
        lines.append(ev.table4_note)
    return lines


def _sources(ev: Evaluation) -> list[str]:
    s = ev.sources
    if s is None:
        return []
    lines = ["", "## Sources: is the AUROC about BCC or about the dataset a picture came from?", "",
             ("A merged set is a confounder trap: a model that only recognised the source scores a pooled AUROC "
              "without seeing BCC. Within a source, a source cue is worth nothing."), "",
             "**p(BCC) per source** (`sources_bcc.csv`: per test fold mean ± sd, and pooled over the folds)", "",
             markdown_table(s.per_source.set_index(["output", "source"]).reset_index(), index=False), ""]
    if s.baselines is not None and not s.baselines.empty:
        b = s.baselines.pivot_table(index="source", columns="baseline", values="auroc_mean", sort=False)
        model = s.per_source.set_index("source")["auroc_mean"].rename("model")
        lines += ["**The model beside what shortcuts score** (AUROC, mean over test folds; `sources_shortcuts.csv`)", "",
                  markdown_table(pd.concat([model, b], axis=1)), "",
                  ("*source prior*: p(BCC) = the BCC rate of the picture's source in the training folds — a perfect "
                   "source detector that knows nothing of BCC (0.5 within a source by construction). *colour "
                   "statistics*: a logistic regression on whole-picture colour statistics of the network's input, "
                   "fitted on the training folds. Both fold by fold, as the model."), ""]
    if s.probe is not None and not s.probe.empty:
        p = s.probe
        lines += [("**Source probe** (`sources_probe.csv`): a logistic regression on each fold model's frozen features "
                   f"names the source of its test pictures with balanced accuracy {p['balanced_accuracy'].mean():.3f} "
                   f"± {p['balanced_accuracy'].std(ddof=1) if len(p) > 1 else 0:.3f} (chance {p['chance'].iloc[0]:.3f})"
                   " — the features know the source; the within-source AUROCs above say how much the BCC call rests "
                   "on it."), ""]
    if s.held_out is not None and not s.held_out.empty:
        lines += [("**Leave one source out** (`sources_held_out.csv`): trained without the source, scored on all of "
                  f"it (stage {', '.join(map(str, sorted(s.held_out['stage'].unique())))}, the last one that trains the "
                  "diagnosis)"), "", markdown_table(s.held_out, index=False), ""]
    if s.heads is not None and not s.heads.empty:
        lines += ["**Labelled pattern heads per source** (`sources_heads.csv`)", "",
                  markdown_table(s.heads, index=False), ""]
    if s.linear_probe is not None and not s.linear_probe.empty:
        lines += [("**Linear probe** (`sources_linear_probe.csv`): a logistic regression per output on the frozen "
                   "pooled features of each fold's stage-1 network (ImageNet's, where the run starts from them), fitted "
                   "on the training folds, scored on the test fold — what the features know before any fine-tuning"),
                  "", markdown_table(s.linear_probe, index=False), ""]
    if s.rule is not None and not s.rule.empty:
        lines += [("**The clinical rule over the codes a source labels** (consensus labels against the biopsy; "
                   "`sources_rule_on_labels.csv`): the ceiling of the rule with those codes alone"), "",
                  markdown_table(s.rule[["source", "codes", "n", "recall", "specificity", "precision", "accuracy"]],
                                 index=False), ""]
    lines += [f"- {n}" for n in s.notes]
    return lines


def _seeds(ev: Evaluation) -> list[str]:
    if ev.seeds is None:
        return []
    return ["", "## Seed-to-seed spread", "", markdown_table(ev.seeds, index=False), "",
            ("The same data, folds and settings trained with other seeds (runs under `<output_dir>/seeds/`, "
             "`seeds.csv`): each figure is the mean over the run's test folds; `mean` and `sd` over the runs. "
             "Compare a run with this spread, not with the best seed.")]


def _ensemble(ev: Evaluation) -> list[str]:
    if ev.ensemble is None:
        return []
    return ["", "## Each fold model and their ensemble on the external set", "",
            markdown_table(ev.ensemble, index=False), "",
            (f"Every fold model scored every picture (none of which any was trained on): {auroc_words(ev.ensemble)}; "
             f"the ensemble averages their p(BCC) per picture (`ensemble.csv`, `ensemble_predictions.csv`).")]


def _lesion_focus(ev: Evaluation) -> list[str]:
    if ev.lesion_focus is None:
        return []
    lines = ["", "## Grad-CAM on real lesions (whole-lesion masks)", "",
             markdown_table(ev.lesion_focus, index=False), "",
             ("Per test picture with a dermatologist's lesion mask, the share of the map's mass inside the lesion, "
              "beside three maps that know nothing of the picture: flat over the network's view (*uniform*: the "
              "lesion's area share), a centred Gaussian (*centre*: lesions are photographed in the middle) and flat "
              "over the lesion (the ceiling, 1). *beats_centre*: pictures where the map holds more mass on the lesion "
              "than the centre map; *peaks_off_lesion*: maps whose maximum lies off the lesion — rulers, ink, hair, "
              "the vignette's corners (`lesion_focus_per_image.csv`, with each peak's place in the view and whether "
              "it lies on the outer ring of the Grad-CAM grid)."), ""]
    captions = ["least mass on the lesion", "where the peaks fall in the view"]
    lines += [_fig(ev, f, c) for f, c in zip(ev.lesion_focus_figures, captions, strict=False)]
    return lines


def write_report(ev: Evaluation) -> Path:
    lines = [*_header(ev), *_ensemble(ev), *_table3(ev), *_seeds(ev), *_sources(ev), *_within_bcc(ev), *_table5(ev), *_calibration(ev),
             *_figures(ev), *_stages(ev), *_lesion_focus(ev),
             *_table4(ev), "", "## Dataset and inter-rater agreement", ""]
    lines.append(format_dataset(ev.dataset) if ev.dataset else "- not available")
    lines += ["", "## Files", "", _files(ev)]
    return write_text("\n".join(lines) + "\n", ev.report_dir / "report.md")


#: what a file's name does not say
ABOUT = {"table3.csv": "mean and variance over folds"}


def _files(ev: Evaluation) -> str:
    """The files and folders the evaluation wrote into the report folder, as found there."""
    found = sorted(p.name + ("/" if p.is_dir() else "") for p in ev.report_dir.iterdir() if not p.name.startswith("."))
    listed = ", ".join(f"`{name}`" + (f" ({ABOUT[name]})" if name in ABOUT else "") for name in found)
    return listed + ("; the W&B summary run in `wandb/`." if ev.wandb else ".")
