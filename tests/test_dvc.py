"""The project's DVC setup: data/ versioned without bcc's derived caches, and a pulled copy bcc can train on."""
import filecmp
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from bcc.data.cache import decoded_images
from bcc.data.table import read_table

DVC = [sys.executable, "-m", "dvc"]
PROJECT = Path(__file__).parents[1]


def dvc(*args, cwd):
    return subprocess.run([*DVC, *args], cwd=cwd, check=True, capture_output=True, text=True)


@pytest.mark.slow
def test_a_pulled_dataset_is_the_data_without_bccs_caches(tmp_path, data_dir):
    """With the project's .dvcignore, `dvc add data` leaves what bcc writes for itself out of the version (the
    decoded-image cache .cache/, the folder's owner record .bcc-owner.json), and what `dvc pull` brings back
    reads as the same table, labels and folds included."""
    repo, remote = tmp_path / "repo", tmp_path / "remote"
    root = repo / "data" / "tiny"
    shutil.copytree(data_dir / "synthetic-smoke", root)  # with the labels.csv and splits.csv bcc derived
    table = read_table(root)
    decoded_images(root, list(table["image"]), 16, disk_cache=True, workers=1)
    assert any((root / ".cache").iterdir())  # bcc wrote its cache into the dataset
    reference = tmp_path / "reference"
    shutil.copytree(repo / "data", reference)
    shutil.copy(PROJECT / ".dvcignore", repo / ".dvcignore")
    dvc("init", "--no-scm", "-q", cwd=repo)
    dvc("remote", "add", "-d", "tmp", str(remote), cwd=repo)
    dvc("add", "data", cwd=repo)
    dvc("push", cwd=repo)
    shutil.rmtree(repo / "data")
    shutil.rmtree(repo / ".dvc" / "cache")
    dvc("pull", cwd=repo)
    pulled = repo / "data" / "tiny"
    assert not (pulled / ".cache").exists()
    cmp = filecmp.dircmp(reference / "tiny", pulled)
    assert sorted(cmp.left_only) == [".bcc-owner.json", ".cache"] and not cmp.right_only and not cmp.diff_files
    pd.testing.assert_frame_equal(read_table(pulled), table)


def test_the_project_pushes_to_its_default_remote_beside_the_repository():
    """README "Versioning data with DVC": the default remote is `local`, ../bcc-dvc-storage."""
    assert dvc("remote", "default", cwd=PROJECT).stdout.strip() == "local"
    name, url = dvc("remote", "list", cwd=PROJECT).stdout.split()[:2]
    assert name == "local" and (PROJECT / ".dvc" / url).resolve() == (PROJECT.parent / "bcc-dvc-storage").resolve()
