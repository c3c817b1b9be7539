"""Counts for docs/reliability.md: what a test module did (cases tried, kills survived, ...).

    COUNTS = Counts()
    _write_counts = COUNTS.fixture()     # module-level name: pytest finds it (autouse, per module)
    COUNTS.add("lock_live_run_refusals")

With ``CLASSBENCH_RELIABILITY_REPORT=path`` the counts are merged into that JSON file at the
end of the module (benchmarks/reliability_report.py runs tests/test_reliability.py first,
which starts the file).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest


class Counts(dict):
    def add(self, key: str, n: int = 1) -> None:
        self[key] = self.get(key, 0) + n

    def fixture(self, start: bool = False):
        """The module's autouse fixture; ``start=True`` replaces the file instead of merging into it."""

        @pytest.fixture(scope="module", autouse=True)
        def _write_counts():
            yield
            path = os.environ.get("CLASSBENCH_RELIABILITY_REPORT")
            if path:
                p = Path(path)
                old = json.loads(p.read_text()) if p.exists() and not start else {}
                p.write_text(json.dumps(dict(sorted({**old, **self}.items())), indent=2) + "\n")

        return _write_counts
