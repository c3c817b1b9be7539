"""Shared fixtures.  The helpers behind them live in tests/support/ (see its __init__)."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.configs import REPO, TINY, cifar_root, require_cifar, tiny_config  # noqa: F401 - `from conftest import REPO, ...`


def pytest_collection_modifyitems(items):
    """A test that needs the Slurm cluster is slow too: it waits for real jobs (pyproject's markers)."""
    for item in items:
        if item.get_closest_marker("slurm") and not item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Each test starts with one torch thread, whatever ran before it (a training sets its own): the tests'
    tensors are tiny, and on a loaded 2-core machine two spinning OpenMP threads made a step up to 20x slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny_cfg(tmp_path):
    """Build a tiny config writing under this test's tmp_path; extra overrides win over TINY."""

    def make(*overrides: str):
        return tiny_config(tmp_path / "runs", *overrides)

    return make


@pytest.fixture(scope="session")
def forkserver():
    """A fork server (support/forkserver.py): real classbench processes without paying torch's import each time."""
    from support.forkserver import ForkServer

    fs = ForkServer()
    yield fs
    fs.close()


@pytest.fixture(scope="session")
def runs_dir(tmp_path_factory) -> Path:
    """A runs folder of real tiny runs plus damaged copies (support/runs.py), built once per session."""
    from support.runs import build_runs

    return build_runs(tmp_path_factory.mktemp("analysis"))


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A real tmpfs of 4 MiB (support/disks.py; skips without root and mount)."""
    from support.disks import mounted_tmpfs

    yield from mounted_tmpfs(tmp_path / "tmpfs", "4m")


@pytest.fixture
def full_disk(tmp_path):
    """A real tmpfs of 1 MiB holding empty logs/ and runs/ folders, filled to the last byte."""
    from support.disks import fill, mounted_tmpfs

    for mnt in mounted_tmpfs(tmp_path / "full", "1m"):
        (mnt / "logs").mkdir()
        (mnt / "runs").mkdir()
        fill(mnt / "filler")
        yield mnt


@pytest.fixture
def cifar10() -> Path:
    """The folder that holds real CIFAR-10 (skips, or fails under CI, without it)."""
    return require_cifar()
