"""The options of `experiment=real_scratch` (the real-data run from scratch) measured on and off (the
record's ablation table, `ablations.csv`).

Each variant changes one option of the committed run and trains stage 0 — the stage that learns BCC from
scratch — on the same 3 folds; its AUROC (mean ± sd over the test folds, overall and within each source
with both classes) is read off `bcc.evaluate`'s per-source table, beside the committed run's own stage 0.
``--quick`` trains every variant, the committed setting included, at 64 px for 4 epochs (a sixth of the
compute): the options are compared with each other at that budget, not with the committed run; the
committed setting is trained there with ``--seeds`` seeds, so that a variant's difference can be read
against the seed-to-seed spread (a row of its own: sd over the seeds of each seed's mean over the folds).

    python experiments/real/scratch-112px/ablations.py            # after `make real-controls`; ~4 x 25 min on 2 cores
    python experiments/real/scratch-112px/ablations.py --quick    # ~6 x 4 min on 2 idle cores
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pandas as pd

COMMITTED = "committed run (crop, shades of grey, alpha auto, shuffle)"
QUICK = ["data.image_size=64", "stage.max_epochs=4"]
VARIANTS = {  # name → the overrides that switch one option off (or, for the sampler, on)
    "square resize (no aspect-preserving crop)": ["data.resize=square"],
    "no colour constancy": ["data.colour=none"],
    "no loss alpha (0.5: prevalence ignored)": ["loss.alpha=0.5"],
    "balanced sampler instead of loss alpha": ["data.sampler=balanced", "loss.alpha=0.5"],
}
EVAL = ["eval.stage=0", "eval.complexity=false", "eval.linear_probe=false", "eval.source_probe=false",
        "eval.shortcuts=false", "eval.lesion_focus=false", "wandb.enabled=false"]


def run(*args: str) -> None:
    print("$", " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", *args], check=True)


def auroc_means(output_dir: Path) -> dict[str, tuple[float, float]]:
    """source → (mean, sd) over the test folds of the AUROC of p(BCC), for each source with both classes."""
    t = pd.read_csv(output_dir / "report-stage0" / "sources_bcc.csv").set_index("source")
    return {str(source): (r["auroc_mean"], r["auroc_sd"]) for source, r in t.iterrows() if r["folds"] > 0}


def auroc_row(name: str, output_dir: Path) -> dict:
    return {"variant": name, **{f"auroc {s}": f"{m:.3f} ± {sd:.3f}" for s, (m, sd) in auroc_means(output_dir).items()}}


def seed_spread_row(dirs: list[Path]) -> dict:
    means = pd.DataFrame([{s: m for s, (m, _) in auroc_means(d).items()} for d in dirs])
    return {"variant": f"seed-to-seed sd of the committed setting ({len(dirs)} seeds)",
            **{f"auroc {s}": f"± {sd:.3f}" for s, sd in means.std(ddof=1).items()}}


def train_and_score(variant: Path, overrides: list[str]) -> None:
    run("bcc.train", "experiment=real_scratch", "stage=0", "fold=range(0,3)", "--multirun", "logger=csv",
        f"paths.output_dir={variant}", *overrides)
    run("bcc.evaluate", "experiment=real_scratch", f"paths.output_dir={variant}", *overrides, *EVAL)


def main(out: Path = Path("outputs/real/controls/mobilenet_scratch_112"), quick: bool = False, seeds: int = 2) -> None:
    common = QUICK if quick else []
    root = Path("outputs") / ("real-ablations-quick" if quick else "real-ablations")
    rows = []
    if quick:
        dirs = [root / f"committed-seed{s}" for s in range(seeds)]
        for s, d in enumerate(dirs):
            train_and_score(d, [*common, f"seed={s}"])
            rows.append(auroc_row(f"{COMMITTED}, seed {s}", d))
        if seeds > 1:
            rows.append(seed_spread_row(dirs))
    for name, overrides in VARIANTS.items() if quick else {COMMITTED: [], **VARIANTS}.items():
        if not overrides and not quick:  # the committed run's own stage 0
            run("bcc.evaluate", "experiment=real_scratch", f"paths.output_dir={out}", *EVAL)
            rows.append(auroc_row(name, out))
            continue
        slug = "-".join(o.replace("data.", "").replace("loss.", "").replace("=", "_") for o in overrides) or "committed"
        train_and_score(root / slug, [*common, *overrides])
        rows.append(auroc_row(name, root / slug))
    table = pd.DataFrame(rows).assign(budget="64 px, 4 epochs" if quick else "as committed (112 px, 8 epochs)")
    table.to_csv(Path(__file__).with_name("ablations-quick.csv" if quick else "ablations.csv"), index=False)
    print(table.to_string(index=False))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="every variant at 64 px for 4 epochs")
    parser.add_argument("--seeds", type=int, default=2, help="--quick: seeds of the committed setting")
    parser.add_argument("--out", type=Path, default=Path("outputs/real/controls/mobilenet_scratch_112"),
                        help="the from-scratch run's output folder (make real-controls)")
    args = parser.parse_args()
    main(args.out, args.quick, args.seeds)
