"""The public Python API (#13.4): functions at the package top, cheap to import, and docs/api.md runs as written."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from conftest import REPO


def _python(code: str) -> str:
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_import_classbench_stays_cheap_and_config_imports_no_model_code():
    out = _python(
        "import sys, classbench\n"
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('classbench.models')))\n"
        "import classbench.config\n"
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('classbench.models')))\n"
        "print(callable(classbench.load_config), callable(classbench.train), callable(classbench.load_model))\n"
    )
    assert out.splitlines() == ["[]", "[]", "True True True"]


@pytest.mark.slow  # a fresh interpreter that imports torch
def test_subpackages_load_on_first_use_and_train_stays_the_package_too():
    out = _python(
        "import classbench\n"
        "print('resnet20' in classbench.models.list_models())\n"   # AttributeError before #13.4
        "import classbench.train.trainer\n"                        # must not rebind classbench.train
        "print(callable(classbench.train), classbench.train.trainer.Trainer.__name__)\n"
        "from classbench.train import optim\n"
        "print(optim.Schedule.__name__)\n"
    )
    assert out.splitlines() == ["True", "True Trainer", "Schedule"]


def test_every_public_function_has_a_docstring():
    import classbench

    for name in classbench.__all__:
        if name == "__version__":
            continue
        obj = getattr(classbench, name)
        assert callable(obj) and (obj.__doc__ or "").strip(), name


def test_unknown_attribute_is_a_clear_attribute_error():
    import classbench

    with pytest.raises(AttributeError, match="no attribute 'nosuch'"):
        classbench.nosuch  # noqa: B018


def _doc_blocks() -> list[str]:
    text = (REPO / "docs" / "api.md").read_text(encoding="utf-8")
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


@pytest.mark.slow  # trains a run; test_load_model_applies_the_training_normalisation is the quick check of load_model
def test_docs_api_example_runs_as_written(tmp_path, monkeypatch, capsys):
    """Every python block of docs/api.md, in order, in one namespace, as a notebook would run them."""
    blocks = _doc_blocks()
    assert len(blocks) >= 3
    monkeypatch.chdir(tmp_path)
    ns: dict = {"__name__": "__notebook__"}
    for block in blocks:
        exec(compile(block, "docs/api.md", "exec"), ns)  # noqa: S102 - our own documentation
    out = capsys.readouterr().out
    run_dir = ns["run_dir"]
    assert run_dir.is_dir() and run_dir.resolve().is_relative_to(tmp_path.resolve() / "runs-notebook")
    assert "finished test top-1" in out
    probs = ns["probs"]
    assert probs.shape == (5, 4) and abs(float(probs.sum(1).mean()) - 1.0) < 1e-5
    assert "unnamed: 1 run(s), mean test top-1" in out


def test_load_model_applies_the_training_normalisation(tmp_path):
    """load_model's model on [0, 1] images equals the bare network on the loader's normalised input."""
    import torch

    import classbench
    from support.configs import TINY

    cfg = classbench.load_config(None, [*TINY, "train.steps=6", "eval.every=3", f"train.runs_dir={tmp_path}"])
    run_dir = classbench.train(cfg)
    m = classbench.load_model(run_dir)
    assert m.normalize.mean is not None and len(m.classes) == 4 and m.input_size == (3, 16, 16)
    x = torch.rand(3, *m.input_size)
    mean = torch.tensor(m.normalize.mean).view(1, 3, 1, 1)
    std = torch.tensor(m.normalize.std).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = m.model.model((x - mean) / std)
        got = m.model(x)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    assert classbench.load_model(run_dir, which="last").checkpoint.name == "last.pt"
