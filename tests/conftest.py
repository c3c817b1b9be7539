"""Shared fixtures.  The helpers behind them live in tests/support/ (see its __init__)."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

# Cache the compiled test modules and classbench's own: this project's machines export
# PYTHONDONTWRITEBYTECODE=1, which made every run compile and assertion-rewrite ~120 modules again
# (collection 12 s -> 5 s on 2 cores, measured 2026-12-02).  __pycache__/ is git-ignored.
sys.dont_write_bytecode = False

from support.configs import REPO, TINY, cifar_root, require_cifar, tiny_config  # noqa: F401 - `from conftest import REPO, ...`

# A shell starts background jobs (`make test &`, `nohup ... &`) with SIGINT ignored, and every child
# inherits that; classbench rightly leaves an ignored SIGINT ignored, so the tests that Ctrl-C a real run
# would see it carry on.  They test Ctrl-C at a terminal: restore the default for this process's children.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


#: The quick loop's mark expression, which runs on every core it can have (up to 2) by default.
QUICK_LOOP = "not slow"


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config):
    """`pytest -m "not slow"` spreads its tests over 2 worker processes (pytest-xdist), one per core: each
    test runs with one torch thread (below), so one process left a core idle.  Only the quick loop: the
    slow tests time real runs, hold a Slurm cluster or kill processes, and stay in one process.  `-n 0`
    (or `-p no:xdist`) turns it off; an explicit `-n N` wins."""
    opt = config.option
    if (getattr(opt, "markexpr", "").split() != QUICK_LOOP.split() or getattr(opt, "numprocesses", 0) is not None
            or not config.pluginmanager.hasplugin("xdist") or hasattr(config, "workerinput")
            or os.environ.get("PYTEST_XDIST_WORKER") or opt.collectonly or getattr(opt, "usepdb", False)):
        return
    # pyproject's addopts give --dist loadfile (workers re-read the command line, not this option): each
    # test file runs on one worker, so a module fixture that trains a run is built once.
    if len(os.sched_getaffinity(0)) >= 2:
        opt.numprocesses = 2


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
