"""A dataset round-trips through DVC: add → push to a remote → delete → pull gives identical files."""
import filecmp
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.datasets import make_dataset

DVC = [sys.executable, "-m", "dvc"]


def dvc(*args, cwd):
    return subprocess.run([*DVC, *args], cwd=cwd, check=True, capture_output=True, text=True)


@pytest.mark.slow
def test_dataset_round_trip_through_a_dvc_remote(tmp_path):
    repo, remote = tmp_path / "repo", tmp_path / "remote"
    repo.mkdir()
    make_dataset(repo / "data" / "tiny", n=4, raters=2)
    reference = tmp_path / "reference"
    shutil.copytree(repo / "data", reference)
    dvc("init", "--no-scm", "-q", cwd=repo)
    dvc("remote", "add", "-d", "tmp", str(remote), cwd=repo)
    dvc("add", "data", cwd=repo)
    assert (repo / "data.dvc").is_file()
    dvc("push", cwd=repo)
    shutil.rmtree(repo / "data")
    shutil.rmtree(repo / ".dvc" / "cache")
    dvc("pull", cwd=repo)
    cmp = filecmp.dircmp(reference / "tiny", repo / "data" / "tiny")
    assert not cmp.diff_files and not cmp.left_only and not cmp.right_only
    assert filecmp.cmp(reference / "tiny/images/im3.png", repo / "data/tiny/images/im3.png", shallow=False)


def test_project_dvc_config_names_a_default_remote():
    config = (Path(__file__).parents[1] / ".dvc" / "config").read_text()
    assert "remote = local" in config and "bcc-dvc-storage" in config
