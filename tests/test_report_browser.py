"""The HTML report renders in a real browser (headless Chromium), offline.

Skipped only on a machine without chromium that is not CI; in CI (where
chromium is installed) a missing binary is a failure, not a skip.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest

from classbench.cli import main

from support.runs import build_runs

WINDOW = (1280, 2000)


def _chromium() -> str:
    path = shutil.which("chromium") or (("/usr/bin/chromium") if os.path.exists("/usr/bin/chromium") else None)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed, but CI must run the report render test (apt-get install chromium)")
        pytest.skip("chromium not installed (apt-get install chromium); CI runs this test")
    return path


def _chrome(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [
        binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", "--hide-scrollbars", f"--window-size={WINDOW[0]},{WINDOW[1]}", *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("browser")
    runs = build_runs(base)
    out = base / "report.html"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["report", str(runs), "-o", str(out)]) == 0
    return runs, out


@pytest.mark.slow  # spawns a browser
def test_report_renders_in_chromium(report, tmp_path):
    from PIL import Image

    binary = _chromium()
    runs, html_path = report
    url = html_path.resolve().as_uri()

    shot = tmp_path / "report.png"
    res = _chrome(binary, tmp_path / "profile1", f"--screenshot={shot}", url)
    assert shot.is_file(), res.stderr[-2000:]
    with Image.open(shot) as im:
        assert im.size == WINDOW
        px = np.asarray(im.convert("RGB"), dtype=np.float32)
    assert px.std() > 20, "screenshot is blank"
    # the dark header band and a mostly white page: the CSS was applied
    assert px[:40].mean() < 100 and px.mean() > 150

    res = _chrome(binary, tmp_path / "profile2", "--dump-dom", url)
    dom = res.stdout
    assert res.returncode == 0 and "<table" in dom, res.stderr[-2000:]
    summary = re.search(r'<table id="summary-table".*?</table>', dom, re.S)
    assert summary, "summary table missing from the rendered DOM"
    rows = re.findall(r'<tr class="run-row[^"]*" data-run="([^"]+)"', summary.group(0))
    expected = sorted(p.relative_to(runs).as_posix() for p in runs.glob("synthetic/*/*"))
    assert sorted(rows) == expected and len(rows) == 5
    assert dom.count("data:image/png;base64,") >= 4
    assert "confusion-matrix" in dom
