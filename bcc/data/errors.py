"""What the dataset tools say about a dataset or a release: a refusal, or a warning.

A :class:`DatasetError` stops the tool (exit code 2) naming the file, the line and the fix. What is allowed
but worth knowing (the same picture under two ids, a PH2 case without a lesion mask) is a
:class:`DatasetWarning`, issued through :func:`warn`: a library caller can filter or record it
(``warnings``, ``pytest.warns``), and the commands print it as one ``warning: <message>`` line
(``bcc.core.cli.run_command``).
"""
from __future__ import annotations

import warnings

from bcc.core.errors import BadInput, InputWarning

__all__ = ["DatasetError", "DatasetWarning", "warn"]


class DatasetError(BadInput):
    """A dataset file breaks the contract; the message says where and how to fix it."""


class DatasetWarning(InputWarning):
    """Something about a dataset that is allowed but worth knowing (the same picture under two ids)."""


def warn(message: str, category: type[DatasetWarning] = DatasetWarning) -> None:
    """Issue `message` as a dataset warning, attributed to the code that called the function finding it."""
    warnings.warn(message, category, stacklevel=3)
