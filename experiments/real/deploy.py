"""Deploying the real run: the fold ensemble as ONNX (fp32 and int8, maps in the graph), int8 against fp32 on
real test images, triage throughput against MobileNetV2, and the guarantee's calibration on real scores.

    python experiments/real/deploy.py outputs/real --dataset data/real/merged --out experiments/real \\
        [--mobilenet outputs/real/controls/mobilenet_scratch_112]

1. ``bcc.export`` of the three fold models as one graph (fp32), and its int8 copy checked against fp32 on
   fold 0's test pictures (every member trained on some of them: the check is of agreement, not of accuracy).
2. Per fold, its own model exported alone (fp32 and int8) and both scored on its test fold — the pictures it
   never saw: AUROC of p(BCC) fp32 against int8, over all sources and per source.
3. Triage throughput: ``bcc.predict`` over the same inbox (real test pictures, files as they are on disk)
   with the Lite0 ensemble fp32 and int8 and, side by side in this run, a MobileNetV2 ensemble (the
   from-scratch control's, at its own input size; with no control, MobileNetV2's architecture at 224 px
   with random weights — the same cost).
4. The guarantee on real scores: the out-of-fold p(BCC) (each picture scored by the fold model that did not
   train on it) split at random 1000 times into calibration and test halves, stratified by class
   (``bcc.deploy.guarantee.simulate``): how often the guaranteed threshold kept the test half's sensitivity
   ≥ 95 % (promised: ≥ 90 % of splits), and what it cost.

Writes ``deploy.csv`` (every figure, long format) and ``deploy.md``; the models go to ``<run>/deploy/``.
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bcc.cli.export import main as export_main
from bcc.cli.predict import main as predict_main
from bcc.core.classification import roc_auc
from bcc.core.layout import BEST
from bcc.data.table import read_table, table_images
from bcc.deploy.guarantee import guaranteed_threshold, simulate
from bcc.deploy.scorers import OnnxScorer


def _fold_models(run: Path, backbone: str) -> list[Path]:
    return sorted((run / backbone).glob(f"fold*/stage3/{BEST}"))


def _export(args: list[str]) -> None:
    rc = export_main(args)
    if rc != 0:
        raise SystemExit(f"bcc.export {' '.join(args)} failed ({rc})")


def ensemble(run: Path, backbone: str, out: Path, dataset: Path) -> tuple[Path, Path, dict]:
    out.mkdir(parents=True, exist_ok=True)
    fp32 = out / f"{backbone}-ensemble.onnx"
    for p in (fp32, fp32.with_suffix(".int8.onnx")):
        p.unlink(missing_ok=True)
    t0 = time.perf_counter()
    _export([f"checkpoint={run}/{backbone}/fold*/stage3/best.ckpt", f"output={fp32}", "quantize=int8",
             f"check_data={dataset}", "check_fold=0", "max_accuracy_drop=1.0"])
    from bcc.deploy.model_card import ModelCard
    card = ModelCard.read(fp32.with_suffix(".int8.onnx"))
    return fp32, fp32.with_suffix(".int8.onnx"), {"seconds": time.perf_counter() - t0, "int8_check": card.int8_check,
                                                  "maps": card.maps}


def per_fold(run: Path, backbone: str, out: Path, dataset: Path, threads: int) -> pd.DataFrame:
    table = read_table(dataset)
    rows = []
    for ckpt in _fold_models(run, backbone):
        fold = int(ckpt.parent.parent.name.removeprefix("fold"))
        fp32 = out / f"{backbone}-fold{fold}.onnx"
        for p in (fp32, fp32.with_suffix(".int8.onnx")):
            p.unlink(missing_ok=True)
        _export([f"checkpoint={ckpt}", f"output={fp32}", "quantize=int8", "max_accuracy_drop=1.0"])
        test = table[table["fold"] == fold].reset_index(drop=True)
        images, _ = table_images(dataset, test, scorer_preprocess(fp32))
        x = images.transpose(0, 3, 1, 2).astype(np.float32) / 255.0
        scorers = {"fp32": OnnxScorer(fp32, threads=threads), "int8": OnnxScorer(fp32.with_suffix(".int8.onnx"), threads=threads)}
        p = {name: np.concatenate([scorer(x[i:i + 32])[0][:, 0] for i in range(0, len(x), 32)])
             for name, scorer in scorers.items()}
        y = test["bcc"].to_numpy()
        for source in ["all sources", *sorted(test["source"].unique())]:
            keep = np.ones(len(test), bool) if source == "all sources" else (test["source"] == source).to_numpy()
            if len(np.unique(y[keep])) < 2:
                continue
            rows.append({"fold": fold, "source": source, "n": int(keep.sum()), "bcc": int(y[keep].sum()),
                         "auroc_fp32": roc_auc(y[keep], p["fp32"][keep]), "auroc_int8": roc_auc(y[keep], p["int8"][keep]),
                         "max_abs_dp": float(np.abs(p["fp32"][keep] - p["int8"][keep]).max())})
    return pd.DataFrame(rows)


def scorer_preprocess(model: Path):
    from bcc.deploy.model_card import ModelCard
    return ModelCard.read(model).preprocess


def throughput(models: dict[str, Path], inbox: Path, work: Path, threads: int) -> pd.DataFrame:
    rows = []
    for name, model in models.items():
        res = work / f"triage-{name}"
        shutil.rmtree(res, ignore_errors=True)
        t0 = time.perf_counter()
        rc = predict_main([f"checkpoint={model}", f"input={inbox}", f"output={res}", "progress=false", f"threads={threads}"])
        seconds = time.perf_counter() - t0
        if rc != 0:
            raise SystemExit(f"bcc.predict with {model} failed ({rc})")
        n = json.loads((res / "run.json").read_text())["scored"]
        rows.append({"model": name, "file": model.name, "images": n, "seconds": round(seconds, 1),
                     "images_per_s": round(n / seconds, 1)})
    return pd.DataFrame(rows)


def guarantee(run: Path, backbone: str) -> dict:
    preds = pd.concat([pd.read_csv(p) for p in sorted((run / backbone).glob("fold*/stage3/predictions.csv"))])
    y, p = preds["y_bcc"].to_numpy(int), preds["p_bcc"].to_numpy(float)
    whole = guaranteed_threshold(y.astype(bool), p, 0.05, 0.1)
    sim = simulate(y, p, 0.05, 0.1, n_splits=1000)
    return {"n": len(y), "bcc": int(y.sum()), "threshold_all": whole.threshold, "deprioritised_all": whole.deprioritised,
            **{f"{k}_{m}": v for k in ("guaranteed", "empirical") for m, v in sim[k].items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--mobilenet", type=Path, help="a MobileNetV2 run (the from-scratch control) for the speed row")
    parser.add_argument("--inbox", type=int, default=200, help="test pictures copied into the triage inbox")
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads for scoring and triage")
    args = parser.parse_args()
    work = args.run / "deploy"
    fp32, int8, info = ensemble(args.run, args.backbone, work, args.dataset)
    folds = per_fold(args.run, args.backbone, work, args.dataset, args.threads)
    table = read_table(args.dataset)
    inbox = work / "inbox"
    shutil.rmtree(inbox, ignore_errors=True)
    inbox.mkdir(parents=True)
    for rel in table[table["fold"] == 0]["image"].sample(args.inbox, random_state=0):
        shutil.copy(args.dataset / rel, inbox / Path(rel).name)
    models = {"Lite0 ensemble fp32": fp32, "Lite0 ensemble int8": int8}
    if args.mobilenet is not None:
        mobile, mobile8, _ = ensemble(args.mobilenet, "mobilenet", work, args.dataset)
        models.update({"MobileNetV2 ensemble fp32": mobile, "MobileNetV2 ensemble int8": mobile8})
    speed = throughput(models, inbox, work, args.threads)
    g = guarantee(args.run, args.backbone)
    args.out.mkdir(parents=True, exist_ok=True)
    long = pd.concat([folds.assign(table="int8_vs_fp32"), speed.assign(table="throughput"),
                      pd.DataFrame([g]).assign(table="guarantee")], ignore_index=True)
    long.to_csv(args.out / "deploy.csv", index=False, float_format="%.4f")
    md = ["# Deploying the real run", "", (f"Ensemble export (fp32 + int8 with its check): {info['seconds']:.0f} s; "
          f"int8 check on fold 0's test pictures: {json.dumps(info['int8_check'])}; maps: {json.dumps(info['maps'])}"), "",
          "## int8 against fp32, each fold model on its own test fold", "", folds.to_markdown(index=False, floatfmt=".4f"),
          "", f"## Triage throughput (bcc.predict, {args.threads} thread(s), the same inbox)", "", speed.to_markdown(index=False), "",
          "## The guarantee on out-of-fold p(BCC) (ε = 0.05, δ = 0.1, 1000 stratified 50/50 splits)", "",
          pd.Series(g).to_frame("value").to_markdown(floatfmt=".4f"), ""]
    (args.out / "deploy.md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
