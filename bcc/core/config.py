"""Config plumbing shared by every Hydra command: the config tree, override shorthands, key checks.

``conf/`` is composed by Hydra; nodes with a ``_target_`` are built with ``hydra.utils.instantiate``.
:func:`check_targets` makes a typo a usage error before any work: every key of a ``_target_`` node
must be a parameter of its target (Hydra itself only complains when the object is finally built,
and ``+data.image_sz=64`` — the form Hydra suggests for a new key — would otherwise be accepted).
"""
from __future__ import annotations

import inspect
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from bcc.core.errors import UsageError

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def _by_accelerator(accelerator: str, on_gpu, on_cpu):
    """``${bcc.by_accelerator:${trainer.accelerator},<gpu value>,<cpu value>}``: a setting that follows the device
    (``trainer=ddp``: 16-mixed and SyncBatchNorm on GPUs, 32-true and no SyncBatchNorm on CPU processes)."""
    gpu = str(accelerator) in ("gpu", "cuda") or (str(accelerator) == "auto" and torch.cuda.is_available())
    return on_gpu if gpu else on_cpu


OmegaConf.register_new_resolver("bcc.by_accelerator", _by_accelerator, replace=True)


def _options(config_name: str) -> str:
    """``${bcc.options:predict}``: the options of ``conf/<config_name>.yaml`` as written there, comments
    included, for the command's ``--help`` (Hydra's default lists the config groups of ``conf/``, which are
    the training tree's and mean nothing to a command that composes only its own file)."""
    lines = (CONF_DIR / f"{config_name}.yaml").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line and not line.startswith(("#", "defaults:", "  - ")))
    end = next(i for i, line in enumerate(lines) if line.startswith("hydra:"))
    return "\n".join(lines[start:end])


OmegaConf.register_new_resolver("bcc.options", _options, replace=True)
_INSTANTIATE_KEYS = {"_target_", "_partial_", "_recursive_", "_convert_", "_args_"}
_FOLD_RANGE = re.compile(r"^(\+{0,2}fold)=(\d+)-(\d+)$")
_STAGES = re.compile(r"^(\+{0,2}stage)=((?:\d+|all|'\d+'|\"\d+\")(?:,(?:\d+|all|'\d+'|\"\d+\"))*)$")


def normalize_overrides(args: Sequence[str]) -> list[str]:
    """Rewrite the shorthands Hydra cannot read as meant.

    ``fold=0-4`` → ``fold=range(0,5)`` (a sweep of 0..4, inclusive); ``stage=1,2,3`` → ``stage='1','2','3'``
    (stage is a config group and Hydra only accepts string names for groups).
    """
    out = []
    for a in args:
        m = _FOLD_RANGE.match(a)
        if m:
            lo, hi = int(m.group(2)), int(m.group(3))
            if hi < lo:
                raise UsageError(f"{a}: the range must go up, e.g. fold=0-4")
            a = f"{m.group(1)}=range({lo},{hi + 1})"
        m = _STAGES.match(a)
        if m:
            names = [t.strip("'\"") for t in m.group(2).split(",")]
            a = f"{m.group(1)}=" + ",".join(n if n == "all" else f"'{n}'" for n in names)
        out.append(a)
    return out


def override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def with_override(overrides: Sequence[str], key: str, value) -> list[str]:
    """`overrides` with `key` set to `value` (replacing any earlier setting)."""
    return [o for o in overrides if override_key(o) != key] + [f"{key}={value}"]


def _parameters(target: str) -> set[str] | None:
    """Keyword parameters `target` accepts, or None when it takes ``**kwargs`` (anything goes)."""
    from hydra.utils import get_object

    sig = inspect.signature(get_object(target))  # a class: its __init__ without self
    params = sig.parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params if p.kind is not inspect.Parameter.VAR_POSITIONAL}


