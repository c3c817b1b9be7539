"""The quick loop's marks: ``slow`` (see pyproject's [tool.pytest.ini_options] markers) and ``params``.

``params`` keeps the cheap cases of a parametrized test in the quick loop (``pytest -m "not slow"``)
and marks the costly ones slow, so every behaviour keeps a fast check and ``make test`` still runs
every case.
"""

from __future__ import annotations

from typing import Any, Iterable

import pytest

slow = pytest.mark.slow

#: Models whose build and one train step take about a second or more on 2 cores: `make test` runs them,
#: the quick loop keeps the smaller models of each family.
BIG_MODELS = ("alexnet", "cct_7_3x1", "cvt_7_4", "googlenet", "resnet18", "resnet34", "resnet50", "resnet101",
              "resnet110", "resnet152", "vgg13", "vgg16", "vgg19", "vit_12x256_p8", "vitn_12x256_p8_dm",
              "vitn_12x256_p8_lt", "vitn_12x256_p8_ltv", "vitn_12x256_p8_ra", "xception")


def params(values: Iterable[Any], slow_cases: Iterable[Any], ids=None) -> list:
    """``values`` as ``pytest.param``s; those in ``slow_cases`` are marked slow."""
    values, costly = list(values), list(slow_cases)
    unknown = [c for c in costly if c not in values]
    assert not unknown, f"slow cases that are not cases: {unknown}"  # a renamed case must not slip into the quick loop
    out = []
    for i, v in enumerate(values):
        marks = [slow] if v in costly else []
        out.append(pytest.param(*(v if isinstance(v, tuple) else (v,)), marks=marks,
                                id=ids(v) if callable(ids) else (ids[i] if ids else None)))
    return out
