"""Read an offline W&B run folder back (tests only): wandb 0.31 ships no Python reader of its run files
(its internals moved to the Go ``wandb-core``), so the records are parsed from the LevelDB-style log."""
from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any


def _wandb_records(path: Path):
    """The protobuf payloads of a ``.wandb`` file (LevelDB log format: 32 KiB blocks, 7-byte headers)."""
    data, block, pos, parts = Path(path).read_bytes(), 32768, 7, b""  # file header ":W&B" magic version
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # block trailer padding
            pos += block - pos % block
            continue
        length, kind = struct.unpack("<HB", data[pos + 4:pos + 7])
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind == 1:  # full
            yield chunk
        elif kind == 2:  # first
            parts = chunk
        elif kind == 3:  # middle
            parts += chunk
        elif kind == 4:  # last
            yield parts + chunk


def read_offline_run(run_dir: Path) -> dict[str, Any]:
    """Config, history rows and final summary of an offline W&B run folder, read from its ``.wandb`` log."""
    from wandb.proto import wandb_internal_pb2 as pb

    run: dict[str, Any] = {"config": {}, "history": [], "summary": {}, "name": None, "group": None, "job_type": None}
    for path in sorted(Path(run_dir).glob("run-*.wandb")):
        for payload in _wandb_records(path):
            rec = pb.Record()
            rec.ParseFromString(payload)
            kind = rec.WhichOneof("record_type")
            if kind == "history":
                run["history"].append({i.key or "/".join(i.nested_key): json.loads(i.value_json)
                                       for i in rec.history.item})
            elif kind == "summary":
                run["summary"].update({i.key or "/".join(i.nested_key): json.loads(i.value_json)
                                       for i in rec.summary.update})
            elif kind == "config":
                run["config"].update({i.key: json.loads(i.value_json) for i in rec.config.update})
            elif kind == "run":
                run.update(name=rec.run.display_name, group=rec.run.run_group, job_type=rec.run.job_type)
                run["config"].update({i.key: json.loads(i.value_json) for i in rec.run.config.update})
    return run
