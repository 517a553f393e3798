"""bcc's lines go through stdlib logging (bcc.core.log) and read on the terminal as they did when printed;
under DDP only rank 0 says them, while every rank still reports its own failure."""
from __future__ import annotations

import logging

import pytest

from bcc.core.log import RANK_VARIABLES, get_logger, rank
from tests.helpers.datasets import make_dataset


@pytest.fixture
def single_process(monkeypatch):
    for key in RANK_VARIABLES:
        monkeypatch.delenv(key, raising=False)


def test_a_commands_lines_keep_their_text_and_stream(tmp_path, capsys, single_process):
    """bcc.folds' table on stdout exactly as its print wrote it (no level or logger name in front), its
    refusal on stderr as one line, and nothing else on either stream."""
    from bcc.data.folds import main

    root = make_dataset(tmp_path / "ds", n=30)
    assert main([str(root), "--k", "2"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith(f"2-fold multilabel-stratified split (seed 0) → {root / 'splits.csv'}\n\n       images")
    assert out.splitlines()[-1].split()[:2] == ["total", "30"] and err == ""
    assert main([str(tmp_path / "nosuch")]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith(f"bcc.folds: error: {tmp_path / 'nosuch'}: dataset directory not found")
    assert err.count("\n") == 1


def test_an_input_warning_is_one_line_on_stderr(tmp_path, capsys, single_process):
    from bcc.data.merge import main

    root = make_dataset(tmp_path / "ds", n=6)
    assert main([str(root), str(root), "--names", "a,b", "--out", str(tmp_path / "m")]) == 0
    out, err = capsys.readouterr()
    assert out == f"{tmp_path / 'm'}: 12 images from 2 datasets\n"
    assert err.startswith(f"warning: {tmp_path / 'm' / 'images.csv'}: 6 picture(s) appear under more than one "
                          f"image_id") and err.count("\n") == 1


@pytest.mark.parametrize("variable", RANK_VARIABLES)
def test_a_ddp_rank_other_than_0_stays_quiet_but_says_its_failure(variable, tmp_path, capsys, monkeypatch,
                                                                   single_process):
    """With the rank torchrun, Lightning or SLURM set in the environment: rank 1 prints neither the table
    nor the warning a command makes, and its failure line comes with its rank; rank 0 says everything."""
    from bcc.data.folds import main

    root = make_dataset(tmp_path / "ds", n=30)
    monkeypatch.setenv(variable, "1")
    assert rank() == 1
    assert main([str(root), "--k", "2"]) == 0
    assert capsys.readouterr() == ("", "")
    get_logger("bcc.test").warning("warning: something about the input")
    assert capsys.readouterr() == ("", "")
    assert main([str(tmp_path / "nosuch")]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("[rank: 1] bcc.folds: error: ")
    monkeypatch.setenv(variable, "0")
    assert main([str(root), "--k", "2"]) == 0
    assert capsys.readouterr().out.startswith("2-fold multilabel-stratified split")


def test_the_global_rank_comes_first(monkeypatch, single_process):
    """torchrun over two nodes: the second node's first process is RANK 2, LOCAL_RANK 0, and is not rank 0."""
    assert rank() == 0
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("RANK", "2")
    assert rank() == 2


def test_a_line_is_printed_once_under_hydras_job_logging(capsys, single_process):
    """The training config's ``hydra/job_logging: stdout`` gives the root logger a console of its own; bcc's
    records do not reach it, so a line inside a Hydra job shows once, as printed."""
    from bcc.core.cli import hydra_command

    def task(cfg) -> None:
        get_logger("bcc.test").info("[bcc] one line")

    assert hydra_command("bcc.test", "config", task, []) == 0
    assert capsys.readouterr().out == "[bcc] one line\n"
    assert logging.getLogger().handlers  # Hydra's console is there: the line did not go through it


def test_a_module_run_with_python_m_logs_under_its_own_name(monkeypatch):
    """``python -m bcc.data.merge`` runs the module as ``__main__``; its logger is still bcc's."""
    import sys
    import types

    main = types.ModuleType("__main__")
    main.__spec__ = types.SimpleNamespace(name="bcc.data.merge")  # type: ignore[assignment]
    monkeypatch.setitem(sys.modules, "__main__", main)
    assert get_logger("__main__").name == "bcc.data.merge"
