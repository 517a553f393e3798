"""A job folder's lifecycle: one job writes it at a time, and a job that did not finish says so.

A job holds an exclusive lock on ``<job>/job.lock`` (``fcntl.flock``) while it runs, with its pid, host,
start time and command written in the file. A second job on the same folder is refused at once
(``JobLockedError``, exit 2) naming who holds it. The lock file is removed when the job finishes
(``metrics.json`` written, last); if it is still there without ``metrics.json`` the job was interrupted
(a signal, a crash, SIGKILL) — the stage is *unfinished*: the next stage and ``skip_done`` refuse to
start from it and the message names the command that resumes it. flock locks die with their process,
so a lock left by a killed job is stale, detected and named, never a deadlock.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bcc.core.errors import BadInput
from bcc.core.io import sha256_file
from bcc.core.layout import BEST, LOCK, METRICS


class JobLockedError(BadInput):
    """Another job is writing this job folder right now."""


def holder(job: Path) -> dict:
    """What the lock file of `job` says about the job that holds (or held) it; {} when there is none."""
    try:
        return json.loads((job / LOCK).read_text() or "{}")
    except (OSError, ValueError):
        return {}


def describe(info: dict) -> str:
    return (f"pid {info.get('pid', '?')} on {info.get('host', '?')}, started {info.get('started', '?')}"
            + (f": `{info['command']}`" if info.get("command") else ""))


def unfinished(job: Path) -> dict | None:
    """The lock record of an interrupted job (checkpoints or a lock file but no metrics.json), else None."""
    if (job / METRICS).is_file() or not ((job / LOCK).exists() or (job / BEST).exists()):
        return None
    return holder(job) or {"note": "no lock record"}


@contextmanager
def locked(job: Path, command: str = "") -> Iterator[dict]:
    """Hold `job`'s lock for the block; yields the stale record of an earlier, interrupted job ({} if none).

    The lock file stays behind if the block raises (the job is unfinished) and is removed by
    :func:`finished`."""
    job.mkdir(parents=True, exist_ok=True)
    fd = os.open(job / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise JobLockedError(
                f"{job} is being written by another job ({describe(holder(job))}); wait for it to finish or "
                f"stop it — two jobs in one folder would mix their checkpoints and metrics") from None
        stale = holder(job)
        record = {"pid": os.getpid(), "host": socket.gethostname(),
                  "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "command": command or " ".join(sys.argv)}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        yield stale
    finally:
        os.close(fd)  # releases the flock


def finished(job: Path) -> None:
    """Mark `job` finished: its lock record goes (metrics.json, written before, says it is complete)."""
    (job / LOCK).unlink(missing_ok=True)


# ---- what a job was trained on, and when that no longer holds -------------------------------------------
def file_sha256(path: Path) -> str:
    """``sha256:<hex>`` of a file's bytes, as a run records the checkpoint it started from."""
    return "sha256:" + sha256_file(path)


def predecessor(job: Path) -> Path | None:
    """``fold<k>/stage<s-1>/best.ckpt`` beside a stage-s job folder (None for stage 0)."""
    s = int(job.name.removeprefix("stage"))
    return job.parent / f"stage{s - 1}" / BEST if s > 0 else None


def stale(job: Path, metrics: dict) -> str | None:
    """Why a finished job no longer holds, or None: its predecessor's ``best.ckpt`` is not the one it was
    trained from (``metrics.json`` ``trained_on.start_sha256``), e.g. stage 2 retrained with another seed
    under a stage 3 trained from the old stage 2. A job that records no start, or whose predecessor folder is
    gone, cannot be judged and is taken as it is."""
    recorded = (metrics.get("trained_on") or {}).get("start_sha256")
    prev = predecessor(job)
    if not recorded or prev is None or not prev.is_file():
        return None
    if file_sha256(prev) != recorded:
        return (f"{job} was trained from an earlier {prev.parent.name} ({prev} has changed since: "
                f"retrained); train {job.name} again")
    return None


def trained_on(backbone: str, fold: int, stage: int, start: Path | None, **facts) -> dict:
    """The record of what a job trains on: `facts` (dataset and its hash, input size, folds) with its fold,
    stage, backbone and the hash of the checkpoint it starts from. Stored in ``metrics.json`` and in the
    checkpoints (``hyper_parameters.trained_on``), compared by evaluation and by ``ckpt_path=``."""
    return {"fold": int(fold), "stage": int(stage), "backbone": backbone, **facts,
            "start": None if start is None else f"{Path(start).parent.name}/{Path(start).name}",
            "start_sha256": None if start is None else file_sha256(start)}
