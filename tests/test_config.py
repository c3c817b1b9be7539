import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from classbench.cli import main
from classbench.config import load_config, parse_override
from classbench.errors import ConfigError

from conftest import REPO

DEMO = str(REPO / "configs/cifar10/resnet20.yaml")


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_overrides_apply():
    cfg = load_config(DEMO, ["optim.lr=0.05", "train.epochs=3", "eval.splits=[test]", "data.val_size=0"])
    assert cfg.optim.lr == 0.05 and cfg.train.epochs == 3 and cfg.eval.splits == ["test"]
    assert cfg.name == "resnet20" and cfg.model.name == "resnet20"


def test_unknown_key_names_key_and_closest(capsys):
    code, _, err = run_cli(capsys, "config", DEMO, "optim.lrr=0.1")
    assert code == 2
    assert "optim.lrr" in err and "'optim.lr'" in err
    assert "Traceback" not in err


def test_unknown_section(capsys):
    code, _, err = run_cli(capsys, "config", DEMO, "nosuch.key=1")
    assert code == 2 and "nosuch" in err and "optim" in err


def test_wrong_type_names_key_and_type(capsys):
    code, _, err = run_cli(capsys, "config", DEMO, "optim.lr=abc")
    assert code == 2 and "optim.lr" in err and "float" in err


def test_missing_file(capsys, tmp_path):
    code, _, err = run_cli(capsys, "config", str(tmp_path / "nope.yaml"))
    assert code == 2 and "does not exist" in err


def test_unknown_key_in_yaml_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  epochs: 1\n  batchsize: 3\n")
    with pytest.raises(ConfigError, match=r"train\.batchsize.*train\.batch_size"):
        load_config(bad)


def test_config_command_prints_resolved(capsys):
    code, out, _ = run_cli(capsys, "config", DEMO, "optim.lr=0.05")
    assert code == 0 and "lr: 0.05" in out and "name: resnet20" in out


TRAIN_ERRORS = [("optim.lr=abc", "optim.lr"), ("nosuch.key=1", "nosuch")]


@pytest.mark.parametrize("override,needle", TRAIN_ERRORS)
def test_train_errors_are_one_line_in_process(capsys, override, needle):
    """The quick check of the test below: the same commands through classbench.cli.main."""
    code, _, err = run_cli(capsys, "train", DEMO, override)
    assert code != 0
    assert needle in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.slow  # spawns processes
@pytest.mark.parametrize("override,needle", TRAIN_ERRORS)
def test_train_errors_exit_cleanly_without_traceback(override, needle):
    # The exact must-show commands, as a user types them.
    r = subprocess.run([sys.executable, "-m", "classbench", "train", DEMO, override],
                       capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode != 0
    assert needle in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1  # one paragraph


@settings(max_examples=200, deadline=None)
@given(
    key=st.from_regex(r"[a-z_][a-z0-9_]{0,8}(\.[a-z_][a-z0-9_]{0,8}){0,2}", fullmatch=True),
    value=st.one_of(st.integers(-10**9, 10**9), st.floats(allow_nan=False, allow_infinity=False, width=32),
                    st.booleans(), st.lists(st.integers(0, 100), max_size=4)),
)
@pytest.mark.slow  # over a second on 2 quiet cores (2026-12-02); the quick loop keeps the cheaper tests
def test_override_parser_roundtrips_values(key, value):
    import json

    text = json.dumps(value) if not isinstance(value, bool) else str(value).lower()
    k, v = parse_override(f"{key}={text}")
    assert k == key
    assert v == value


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_override_parser_never_crashes(text):
    # Any string either parses or raises a ConfigError: never another exception.
    try:
        parse_override(text)
    except ConfigError:
        pass


@pytest.mark.slow  # over a second on 2 quiet cores (2026-12-02); the quick loop keeps the cheaper tests
@settings(max_examples=100, deadline=None)
@given(st.text(max_size=30))
def test_load_config_with_junk_overrides_only_raises_config_errors(text):
    try:
        load_config(DEMO, [f"optim.lr={text}"])
    except ConfigError:
        pass


@pytest.mark.parametrize("overrides,needle", [
    (["data.mean=[0.5,0.5,0.5]"], "set both, or neither"),
    (["data.std=[0.5,0.5,0.5]"], "set both, or neither"),
    (["data.mean=[0.5,0.5]", "data.std=[0.5,0.5,0.5]"], "one finite value per channel"),
    (["data.mean=[0.5,0.5,0.5]", "data.std=[0.5,0,0.5]"], "every std > 0"),
    (["data.mean=[0.5,nan,0.5]", "data.std=[0.5,0.5,0.5]"], "finite"),
])
def test_fixed_normalisation_constants_are_checked(overrides, needle):
    with pytest.raises(ConfigError, match=needle):
        load_config(DEMO, overrides)
