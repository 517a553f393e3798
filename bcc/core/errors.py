"""The errors every command maps to an exit code: 2 = bad input or usage, 1 = a failure while running.

A module raises a subclass of :class:`BadInput` when the user can fix the cause (a file, a key, a
path, an argument); the message names what is wrong and what to do. Anything else that escapes a
command is a failure while running. ``bcc.core.cli`` turns both into the exit code and one message.
"""
from __future__ import annotations


class BadInput(ValueError):
    """The input or the usage is wrong (exit code 2); the message names the file, key or row and the fix."""


class UsageError(BadInput):
    """A command line or configuration the command cannot run with."""


class InputWarning(UserWarning):
    """Something about the input that is allowed but worth knowing; a command prints it as one line,
    ``warning: <message>``, and goes on (``bcc.core.cli.run_command``)."""


class Interrupted(Exception):
    """The work was stopped by a signal; the exit code is 128 + the signal's number (as a shell reports it)."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum = int(signum)
