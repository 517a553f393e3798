"""Bad inputs of the deploy commands (see tests/bad_inputs/__init__.py): bcc.predict, bcc.explain, bcc.export,
bcc.review.

Every row is refused before anything is read into the output or written (exit 2). What is skipped with
a reason while the rest of the batch completes (exit 0) — unreadable images, non-UTF-8 or formula-leading
file names, links, FIFOs — is tested in tests/test_predict.py and tests/test_explain.py.
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import torch

from tests.bad_inputs.case import Case, Workspace
from tests.helpers.checkpoints import tampered_copy

PREDICT, EXPLAIN, EXPORT = "bcc.cli.predict:main", "bcc.cli.explain:main", "bcc.cli.export:main"
REVIEW = "bcc.review.__main__:main"


# ---- how a row spoils its workspace -------------------------------------------------------------------------
def _ready(ws: Workspace) -> None:
    """A checkpoint and a folder of good lesions."""
    ws.checkpoint()
    ws.lesions()


def _evil(ws: Workspace) -> None:
    """A copy of the checkpoint carrying pickled code that would create ``pwned`` (the snapshot would see it)."""
    _ready(ws)
    tampered_copy(ws.checkpoint(), ws.root / "evil.ckpt", ws.root / "pwned")


def _garbage(ws: Workspace) -> None:
    """Files that are no checkpoint: a tensor file laid out wrongly, random bytes, a junk .onnx."""
    _ready(ws)
    torch.save({"state_dict": {}, "hyper_parameters": "mobilenet"}, ws.root / "garbage.ckpt")
    torch.save({"state_dict": {}, "hyper_parameters": {"network": {"backbone": "mobilenet", "image_size": "big"}}},
               ws.root / "badsize.ckpt")
    (ws.root / "random.ckpt").write_bytes(np.random.default_rng(0).bytes(4096))
    (ws.root / "model.onnx").write_bytes(b"not a model")


def _forged(**network):
    """``forged.ckpt``: the checkpoint with `network` spec entries replaced (as a tampered file would say)."""
    def prepare(ws: Workspace) -> None:
        _ready(ws)
        raw = torch.load(ws.checkpoint(), map_location="cpu", weights_only=True)
        raw["hyper_parameters"]["network"].update(network)
        torch.save(raw, ws.root / "forged.ckpt")
    return prepare


def _thresholds(content: str):
    """thresholds.json beside the checkpoint copy (where bcc.evaluate writes it) holding `content`."""
    def prepare(ws: Workspace) -> None:
        _ready(ws)
        (ws.checkpoint().parent / "thresholds.json").write_text(content)
    return prepare


def _onnx(input_size):
    """``m.onnx`` exported from the checkpoint (32 px graph), its ``bcc.input_size`` metadata set to `input_size`."""
    def prepare(ws: Workspace) -> None:
        import onnx

        from bcc.deploy.model_card import ModelCard
        from bcc.deploy.onnx_export import export_onnx

        _ready(ws)
        export_onnx(ws.checkpoint(), ws.root / "m.onnx")
        model = onnx.load(str(ws.root / "m.onnx"))
        ModelCard.read(ws.root / "m.onnx").but(input_size=input_size).write(model)
        onnx.save(model, str(ws.root / "m.onnx"))
    return prepare


def _earlier_run(command: str, *names: str, listed: bool = True):
    """output= ``out`` holding `names` (as an earlier run of `command` left them, listed in its manifest, or not)."""
    def prepare(ws: Workspace) -> None:
        _ready(ws)
        out = ws.root / "out"
        out.mkdir()
        for n in names:
            (out / n).write_text("an earlier result")
        if listed:
            (out / f".bcc-{command}.json").write_text(json.dumps({"command": f"bcc.{command}", "files": list(names)}))
    return prepare


def _lone_checkpoint(ws: Workspace) -> None:
    """The checkpoint file alone, outside its job folder (no training config beside it)."""
    _ready(ws)
    shutil.copy(ws.checkpoint(), ws.root / "lone.ckpt")


def _output_file(ws: Workspace) -> None:
    _ready(ws)
    (ws.root / "out.txt").write_text("a file where the output folder should go")


def _empty(ws: Workspace) -> None:
    _ready(ws)
    (ws.root / "empty").mkdir()


def _two_checkpoints(ws: Workspace) -> None:
    """Two fold checkpoints side by side (the same weights twice is enough for the option checks)."""
    _ready(ws)
    shutil.copy(ws.checkpoint(), ws.root / "run" / "other.ckpt")


def _unlabelled(ws: Workspace) -> None:
    _ready(ws)
    (ws.dataset() / "labels.csv").unlink()


def _calibration_set(ws: Workspace) -> None:
    """``calib``: 30 labelled synthetic pictures none of which the checkpoint saw."""
    from bcc.data.consensus import ensure_labels
    from bcc.data.synthetic import generate

    _ready(ws)
    ensure_labels(generate(ws.root / "calib", n=30, size=64, seed=9, progress=False))


def _training_pictures(ws: Workspace) -> None:
    """The training set copied without its folds: another content hash, the same pictures."""
    _ready(ws)
    (ws.dataset() / "splits.csv").unlink()


def _stage3_of_the_same_fold(ws: Workspace) -> None:
    """``run/s3.ckpt``: the checkpoint recorded as stage 3 of the same fold (beside its stage 0)."""
    _ready(ws)
    raw = torch.load(ws.checkpoint(), map_location="cpu", weights_only=True)
    raw["hyper_parameters"]["trained_on"]["stage"] = raw["hyper_parameters"]["stage"] = 3
    torch.save(raw, ws.root / "run" / "s3.ckpt")


def _calibrate(*extra: str):
    return lambda ws: [*export()(ws), f"guarantee_data={ws.root / 'calib'}", *extra]


def _triage_out(ws: Workspace) -> None:
    """A folder holding a triage.csv but no run.json (a bcc.predict output of an older version, or a copy)."""
    _ready(ws)
    (ws.root / "old").mkdir()
    (ws.root / "old" / "triage.csv").write_text("rank,image\n")


def _existing_out(ws: Workspace) -> None:
    (ws.root / "ann.csv").write_text("image_id,rater,PN,U,ON,MG,ML,SW,AT\n")
    (ws.root / "review.db").write_bytes(b"")


# ---- command lines --------------------------------------------------------------------------------------------
def batch(*extra: str, checkpoint: str | None = None, input: str | None = None, output: str | None = "out"):
    """A predict/explain command line on the workspace: `checkpoint`, `input`, `output` relative to it
    (defaults: the checkpoint copy, the lesions, ``out``; ``output=None`` leaves it out)."""
    def argv(ws: Workspace) -> list[str]:
        args = [f"checkpoint={ws.root / checkpoint if checkpoint else ws.checkpoint()}",
                f"input={ws.root / input if input else ws.lesions()}"]
        return args + ([f"output={ws.root / output}"] if output else []) + list(extra)
    return argv


def export(*extra: str, checkpoint: str | None = None):
    def argv(ws: Workspace) -> list[str]:
        return [f"checkpoint={ws.root / checkpoint if checkpoint else ws.checkpoint()}", *extra]
    return argv


def _both(name: str, argv, rc: int, message: str, prepare=_ready) -> list[Case]:
    """The same bad input for bcc.predict and bcc.explain."""
    return [Case(f"predict/{name}", PREDICT, argv, rc, message, prepare),
            Case(f"explain/{name}", EXPLAIN, argv, rc, message, prepare)]


CASES: list[Case] = [
    # the model file
    *_both("missing-checkpoint", batch(checkpoint="missing.ckpt"), 2, r"missing\.ckpt: no such file"),
    *_both("checkpoint-carrying-pickled-code", batch(checkpoint="evil.ckpt"), 2,
           r"evil\.ckpt: refused to load .* pickled objects", _evil),
    *_both("checkpoint-laid-out-wrongly", batch(checkpoint="garbage.ckpt"), 2,
           r"garbage\.ckpt: not a checkpoint as bcc\.train writes it", _garbage),
    *_both("checkpoint-size-not-a-number", batch(checkpoint="badsize.ckpt"), 2,
           r"badsize\.ckpt: hyper_parameters\.network: .*'big'", _garbage),
    *_both("checkpoint-random-bytes", batch(checkpoint="random.ckpt"), 2, r"random\.ckpt: ", _garbage),
    *_both("unreadable-onnx", batch(checkpoint="model.onnx"), 2, r"model\.onnx: not a readable ONNX model", _garbage),
    *_both("checkpoint-timm-name-from-the-hub", batch(checkpoint="forged.ckpt"), 2,
           r"forged\.ckpt: network\.timm_name='hf-hub:someone/model': not an architecture timm defines .*never fetched",
           _forged(timm_name="hf-hub:someone/model")),
    *_both("checkpoint-image-size-negative", batch(checkpoint="forged.ckpt"), 2,
           r"forged\.ckpt: network\.image_size=-5 is not an input side in pixels \(16\.\.4096\)", _forged(image_size=-5)),
    *_both("checkpoint-image-size-huge", batch(checkpoint="forged.ckpt"), 2,
           r"forged\.ckpt: network\.image_size=100000 is not an input side", _forged(image_size=100000)),
    Case("export/checkpoint-timm-name-from-the-hub", EXPORT, export(checkpoint="forged.ckpt"), 2,
         r"forged\.ckpt: network\.timm_name='hf-hub:someone/model'", _forged(timm_name="hf-hub:someone/model")),
    Case("predict/onnx-input-size-negative", PREDICT, batch(checkpoint="m.onnx"), 2,
         r"m\.onnx: bcc\.input_size='-5' is not an input side in pixels", _onnx(-5)),
    Case("predict/onnx-input-size-not-the-graphs", PREDICT, batch(checkpoint="m.onnx"), 2,
         r"m\.onnx: the graph's input is \['batch', 3, 32, 32\] but its bcc\.input_size metadata says 48", _onnx(48)),
    Case("predict/thresholds-json-boolean", PREDICT, batch(), 2,
         r"run/thresholds\.json: bcc = true is not a number", _thresholds('{"bcc": true}')),
    Case("predict/thresholds-json-patterns-a-list", PREDICT, batch(), 2,
         r"run/thresholds\.json: patterns = \[0\.5\] is not an object of code", _thresholds('{"patterns": [0.5]}')),
    Case("predict/explain-checkpoint-carrying-pickled-code", PREDICT,
         lambda ws: [*batch()(ws), f"explain_checkpoint={ws.root / 'evil.ckpt'}"], 2, r"evil\.ckpt: refused to load",
         _evil),
    # input= and output=
    *_both("missing-input", batch(input="nowhere"), 2, r"input=.*nowhere: no such file or folder"),
    *_both("missing-output-option", batch(output=None), 2, r"missing output="),
    *_both("output-is-the-input-folder", batch(output="lesions"), 2, r"output=.*lesions is the input folder"),
    *_both("output-inside-the-input-folder", batch(output="lesions/triage"), 2,
           r"output=.*lesions/triage is inside the input folder"),
    *_both("output-is-a-file", batch(output="out.txt"), 2, r"output=.*out\.txt is a file", _output_file),
    *_both("output-below-a-file", batch(output="out.txt/triage"), 2,
           r"output=.*out\.txt/triage lies below .*out\.txt, which is a file", _output_file),
    Case("predict/output-of-an-earlier-run", PREDICT, batch(), 2,
         r"output=.*out already holds report\.html, triage\.csv from an earlier run of bcc\.predict; .*overwrite=true",
         _earlier_run("predict", "triage.csv", "report.html")),
    Case("predict/output-holding-the-users-triage-csv", PREDICT, batch("overwrite=true"), 2,
         r"output=.*out already holds triage\.csv, which bcc\.predict did not write",
         _earlier_run("predict", "triage.csv", listed=False)),
    Case("explain/output-of-an-earlier-run", EXPLAIN, batch(), 2,
         r"output=.*out already holds explanations\.csv from an earlier run of bcc\.explain",
         _earlier_run("explain", "explanations.csv", "old_bcc.png")),
    Case("explain/output-holding-an-overlay-name", EXPLAIN, batch(), 2,
         r"output=.*out already holds syn_00000\.png_bcc\.png, which bcc\.explain did not write",
         _earlier_run("explain", "syn_00000.png_bcc.png", listed=False)),
    Case("explain/empty-folder", EXPLAIN, batch(input="empty"), 2, r"input=.*empty: no files in it", _empty),
    # options
    *_both("typo-option", batch("treshold=0.3"), 2, r"treshold"),
    *_both("batch-size-zero", batch("batch_size=0"), 2, r"batch_size=0: expected a whole number ≥ 1"),
    *_both("batch-size-negative", batch("batch_size=-4"), 2, r"batch_size=-4: expected a whole number ≥ 1"),
    *_both("batch-size-not-a-number", batch("batch_size=abc"), 2, r"batch_size=abc: expected a whole number"),
    *_both("max-megapixels-zero", batch("max_megapixels=0"), 2, r"max_megapixels=0: expected a number > 0"),
    *_both("max-megapixels-negative", batch("max_megapixels=-1.5"), 2, r"max_megapixels=-1\.5: expected a number > 0"),
    Case("predict/threads-zero", PREDICT, batch("threads=0"), 2, r"threads=0: expected a whole number ≥ 1", _ready),
    Case("predict/report-not-a-boolean", PREDICT, batch("report=flase"), 2, r"report=flase: expected true or false",
         _ready),
    Case("predict/progress-not-a-boolean", PREDICT, batch("progress=maybe"), 2,
         r"progress=maybe: expected true or false, or null", _ready),
    Case("predict/threshold-outside-0-1", PREDICT, batch("threshold=1.5"), 2, r"bcc = 1\.5 is not in \[0, 1\]", _ready),
    Case("predict/thresholds-file-missing", PREDICT, batch("thresholds=nowhere.json"), 2,
         r"thresholds=nowhere\.json: no such file", _ready),
    Case("explain/save-raw-not-a-boolean", EXPLAIN, batch("save_raw=yes"), 2, r"save_raw=yes: expected true or false",
         _ready),
    Case("explain/unknown-device", EXPLAIN, batch("device=tpu"), 2, r"device=tpu: expected cpu, cuda", _ready),
    # bcc.export
    Case("export/missing-checkpoint-option", EXPORT, lambda ws: ["format=onnx"], 2, r"missing checkpoint="),
    Case("export/missing-checkpoint", EXPORT, export(checkpoint="missing.ckpt"), 2, r"missing\.ckpt does not exist"),
    Case("export/checkpoint-carrying-pickled-code", EXPORT, export(checkpoint="evil.ckpt"), 2,
         r"evil\.ckpt: refused to load .* pickled objects", _evil),
    Case("export/checkpoint-laid-out-wrongly", EXPORT, export(checkpoint="garbage.ckpt"), 2,
         r"garbage\.ckpt: not a checkpoint as bcc\.train writes it", _garbage),
    Case("export/an-onnx-model-as-checkpoint", EXPORT, export(checkpoint="model.onnx"), 2,
         r"model\.onnx: an exported ONNX model, where a torch checkpoint", _garbage),
    Case("export/typo-option", EXPORT, export("quantise=int8"), 2, r"quantise", _ready),
    Case("export/unknown-format", EXPORT, export("format=tflite"), 2, r"format=tflite: not supported.*format=onnx",
         _ready),
    Case("export/unknown-quantization", EXPORT, export("quantize=int4"), 2,
         r"quantize=int4: not supported.*quantize=null, quantize=int8", _ready),
    Case("export/output-not-onnx", EXPORT, lambda ws: [f"checkpoint={ws.checkpoint()}", f"output={ws.root / 'm.pt'}"],
         2, r"output=.*m\.pt: expected a file name ending in \.onnx", _ready),
    Case("export/n-calibration-zero", EXPORT, export("quantize=int8", "n_calibration=0"), 2,
         r"n_calibration=0: expected a whole number ≥ 1", _ready),
    Case("export/tolerance-zero", EXPORT, export("tolerance=0"), 2, r"tolerance=0: expected a number > 0", _ready),
    Case("export/max-accuracy-drop-above-1", EXPORT, export("max_accuracy_drop=5"), 2,
         r"max_accuracy_drop=5: expected a number in \[0, 1\]", _ready),
    Case("export/check-fold-negative", EXPORT, export("check_fold=-1"), 2, r"check_fold=-1: expected a whole number ≥ 0",
         _ready),
    Case("export/output-an-unrelated-file", EXPORT, lambda ws: [f"checkpoint={ws.checkpoint()}",
                                                                 f"output={ws.root / 'notes.onnx'}"], 2,
         r"output=.*notes\.onnx exists and is not a model bcc\.export wrote",
         lambda ws: (_ready(ws), (ws.root / "notes.onnx").write_text("the user's notes"))),
    Case("export/int8-unchecked-without-force", EXPORT, export("quantize=int8", checkpoint="lone.ckpt"), 2,
         r"quantize=int8: no dataset and test fold to check .*lone\.ckpt.*check_data=<dataset dir> check_fold=<k>, "
         r"or force=true", _lone_checkpoint),
    Case("export/calibration-folder-missing", EXPORT, export("quantize=int8", "calibration=/nonexistent/data"), 2,
         r"calibration=/nonexistent/data: no such folder", _ready),
    # bcc.export: the ensemble and the guarantee
    Case("export/glob-matching-nothing", EXPORT, lambda ws: [f"checkpoint={ws.root}/nothing*/best.ckpt"], 2,
         r"checkpoint=.*nothing\*/best\.ckpt: no file matches", _ready),
    Case("export/ensemble-with-int8", EXPORT, lambda ws: [f"checkpoint={ws.root}/run/*.ckpt", "quantize=int8"], 2,
         r"quantize=int8 of an ensemble: .*check_data=<dataset dir> check_fold=<k>", _two_checkpoints),
    Case("export/epsilon-outside-0-1", EXPORT, export("epsilon=1.5"), 2,
         r"epsilon=1\.5: expected a number between 0 and 1", _ready),
    Case("export/delta-zero", EXPORT, export("delta=0"), 2, r"delta=0: expected a number between 0 and 1", _ready),
    Case("export/guarantee-batch-zero", EXPORT, export("guarantee_batch=0"), 2,
         r"guarantee_batch=0: expected a whole number in \[1, 100000\]", _ready),
    Case("export/guarantee-data-missing", EXPORT, export("guarantee_data=/nonexistent/data"), 2,
         r"guarantee_data=/nonexistent/data: no such folder", _ready),
    Case("export/guarantee-data-the-training-set", EXPORT, lambda ws: [*export()(ws), f"guarantee_data={ws.smoke_data}"],
         2, r"guarantee_data=.*synthetic-smoke: the model's networks were trained on this dataset", _ready),
    Case("export/guarantee-data-unlabelled", EXPORT, lambda ws: [*export()(ws), f"guarantee_data={ws.dataset()}"], 2,
         r"labels\.csv: missing; `python -m bcc\.consensus .*` writes it", _unlabelled),
    Case("export/guarantee-with-too-few-bcc-cases", EXPORT, _calibrate("epsilon=0.01", "delta=0.01"), 2,
         r"guarantee_data=.*calib: \d+ BCC cases are too few for sensitivity ≥ 99% with probability ≥ 99%; it takes at "
         r"least 459", _calibration_set),
    Case("export/guarantee-epsilon-needing-millions", EXPORT, _calibrate("epsilon=1e-6"), 2,
         r"guarantee_data=.*calib: \d+ BCC cases are too few for sensitivity ≥ 99\.9999% with probability ≥ 90%; it "
         r"takes at least 2302584", _calibration_set),
    Case("export/guarantee-delta-0.004-not-rounded-to-100", EXPORT, _calibrate("epsilon=0.001", "delta=0.004"), 2,
         r"too few for sensitivity ≥ 99\.9% with probability ≥ 99\.6%; it takes at least 5519", _calibration_set),
    Case("export/guarantee-batch-a-billion", EXPORT, export("guarantee_batch=1000000000"), 2,
         r"guarantee_batch=1000000000: expected a whole number in \[1, 100000\]", _ready),
    Case("export/guarantee-data-a-copy-of-the-training-set", EXPORT,
         lambda ws: [*export()(ws), f"guarantee_data={ws.dataset()}"], 2,
         r"guarantee_data=.*ds: its content \(sha256:.*\) is the dataset .*best\.ckpt was trained on — a copy",
         lambda ws: (_ready(ws), ws.dataset())),
    Case("export/guarantee-data-holding-training-pictures", EXPORT,
         lambda ws: [*export()(ws), f"guarantee_data={ws.dataset()}"], 2,
         r"guarantee_data=.*ds: 100 of its 100 pictures are pictures .*best\.ckpt was trained on \(the same bytes",
         _training_pictures),
    Case("export/ensemble-of-stage-0-and-stage-3-of-one-fold", EXPORT,
         lambda ws: [f"checkpoint=[{ws.checkpoint()},{ws.root / 'run' / 's3.ckpt'}]"], 2,
         r"checkpoint=: the members differ in stages \(.*best\.ckpt \(fold 0, stage 0\), .*s3\.ckpt \(fold 0, "
         r"stage 3\)\); a fold ensemble averages one stage of each fold", _stage3_of_the_same_fold),
    Case("export/ensemble-of-one-fold-twice", EXPORT, lambda ws: [f"checkpoint={ws.root}/run/*.ckpt"], 2,
         r"checkpoint=: fold 0 twice \(", _two_checkpoints),
    # bcc.review
    Case("review/import-without-run-json", REVIEW, lambda ws: ["import", str(ws.root / "old"), "--db",
                                                               f"sqlite:///{ws.root / 'r.db'}"], 2,
         r"old/run\.json: missing; import the output= folder of a `python -m bcc\.predict` run", _triage_out),
    Case("review/unknown-database-url", REVIEW, lambda ws: ["serve", "--db", "nosuchdb://x"], 2,
         r"--db nosuchdb://x: not a database URL SQLAlchemy can open"),
    Case("review/export-over-an-existing-file", REVIEW,
         lambda ws: ["export", "--out", str(ws.root / "ann.csv"), "--db", f"sqlite:///{ws.root / 'review.db'}"], 2,
         r"--out .*ann\.csv: .*ann\.csv exists; choose a new file name", _existing_out),
    Case("review/export-from-no-database", REVIEW,
         lambda ws: ["export", "--out", str(ws.root / "new.csv"), "--db", f"sqlite:///{ws.root / 'none.db'}"], 2,
         r"--db sqlite:///.*none\.db: no review database there \(a mistyped path\?\); `python -m bcc\.review init"),
    Case("review/export-to-a-folder-that-is-no-dataset", REVIEW,
         lambda ws: ["export", "--out", str(ws.root / "new.csv"), "--dataset", str(ws.root), "--db",
                     f"sqlite:///{ws.root / 'review.db'}"], 2, r"--dataset .*: no images\.csv there", _existing_out),
    Case("review/port-out-of-range", REVIEW, lambda ws: ["serve", "--port", "70000", "--db",
                                                         f"sqlite:///{ws.root / 'r.db'}"], 2,
         r"--port 70000: expected 0-65535"),
]
