"""What the CLI's stderr must look like after bad input (one ``error:`` line) or a signal (one ``stopped:`` line)."""

from __future__ import annotations


def assert_one_clean_error(code: int, err: str, *needles: str) -> str:
    assert code == 2, err
    assert "Traceback" not in err, err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error: ")]
    assert len(errors) == 1, err  # one message (warnings may precede it)
    for n in needles:
        assert n in errors[0], f"{n!r} not in {errors[0]!r}"
    return errors[0]


def assert_one_clean_stop(code: int, err: str, *needles: str) -> str:
    """A signal stop is not an error (#13.9): exit status 130, one `stopped:` line, no `error:`."""
    assert code == 130, err
    assert "Traceback" not in err and "error:" not in err, err
    stops = [ln for ln in err.strip().splitlines() if ln.startswith("stopped: ")]
    assert len(stops) == 1, err
    for n in needles:
        assert n in stops[0], f"{n!r} not in {stops[0]!r}"
    return stops[0]
