"""`make demo`: the embedded synthetic set end to end — data, consensus, folds, then the whole protocol.

Generates `data/synthetic` (1559 images, as in the paper) when absent, prints the Dawid–Skene rater-quality
and the fold tables, then trains MobileNetV2 through stages 0→1→2→3 on every fold (`experiment=demo`) and
prints the per-fold summary. Arguments are Hydra overrides, e.g. `make demo ARGS="data.k=3"`.
"""
from __future__ import annotations

import sys
from pathlib import Path

from hydra import compose, initialize_config_dir

from bcc.consensus import ensure_labels
from bcc.folds import ensure_splits
from bcc.train import CONF_DIR, build_datamodule, normalize_overrides, run_protocol


def main(argv: list[str] | None = None) -> None:
    overrides = normalize_overrides(["experiment=demo", *(sys.argv[1:] if argv is None else argv)])
    with initialize_config_dir(str(CONF_DIR), version_base="1.3", job_name="bcc-demo"):
        cfg = compose(config_name="config", overrides=overrides)
    build_datamodule(cfg).prepare_data()  # generates the synthetic set on first use
    root = Path(cfg.data.root)
    print(f"\n== Consensus (Dawid–Skene EM) on {root} ==")
    ensure_labels(root, verbose=True)
    print("\n== Folds ==")
    ensure_splits(root, k=int(cfg.data.k), seed=int(cfg.data.split_seed), verbose=True)
    print(f"\n== Training: {cfg.data.k} folds × stages 0→1→2→3, {cfg.backbone.name}, "
          f"{cfg.data.image_size} px (experiment={cfg.experiment_name}) ==", flush=True)
    run_protocol(overrides)
    print(f"\nOutputs: {cfg.paths.output_dir}/  — next: `make eval` writes the report")


if __name__ == "__main__":
    main()
