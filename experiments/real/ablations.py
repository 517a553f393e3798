"""The options of `experiment=real` measured on and off (the record's ablation table, `ablations.csv`).

Each variant changes one option of the committed run and trains stage 0 — the stage that learns BCC from
scratch — on the same 3 folds; its AUROC (mean ± sd over the test folds, overall and within each source
with both classes) is read off `bcc.evaluate`'s per-source table, beside the committed run's own stage 0.

    python experiments/real/ablations.py            # after `make real` (outputs/real); ~4 x 25 min on 2 cores
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd

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


def auroc_row(name: str, output_dir: Path) -> dict:
    t = pd.read_csv(output_dir / "report-stage0" / "sources_bcc.csv").set_index("source")
    row = {"variant": name}
    for source, r in t.iterrows():
        if r["folds"] > 0:
            row[f"auroc {source}"] = f"{r['auroc_mean']:.3f} ± {r['auroc_sd']:.3f}"
    return row


def main(out: Path = Path("outputs/real")) -> None:
    run("bcc.evaluate", "experiment=real", f"paths.output_dir={out}", *EVAL)
    rows = [auroc_row("committed run (crop, shades of grey, alpha auto, shuffle)", out)]
    for name, overrides in VARIANTS.items():
        slug = overrides[0].split("=")[0].split(".")[-1] + "-" + overrides[0].split("=")[1]
        variant = out.parent / "real-ablations" / slug
        run("bcc.train", "experiment=real", "stage=0", "fold=range(0,3)", "--multirun", "logger=csv",
            f"paths.output_dir={variant}", *overrides)
        run("bcc.evaluate", "experiment=real", f"paths.output_dir={variant}", *overrides, *EVAL)
        rows.append(auroc_row(name, variant))
    table = pd.DataFrame(rows)
    table.to_csv(Path(__file__).with_name("ablations.csv"), index=False)
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