def check_targets(cfg: DictConfig, keys: Iterable[str], given: Mapping[str, Iterable[str]] | None = None) -> None:
    """Every key under the ``_target_`` nodes `keys` (dotted) must be a parameter of its target.

    `given`: per node, the arguments the caller passes itself at ``instantiate`` time (never in the yaml).
    Interpolations are not resolved: a check, not a build.
    """
    given = given or {}
    for key in keys:
        node = OmegaConf.select(cfg, key)
        if OmegaConf.is_config(node):  # null or false: a switched-off node
            _check_node(OmegaConf.to_container(node, resolve=False), key, set(given.get(key, ())))


def _check_node(node, path: str, given: set[str]) -> None:
    if isinstance(node, list):
        for i, item in enumerate(node):
            _check_node(item, f"{path}[{i}]", set())
        return
    if not isinstance(node, dict):
        return
    if "_target_" in node:
        params = _parameters(str(node["_target_"]))
        if params is not None:
            unknown = sorted(set(node) - params - _INSTANTIATE_KEYS)
            if unknown:
                raise UsageError(
                    f"unknown config key{'s' if len(unknown) > 1 else ''} "
                    f"{', '.join(f'{path}.{k}' for k in unknown)} ({node['_target_']} takes "
                    f"{', '.join(sorted(params - given))}); fix the override or the experiment file")
    for k, v in node.items():
        if k not in _INSTANTIATE_KEYS:
            _check_node(v, f"{path}.{k}", set())


_ABSENT = object()


@dataclass(frozen=True)
class Range:
    """What a numeric option accepts: its kind (``int`` or ``float``) and bounds, closed unless said open; or a
    switch (``bool``: true or false, never a string such as ``flase``, which Python would take as true).

    Hydra types a value by how it is written and checks no bounds: ``stage.lr=-1`` trains by gradient
    ascent, ``stage.max_epochs=-1`` forever, ``data.image_size=100000`` runs out of memory minutes
    later. Each command declares its options' ranges in one table beside its keys, checked with the
    config before anything is written."""

    kind: type
    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False
    nullable: bool = False
    words: tuple[str, ...] = ()  # other values taken as they are (e.g. ``eval.thresholds=val``)
    why: str = ""

    def describe(self) -> str:
        def num(x: float) -> str:
            return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"

        if self.kind is bool:
            return "true or false" + (", or null" if self.nullable else "")
        what = "a whole number" if self.kind is int else "a number"
        if self.low > -math.inf and self.high < math.inf:
            what += f" in {'(' if self.low_open else '['}{num(self.low)}, {num(self.high)}{')' if self.high_open else ']'}"
        elif self.low > -math.inf:
            what += f" {'>' if self.low_open else '≥'} {num(self.low)}"
        elif self.high < math.inf:
            what += f" {'<' if self.high_open else '≤'} {num(self.high)}"
        extra = [*(repr(w).strip("'") for w in self.words), *(["null"] if self.nullable else [])]
        return what + (f", or {' or '.join(extra)}" if extra else "") + (f" ({self.why})" if self.why else "")

    def accepts(self, value) -> bool:
        if value is None:
            return self.nullable
        if isinstance(value, str) and value in self.words:
            return True
        if self.kind is bool or isinstance(value, bool):
            return isinstance(value, bool) and self.kind is bool
        if not isinstance(value, (int, float)):
            return False
        if self.kind is int and not isinstance(value, int):
            return False
        v = float(value)
        if math.isnan(v) or (v < self.low if not self.low_open else v <= self.low):
            return False
        return v <= self.high if not self.high_open else v < self.high


def check_ranges(cfg: DictConfig, ranges: Mapping[str, Range],
                 fix: str = "fix the override or the experiment file") -> None:
    """Raise ``UsageError`` naming the first option (dotted key) outside its declared range."""
    for key, rng in ranges.items():
        try:
            node = OmegaConf.select(cfg, key, default=_ABSENT, throw_on_missing=True)
        except OmegaConfBaseException:  # ??? or an interpolation into a node this config does not have
            continue
        if node is _ABSENT:
            continue
        value = node if not OmegaConf.is_config(node) else OmegaConf.to_container(node, resolve=True)
        if not rng.accepts(value):
            shown = "null" if value is None else value
            raise UsageError(f"{key}={shown}: expected {rng.describe()}; {fix}")
