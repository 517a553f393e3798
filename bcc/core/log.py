"""bcc's progress and diagnostic lines through stdlib :mod:`logging`, read on the terminal as they were printed.

Each module takes ``log = get_logger(__name__)``, a child of the ``bcc`` logger. The command runners
(:mod:`bcc.core.cli`) call :func:`configure`, which gives ``bcc`` one :class:`Console` handler: the message
alone (no ``INFO:root:``), INFO on stdout and WARNING and above on stderr. A line keeps the stream it had
as a ``print``: the ``warning: …`` lines that always went to stdout (``bcc.predict``'s large images,
``bcc.export``'s unchecked int8) are INFO; the input warnings and the failure lines were on stderr and are
WARNING and ERROR. ``bcc`` does not pass its records on to the root logger, where Hydra's job logging would
print them a second time. Called outside a command (a test, a notebook) the INFO lines stay silent until
:func:`configure` is called, as a library's should.

Under DDP every process runs the same code. After lightning-hydra-template's ``RankedLogger``, a logger from
:func:`get_logger` emits progress lines and warnings on rank 0 only, the rank read from the environment
variables torchrun, Lightning's launcher and SLURM set (in the order Lightning's ``rank_zero_only`` reads
them); an error is emitted on every rank, prefixed ``[rank: n]`` beyond rank 0, since a failure may be one
process's alone.

``print`` stays where the output is the product itself: ``python -m bcc.review user list`` prints the
reviewers' names, and Hydra and argparse print ``--help`` and their own usage errors.
"""
from __future__ import annotations

import logging
import os
import sys

ROOT = "bcc"

#: Where a process's global rank is found, first one set wins (Lightning's ``rank_zero_only`` order).
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")


def rank() -> int:
    """This process's global rank under DDP (torchrun, Lightning's launcher, SLURM); 0 in a single process."""
    for key in RANK_VARIABLES:
        value = os.environ.get(key)
        if value is not None:
            return int(value)
    return 0


class RankZero(logging.Filter):
    """Rank 0's records; another rank's errors only, with the rank in front. The rank is read per record:
    a process learns it from its environment, which a test may change after the loggers were made."""

    def filter(self, record: logging.LogRecord) -> bool:
        r = rank()
        if r == 0:
            return True
        if record.levelno < logging.ERROR:
            return False
        record.msg = f"[rank: {r}] {record.msg}"
        return True


_RANK_ZERO = RankZero()


def get_logger(name: str) -> logging.Logger:
    """The logger of module `name` (``__name__``, under ``bcc``), quiet on DDP ranks other than 0. A module
    run as ``python -m bcc.<module>`` is named ``__main__``: its logger takes the module's own name."""
    if name == "__main__":
        name = getattr(sys.modules["__main__"].__spec__, "name", ROOT)
    logger = logging.getLogger(name)
    if _RANK_ZERO not in logger.filters:
        logger.addFilter(_RANK_ZERO)
    return logger


class Console(logging.Handler):
    """The message alone: INFO on stdout, WARNING and above on stderr. The stream is looked up for each
    record, as ``print`` did, so a redirected or captured ``sys.stdout`` (pytest's ``capsys``) receives it."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stream = sys.stderr if record.levelno >= logging.WARNING else sys.stdout
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:  # noqa: BLE001 - logging's own convention: report through handleError, never raise
            self.handleError(record)


def configure() -> logging.Logger:
    """Give the ``bcc`` logger its console (once per process; calling again changes nothing), at INFO, not
    propagating to the root logger. Hydra's job logging, configured before each job, leaves it as it is
    (``disable_existing_loggers: false`` in every preset bcc uses)."""
    logger = logging.getLogger(ROOT)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    if not any(isinstance(h, Console) for h in logger.handlers):
        logger.addHandler(Console())
    return logger
