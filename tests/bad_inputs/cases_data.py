"""Bad inputs of the data commands (see tests/bad_inputs/__init__.py)."""
from __future__ import annotations

from tests.bad_inputs.case import Case

CASES: list[Case] = []
