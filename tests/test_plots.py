"""The curve figures of runs and of arms share their x axis and set-up (classbench.compare.plots)."""

from __future__ import annotations

import pytest

from classbench.compare import plots
from classbench.compare.comparison import build_comparison
from classbench.errors import ClassbenchError
from test_compare import fake_run, load


@pytest.fixture
def arms_over_20_minutes(tmp_path):
    runs = tmp_path / "runs"
    for name, extra in (("wide", ["model.args={width: 16}"]), ("narrow", [])):
        for seed in range(2):
            fake_run(runs, name, seed, 0.8, *extra, val_curve=[(60.0, 0.5), (600.0, 0.7), (1200.0, 0.8)])
    return load(runs)


def test_both_curve_figures_reject_an_unknown_x_alike():
    with pytest.raises(ClassbenchError) as runs_error:
        plots.curve_figure([], "top1", x="hours")
    with pytest.raises(ClassbenchError) as arms_error:
        plots.arm_curve_figure([], "top1", x="hours")
    assert str(runs_error.value) == str(arms_error.value) == "--x must be one of step, epoch, time; got 'hours'."


@pytest.mark.parametrize("x,max_x,expected", [("step", 5000.0, (1.0, "optimizer step")), ("epoch", 3.0, (1.0, "epoch")),
                                              ("time", None, (1.0, "wall time (s)")), ("time", 179.0, (1.0, "wall time (s)")),
                                              ("time", 1200.0, (60.0, "wall time (min)")),
                                              ("time", 4 * 3600.0, (3600.0, "wall time (h)"))])
def test_x_axis_unit(x, max_x, expected):
    assert plots._x_axis(x, max_x) == expected


@pytest.mark.slow  # over a second on 2 quiet cores (2026-12-02); the quick loop keeps the cheaper tests
def test_run_and_arm_figures_label_time_in_the_same_unit(arms_over_20_minutes, monkeypatch):
    """Runs whose last evaluation is at 20 minutes: both figures show minutes, labelled the same way."""
    seen = []
    label = plots._label_curve_axes
    monkeypatch.setattr(plots, "_label_curve_axes", lambda ax, metric, title, xlabel: (seen.append((metric, xlabel)),
                                                                                        label(ax, metric, title, xlabel)))
    png = plots.curve_figure(arms_over_20_minutes, "top1", x="time")
    arm_png = plots.arm_curve_figure(build_comparison(arms_over_20_minutes).arms, "top1", x="time")
    assert png.startswith(b"\x89PNG") and arm_png.startswith(b"\x89PNG")
    assert seen == [("top1", "wall time (min)"), ("top1", "wall time (min)")]
