"""The table of bad inputs: every way a user can hand bcc something wrong, and what bcc must answer.

Each ``cases_<area>.py`` holds ``CASES``, a list of :class:`~tests.bad_inputs.case.Case`: how to spoil
a fresh workspace, the command line, the exit code (2 = bad input or usage, 1 = failure while running)
and a regular expression the message must match. ``tests/test_bad_inputs.py`` runs them all in-process
and also checks that no traceback is printed and — unless the case says otherwise — that nothing was
written. To add a case, add a row to the right table.
"""
