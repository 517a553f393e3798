"""Bad inputs of the training commands (see tests/bad_inputs/__init__.py): caught before any training."""
from __future__ import annotations

import json
import re
import shutil

import torch

from bcc.core.jobs import file_sha256
from bcc.core.layout import BEST, LOCK, METRICS
from tests.bad_inputs.case import Case, Workspace
from tests.helpers.checkpoints import tampered_copy
from tests.helpers.runs import write_runs

TRAIN, EVALUATE = "bcc.cli.train:main", "bcc.cli.evaluate:main"


def smoke(*extra: str):
    """A smoke training command on the workspace's dataset copy, writing under the workspace."""
    def argv(ws: Workspace) -> list[str]:
        data = ws.dataset("data/synthetic-smoke").parent
        return ["experiment=smoke", f"paths.data_dir={data}", f"paths.output_dir={ws.root / 'out'}", "logger=csv",
                *extra]
    return argv


def _dataset(ws: Workspace) -> None:
    ws.dataset("data/synthetic-smoke")


def _dataset_and_checkpoint(ws: Workspace) -> None:
    _dataset(ws)
    ws.checkpoint()


def _finished_stage0(ws: Workspace, tamper: bool = False) -> None:
    """The smoke dataset and a finished stage 0 of fold 0 in the output folder (its best.ckpt tampered)."""
    _dataset(ws)
    job = ws.root / "out" / "mobilenet" / "fold0" / "stage0"
    shutil.copytree(ws.checkpoint().parent, job)
    if tamper:
        tampered_copy(job / "best.ckpt", job / "best.ckpt", ws.root / "code-ran")


def _rerated(ws: Workspace) -> None:
    """A rater of the dataset copy changes 40 ratings (the data is no longer what the checkpoints saw)."""
    path = ws.root / "data" / "synthetic-smoke" / "annotations.csv"
    lines = path.read_text().splitlines()
    for i in range(1, 41):
        fields = lines[i].split(",")
        fields[2] = {"1": "0", "0": "1"}.get(fields[2], "1")
        lines[i] = ",".join(fields)
    path.write_text("\n".join(lines) + "\n")


def _tampered_file(ws: Workspace) -> None:
    _dataset(ws)
    tampered_copy(ws.checkpoint(), ws.root / "evil.ckpt", ws.root / "code-ran")


def _tampered_weights(ws: Workspace) -> None:
    _dataset(ws)
    torch.save({"conv_stem.weight": torch.zeros(1), "x": _Payload(ws.root / "code-ran")}, ws.root / "imagenet.pth")


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def evaluate(*extra: str):
    """An evaluation command over the workspace's output folder (empty, or hand-made runs: ``_runs``)."""
    return lambda ws: ["experiment=smoke", f"paths.output_dir={ws.root / 'out'}", "wandb.enabled=false",
                       "eval.complexity=false", "eval.linear_probe=false", *extra]


def _runs(edit=None):
    """Five folds of hand-made stage 2 and 3 runs (tests.helpers.runs), each recording what it trained on;
    `edit(ws, out)` then spoils them."""
    def prepare(ws: Workspace) -> None:
        out = write_runs(ws.root / "out", stages=(2, 3), experiment="smoke")
        for job in out.glob("mobilenet/fold*/stage*"):
            m = json.loads((job / METRICS).read_text())
            m["trained_on"] = {"fold": m["fold"], "stage": m["stage"], "image_size": 32, "k": 5, "split_seed": 0,
                               "dataset_hash": "sha256:aaaa", "start_sha256": None}
            (job / METRICS).write_text(json.dumps(m))
        if edit:
            edit(ws, out)
    return prepare


def _trained_on(fold: int, **changes):
    def edit(ws: Workspace, out) -> None:
        path = out / "mobilenet" / f"fold{fold}" / "stage3" / METRICS
        m = json.loads(path.read_text())
        m["trained_on"].update(changes)
        path.write_text(json.dumps(m))
    return edit


def _unfinished(ws: Workspace, out) -> None:
    """Fold 2's stage 3 has its predictions but no metrics.json, and the lock record of a killed job."""
    job = out / "mobilenet" / "fold2" / "stage3"
    (job / METRICS).unlink()
    (job / LOCK).write_text(json.dumps({"pid": 999999, "host": "h", "started": "2026-01-01T00:00:00"}))


def _stale(ws: Workspace, out) -> None:
    """Fold 1's stage 3 was trained from a stage 2 checkpoint that has been replaced since (another seed)."""
    prev = out / "mobilenet" / "fold1" / "stage2" / BEST
    prev.write_bytes(b"the stage 2 trained first")
    _trained_on(1, start_sha256=file_sha256(prev))(ws, out)
    prev.write_bytes(b"stage 2 trained again with seed 1")


