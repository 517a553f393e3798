"""One convention for every command: exit 0 = done, 2 = bad input or usage, 1 = a failure while running,
128 + n = stopped by signal n (143 for SIGTERM: the job is unfinished and the message says how to resume).

Job-like commands (train, evaluate, demo, predict, explain, export) take Hydra ``key=value`` overrides
through :func:`hydra_command`; the dataset tools (consensus, folds, synthetic, isic, merge) take
positional paths with argparse through :func:`run_command`. Either way a :class:`~bcc.core.errors.BadInput`
prints one line naming the problem and exits 2; any other exception prints its message and exits 1; an
:class:`~bcc.core.errors.InputWarning` (a dataset's, a rater's) prints one ``warning: <message>`` line.
A traceback is shown only when asked for: ``HYDRA_FULL_ERROR=1`` (or ``--debug`` for the argparse tools).
Both runners configure bcc's logging (:mod:`bcc.core.log`), through which these lines go too.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, cast

from omegaconf import DictConfig, OmegaConf

from bcc.core.config import CONF_DIR, Range, check_ranges, normalize_overrides
from bcc.core.errors import BadInput, InputWarning, Interrupted, UsageError
from bcc.core.log import configure, get_logger
from bcc.core.settings import check_schema, ranges_of

log = get_logger(__name__)

#: Hydra's own switches, which may stand anywhere on the command line.
HYDRA_SWITCHES = ("--multirun", "-m", "--run", "-r", "--resolve", "--help", "-h", "--hydra-help", "--info",
                  "--cfg", "-c", "--package", "-p")


def debug_requested() -> bool:
    return os.environ.get("HYDRA_FULL_ERROR", "") == "1"


@contextmanager
def shown_warnings() -> Iterator[None]:
    """Every :class:`InputWarning` issued in the block printed as ``warning: <message>`` on stderr (each time:
    they are about the user's input, not the code); other warnings as Python shows them."""
    with warnings.catch_warnings():
        warnings.simplefilter("always", InputWarning)
        python = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            if issubclass(category, InputWarning):
                log.warning(f"warning: {message}")
            else:
                python(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        yield


def run_command(name: str, body: Callable[[], int | None], debug: bool = False) -> int:
    """Run `body` and map its outcome to the exit-code convention (see the module docstring); bcc's lines are
    logged to the terminal while it runs (:func:`bcc.core.log.configure`)."""
    configure()
    debug = debug or debug_requested()
    try:
        with shown_warnings():
            rc = body()
        return 0 if rc is None else int(rc)
    except BadInput as e:
        if debug:
            raise
        log.error(f"{name}: error: {e}")
        return 2
    except Interrupted as e:
        log.warning(f"{name}: {e}")
        return 128 + e.signum
    except KeyboardInterrupt:
        log.warning(f"{name}: interrupted")
        return 130
    except (FileExistsError, NotADirectoryError) as e:  # an output path runs through a file, e.g. --out file/x
        if debug:
            raise
        log.error(f"{name}: error: cannot make the folder {e.filename}: a file stands where a folder is needed "
                  f"({e.strerror}); choose an output path (--out, output=) below folders only")
        return 2
    except Exception as e:
        if debug:
            raise
        log.error(f"{name}: failed: {type(e).__name__}: {e} (HYDRA_FULL_ERROR=1 shows the traceback)")
        return 1


def _hydra_argv(argv: Sequence[str]) -> list[str]:
    """Overrides may stand on both sides of ``--multirun`` (Hydra's argparse wants switches first)."""
    switches, rest, takes_value = [], [], {"--cfg", "-c", "--package", "-p"}
    args = list(argv)
    i = 0
    while i < len(args):
        a = args[i]
        if a in HYDRA_SWITCHES:
            switches.append(a)
            if a in takes_value and i + 1 < len(args):
                switches.append(args[i + 1])
                i += 1
        else:
            rest.append(a)
        i += 1
    rest = normalize_overrides(rest)
    check_globs(rest)
    return switches + rest


def check_globs(overrides: Sequence[str]) -> None:
    """An unquoted glob with brackets (``checkpoint=.../fold[0-1]/...``) is no override Hydra can read (``[``
    opens a list): refused with the quoting that passes it, instead of Hydra's grammar error."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    for o in overrides:
        key, _, value = o.partition("=")
        if not re.search(r".\[[^\]]*\]", value):  # a bracket expression inside the value, as a glob has
            continue
        try:
            parser.parse_override(o)
        except HydraException:  # the grammar's error (OverrideParseException is one)
            raise UsageError(f"{o}: Hydra reads [ ] in a value as a list, so a glob with brackets must reach it "
                             f"quoted: \"{key}='{value}'\" (the shell's quotes around "
                             f"Hydra's), or use * (e.g. fold*)") from None


def hydra_command(name: str, config_name: str, task: Callable[[DictConfig], Any],
                  argv: Sequence[str] | None = None) -> int:
    """Run `task(cfg)` as a Hydra app over ``conf/<config_name>.yaml`` with the CLI's overrides.

    What `task` returns goes back to Hydra — a sweeper such as Optuna's ranks the jobs by it (the training
    task returns its ``optimized_metric``) — while the exit code comes from how it ended. Hydra itself
    exits 1 when it cannot compose the command line (an unknown key, a missing option); that is a usage
    error here, so it becomes 2. A command-line error Hydra reports after a sweep's first job has started
    keeps Hydra's code.
    """
    import hydra

    configure()
    started = []

    @hydra.main(config_path=str(CONF_DIR), config_name=config_name, version_base="1.3")
    def _main(cfg: DictConfig) -> Any:
        started.append(True)
        returned = []
        rc = run_command(name, lambda: returned.append(task(cfg)))
        if rc:
            raise SystemExit(rc)
        return returned[0]

    saved = sys.argv
    try:
        args = _hydra_argv(sys.argv[1:] if argv is None else argv)
    except BadInput as e:
        log.error(f"{name}: error: {e}")
        return 2
    sys.argv = [name, *args]
    try:
        _main()
    except SystemExit as e:
        code = 0 if e.code is None else e.code
        if not isinstance(code, int):  # SystemExit("message"): Hydra or argparse printed nothing yet
            log.error(code)
            code = 2
        return 2 if code == 1 and not started else code
    finally:
        sys.argv = saved
    return 0


def options(cfg: DictConfig, required: Sequence[str], schema: type) -> dict:
    """The command's options as a plain dict; a required one left unset (``???``), a key its `schema` (the
    command's structured config, ``core.settings``) does not declare or a number outside the range beside its
    field is a usage error."""
    missing = [k for k in required if OmegaConf.is_missing(cfg, k) or cfg.get(k) in (None, "")]
    if missing:
        raise UsageError(f"missing {', '.join(f'{k}=' for k in missing)} (--help shows every option)")
    check_schema(cfg, schema)
    check_ranges(cfg, ranges_of(schema), fix="--help shows every option")
    return cast(dict, OmegaConf.to_container(cfg, resolve=True))


def tool_parser(command: str, description: str) -> argparse.ArgumentParser:
    """The argparse parser of a dataset tool (``python -m bcc.<command>``), with the shared ``--debug``."""
    parser = argparse.ArgumentParser(prog=f"python -m bcc.{command}", description=description)
    parser.add_argument("--debug", action="store_true", help="show the traceback of a failure")
    return parser


def ranged(rng: Range) -> Callable[[str], int | float]:
    """An argparse ``type=`` taking a number within `rng` (argparse then names the option and exits 2)."""
    def parse(text: str) -> int | float:
        try:
            value = rng.kind(text)
        except ValueError:
            value = None
        if value is None or not rng.accepts(value):
            raise argparse.ArgumentTypeError(f"{text!r}: expected {rng.describe()}")
        return value
    parse.__name__ = rng.kind.__name__  # argparse's "invalid <name> value" wording, should it show
    return parse
