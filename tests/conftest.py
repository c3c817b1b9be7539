"""Shared fixtures.  The helpers behind them live in tests/support/ (see its __init__)."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.configs import REPO, TINY, cifar_root, require_cifar, tiny_config  # noqa: F401 - `from conftest import REPO, ...`


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
def cifar10() -> Path:
    """The folder that holds real CIFAR-10 (skips, or fails under CI, without it)."""
    return require_cifar()