def _out_of_range(key: str, value: str, expected: str, shown: str | None = None) -> Case:
    """`shown`: the value as the message gives it, when YAML reads it otherwise (1e308 → 1e+308)."""
    return Case(f"train/{key}={value}", TRAIN, smoke(f"{key}={value}"), 2,
                rf"{re.escape(key)}={re.escape(shown or value)}: expected {expected}", _dataset)


def _eval_out_of_range(key: str, value: str, expected: str) -> Case:
    return Case(f"evaluate/{key}={value}", EVALUATE, evaluate(f"{key}={value}"), 2,
                rf"{re.escape(key)}={re.escape(value)}: expected {expected}")


CASES: list[Case] = [
    # numeric options outside their range (bcc.training.config.RANGES), refused before a job folder exists
    _out_of_range("stage.batch_size", "0", r"a whole number in \[1, 65536\]"),
    _out_of_range("stage.lr", "-1", r"a number in \(0, 1\]"),
    _out_of_range("stage.lr", "1e308", r"a number in \(0, 1\]", shown="1e+308"),
    _out_of_range("stage.max_epochs", "-1", r"a whole number in \[0, 100000\]"),
    _out_of_range("seed", "-1", r"a whole number in \[0, 4294967295\] \(numpy"),
    _out_of_range("data.image_size", "0", r"a whole number in \[16, 4096\]"),
    _out_of_range("data.image_size", "100000", r"a whole number in \[16, 4096\]"),
    _out_of_range("data.val_fraction", "0", r"a number in \(0, 0\.9\] \(the validation slice selects"),
    _out_of_range("data.val_fraction", "1.5", r"a number in \(0, 0\.9\]"),
    _out_of_range("data.k", "1", r"a whole number in \[2, 100\] \(k-fold"),
    _out_of_range("stage.batch_size", "abc", r"a whole number"),
    _eval_out_of_range("eval.thresholds", "1.5", r"a number in \[0, 1\], or val"),
    _eval_out_of_range("eval.thresholds", "foo", r"a number in \[0, 1\], or val"),
    _eval_out_of_range("eval.k", "-1", r"a whole number in \[1, 100\], or null"),
    _eval_out_of_range("eval.target_sensitivity", "2", r"a number in \(0, 1\]"),
    _eval_out_of_range("eval.ece_bins", "0", r"a whole number in \[1, 1000\]"),
    # runs that are not what they say
    Case("evaluate/runs-on-other-data-and-size", EVALUATE, evaluate(), 2,
         r"(?s)stage 3: the runs to average were not trained alike —\n  mobilenet: dataset content \(dataset_hash\) "
         r"differs: mobilenet folds 0, 2, 3, 4: sha256:aaaa \| mobilenet fold 1: sha256:bbbb\n  mobilenet: input size "
         r"\(image_size\) differs: mobilenet folds 0, 2, 3, 4: 32 \| mobilenet fold 1: 48\n.*eval\.allow_mixed=true",
         _runs(_trained_on(1, image_size=48, dataset_hash="sha256:bbbb"))),
    Case("evaluate/predictions-without-metrics", EVALUATE, evaluate(), 2,
         r"mobilenet fold 2 stage 3: .*fold2/stage3 has no metrics\.json \(unfinished: the job did not end; pid 999999",
         _runs(_unfinished)),
    Case("evaluate/stage-3-from-a-replaced-stage-2", EVALUATE, evaluate(), 2,
         r"mobilenet fold 1 stage 3: stale: .*fold1/stage3 was trained from an earlier stage2 .*has changed since",
         _runs(_stale)),
    Case("evaluate/report-dir-holding-the-users-files", EVALUATE,
         lambda ws: [*evaluate()(ws), f"report_dir={ws.root / 'mine'}"], 2,
         r"report_dir= .*mine exists and holds files bcc\.evaluate did not write",
         _runs(lambda ws, out: ((ws.root / "mine").mkdir(), (ws.root / "mine" / "thesis.md").write_text("mine")))),
    _eval_out_of_range("eval.stage", "7", r"a whole number in \[0, 3\] \(the training stages are 0, 1, 2 and 3\)"),

    Case("train/unknown-key-added", TRAIN, smoke("+data.image_sz=64"), 2, r"unknown config key data\.image_sz",
         _dataset),
    Case("train/unknown-key", TRAIN, smoke("data.image_sz=64"), 2, r"data\.image_sz", _dataset),
    Case("train/csv-without-root", TRAIN, lambda ws: ["data=csv", f"paths.output_dir={ws.root / 'out'}", "logger=csv"], 2,
         r"data\.root is not set: point it at your dataset"),
    Case("train/unknown-stage-key", TRAIN, smoke("+stage.lrr=0.1"), 2, r"stage\.lrr", _dataset),
    Case("train/augment-probability-above-1", TRAIN, smoke("data.augment.rotate.p=1.5"), 2,
         r"data\.augment\.rotate: .*less than or equal to 1", _dataset),
    Case("train/augment-unknown-argument", TRAIN, smoke("+data.augment.blur.sigma=2"), 2,
         r"data\.augment\.blur\.sigma \(albumentations\.GaussianBlur takes", _dataset),
    Case("train/fold-out-of-range", TRAIN, smoke("fold=9"), 2, r"fold=9 is outside 0\.\.4", _dataset),
    Case("train/fold-range-descending", TRAIN, smoke("fold=4-0", "--multirun"), 2, r"fold=4-0: the range must go up",
         _dataset),
    Case("train/unknown-stage", TRAIN, smoke("stage=7"), 2, r"stage", _dataset),
    Case("train/unknown-backbone", TRAIN, smoke("backbone=resnet"), 2, r"backbone", _dataset),
    Case("train/ckpt-path-missing", TRAIN, smoke("stage=0", "ckpt_path=/nonexistent/last.ckpt"), 2,
         r"ckpt_path=/nonexistent/last\.ckpt: .*does not exist", _dataset),
    Case("train/resume-without-last", TRAIN, smoke("stage=0", "ckpt_path=last"), 2,
         r"ckpt_path=last: .*last\.ckpt does not exist", _dataset),
    Case("train/resume-from-another-folds-checkpoint", TRAIN,
         lambda ws: smoke("stage=0", "fold=1", f"ckpt_path={ws.checkpoint().parent / 'last.ckpt'}")(ws), 2,
         r"ckpt_path=.*run/last\.ckpt: .*last\.ckpt was trained with fold 0 \(this job: 1\); a job resumes only from "
         r"its own checkpoint", _dataset_and_checkpoint),
    Case("train/resume-at-another-input-size", TRAIN,
         lambda ws: smoke("stage=0", "fold=0", "data.image_size=48", f"ckpt_path={ws.checkpoint()}")(ws), 2,
         r"was trained with image_size 32 \(this job: 48\)", _dataset_and_checkpoint),
    Case("train/resume-from-a-weights-only-checkpoint", TRAIN,
         lambda ws: smoke("stage=0", "fold=0", f"ckpt_path={ws.checkpoint()}")(ws), 2,
         r"best\.ckpt holds weights only .*resume from the job's last\.ckpt \(ckpt_path=last\)", _dataset_and_checkpoint),
    Case("train/backbone-timm-name-from-the-hub", TRAIN, smoke("backbone.timm_name=hf-hub:someone/model"), 2,
         r"backbone\.timm_name='hf-hub:someone/model': not an architecture timm defines", _dataset),
    Case("train/missing-predecessor", TRAIN, smoke("stage=3", "fold=2"), 2,
         r"stage 3 of fold 2 starts from .*stage2/best\.ckpt, which does not exist.*stage=2 fold=2", _dataset),
    Case("train/predecessor-trained-on-other-data", TRAIN, smoke("stage=1", "fold=0"), 2,
         r"stage 1 of fold 0 starts from stage 0: .*stage0/best\.ckpt was trained with dataset_hash sha256:\w+ \(this "
         r"job: sha256:\w+\); train stage 0 on this data first: `python -m bcc\.train stage=0 fold=0",
         lambda ws: (_finished_stage0(ws), _rerated(ws)), writes_nothing=False),  # labels.csv is derived anew
    Case("train/stage-handover-pickled-code", TRAIN, smoke("stage=1", "fold=0"), 2,
         r"stage0/best\.ckpt: refused to load .*pickled objects", lambda ws: _finished_stage0(ws, tamper=True)),
    Case("train/resume-file-pickled-code", TRAIN, lambda ws: smoke("stage=0", f"ckpt_path={ws.root / 'evil.ckpt'}")(ws),
         2, r"evil\.ckpt: refused to load", _tampered_file),
    Case("train/backbone-weights-pickled-code", TRAIN,
         lambda ws: smoke("stage=1", "fold=0", f"backbone.weights={ws.root / 'imagenet.pth'}")(ws), 2,
         r"backbone\.weights .*imagenet\.pth: refused to load", _tampered_weights),
    Case("train/backbone-weights-missing", TRAIN, smoke("stage=1", "fold=0", "backbone.weights=/nonexistent.pth"), 2,
         r"backbone\.weights.*/nonexistent\.pth does not exist", _dataset),
    Case("train/devices-without-ddp", TRAIN, smoke("trainer.devices=3"), 2, r"trainer\.devices=3 needs .*trainer=ddp",
         _dataset),
]
if not torch.cuda.is_available():  # the case exists on machines without a GPU
    CASES.append(Case("train/gpu-without-gpu", TRAIN, smoke("trainer=gpu"), 2, r"no CUDA GPU is visible", _dataset))
