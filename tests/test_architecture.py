"""The package's dependency order (docs/architecture.md): every module imports only layers below its own.

    core ← data ← models ← training, explanation ← evaluation, deploy ← cli, review ← the `python -m bcc.<command>`
    entry modules

Read from the source with ``ast`` (function-level imports included), so an import hidden inside a function
cannot run against the order either; and every module must import cleanly.
"""
from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "bcc"
RANK = {"core": 0, "data": 1, "models": 2, "training": 3, "explanation": 3, "evaluation": 4, "deploy": 4, "cli": 5,
        "review": 5}
ENTRY = 6  # bcc/<command>.py: the `python -m bcc.<command>` entry points


def _modules() -> dict[str, Path]:
    out = {}
    for f in sorted(PACKAGE.rglob("*.py")):
        parts = list(f.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def _layer(module: str) -> tuple[str, int]:
    parts = module.split(".")
    if len(parts) == 1:
        return "bcc", -1  # the package face: imports nothing
    if parts[1] in RANK:
        return parts[1], RANK[parts[1]]
    return parts[1], ENTRY


def _bcc_imports(path: Path) -> list[tuple[str, int, bool]]:
    """(imported bcc module, line, inside a function) for every import of the file."""
    tree = ast.parse(path.read_text(), str(path))
    found: list[tuple[str, int, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend((a.name, child.lineno, inside) for a in child.names if a.name.startswith("bcc"))
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and (child.module or "").startswith("bcc"):
                found.append((child.module, child.lineno, inside))
            visit(child, inside)

    visit(tree, False)
    return found


MODULES = _modules()


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_follow_the_layer_order(module):
    layer, rank = _layer(module)
    for target, line, in_function in _bcc_imports(MODULES[module]):
        where = f"{MODULES[module].relative_to(PACKAGE.parent)}:{line} imports {target}"
        assert not in_function, f"{where} inside a function: import at module level (the order is checked there)"
        t_layer, t_rank = _layer(target)
        assert t_layer == layer or t_rank < rank, (
            f"{where}: {layer} (layer {rank}) may import only layers below it, not {t_layer} (layer {t_rank})")


def test_every_module_imports():
    for module in MODULES:
        if not module.endswith("__main__"):
            importlib.import_module(module)


def test_the_check_catches_an_upward_and_a_hidden_import(tmp_path):
    """The rule is not vacuous: a data module importing training, and one hiding it in a function."""
    bad = tmp_path / "m.py"
    bad.write_text("from bcc.training.protocol import run\n\ndef f():\n    from bcc.cli import train\n")
    found = _bcc_imports(bad)
    assert [(t, inside) for t, _, inside in found] == [("bcc.training.protocol", False), ("bcc.cli", True)]
    assert _layer("bcc.training.protocol")[1] > _layer("bcc.data.table")[1]



def test_the_documented_import_table_is_the_code():
    """docs/architecture.md's table "subpackage | imports" lists exactly the subpackages each one imports."""
    import re

    doc = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    rows = re.finditer(r"^\| `(\w+)` \| ((?:`\w+`(?:, )?)+|–) \|$", doc, re.MULTILINE)
    documented = {m[1]: set(re.findall(r"`(\w+)`", m[2])) for m in rows}
    actual: dict[str, set[str]] = {layer: set() for layer in RANK}
    for module, path in MODULES.items():
        layer = _layer(module)[0]
        if layer in RANK:
            actual[layer] |= {_layer(t)[0] for t, _, _ in _bcc_imports(path)} - {layer}
    assert documented == actual


def _test_imports(source: str) -> list[tuple[str, int]]:
    """(imported ``tests.test_*`` module, line) for every import in a test file's `source`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names if a.name.startswith("tests.test_")]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tests.test_"):
            found.append((node.module, node.lineno))
    return found


def test_no_test_module_imports_another():
    """Shared test code lives in tests/helpers/ or conftest.py: a test module importing another runs (and
    collects) the other's module-level code and hides what the shared code is for."""
    assert _test_imports("from tests.test_explain import make_net\ndef f():\n    import tests.test_predict\n") == [
        ("tests.test_explain", 1), ("tests.test_predict", 3)]  # the check sees both forms
    here = Path(__file__).resolve().parent
    bad = [f"{f.relative_to(here.parent)}:{line} imports {m}" for f in sorted(here.rglob("*.py"))
           for m, line in _test_imports(f.read_text())]
    assert not bad, "move the shared code to tests/helpers/: " + "; ".join(bad)


# packages only: alembic's script folders (bcc/review/migrations) hold scripts alembic loads by path
@pytest.mark.parametrize("package", sorted({m.rsplit(".", 1)[0] for m in MODULES if m.count(".") >= 2
                                            and (PACKAGE.parent / Path(*m.split(".")[:-1]) / "__init__.py").is_file()}))
def test_every_subpackage_states_its_public_modules(package):
    """A subpackage's ``__all__`` names its modules and subpackages (``__main__`` aside): a newcomer reads what
    is in it from its ``__init__``, and a module added without being listed fails here."""
    folder = PACKAGE.parent.joinpath(*package.split("."))
    present = {p.stem for p in folder.glob("*.py") if p.stem not in ("__init__", "__main__")}
    present |= {p.name for p in folder.iterdir() if (p / "__init__.py").is_file()}
    declared = importlib.import_module(package).__all__
    if package == "bcc.data.synthetic":  # a package whose face is its functions (generate, render, summary)
        assert all(callable(getattr(importlib.import_module(package), n)) for n in declared)
        return
    assert sorted(declared) == sorted(present)
