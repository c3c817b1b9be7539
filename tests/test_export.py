"""predict and export on a real, overfit tiny run.

The model is trained until it classifies its training images perfectly, so
`predict` on those images saved as PNG files must name their classes.
Exports must reproduce the PyTorch model (normalisation included) to 1e-4.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from classbench.cli import main
from classbench.config import load_config
from classbench.errors import ClassbenchError

OVERFIT = [
    "name=overfit", "data.name=synthetic", "data.num_classes=4", "data.synthetic_size=64", "data.image_size=16",
    "data.val_size=0", "data.pad=0", "data.flip=false", "model.name=toy_dilated", "model.args={width: 16}",
    "optim.name=adam", "optim.lr=0.01", "optim.weight_decay=0", "train.batch_size=32", "train.steps=100",
    "train.threads=1", "train.device=cpu", "eval.every=50", "eval.splits=[test]", "log.every=25", "log.progress=never",
]

_CACHE: dict[str, object] = {}


def build_overfit(base: Path):
    """(run dir, config) of the overfit run; built once per process."""
    if "run" not in _CACHE:
        from classbench.train.trainer import train

        cfg = load_config(None, [*OVERFIT, f"train.runs_dir={base / 'runs'}"])
        _CACHE["run"] = (train(cfg), cfg)
    return _CACHE["run"]


@pytest.fixture(scope="module")
def overfit(tmp_path_factory):
    return build_overfit(tmp_path_factory.mktemp("overfit"))


@pytest.fixture(scope="module")
def train_images(overfit, tmp_path_factory):
    """Eight training images as PNG files, with their class names."""
    from PIL import Image

    from classbench.data import build_data

    _, cfg = overfit
    data = build_data(cfg.data)
    split = data.splits["train"]
    folder = tmp_path_factory.mktemp("images")
    out = []
    for i in range(8):
        arr = split.images[i].permute(1, 2, 0).numpy()
        path = folder / f"img{i}.png"
        Image.fromarray(arr).save(path)
        out.append((path, data.classes[int(split.labels[i])]))
    return out


def _reference(run_dir: Path, x: torch.Tensor) -> torch.Tensor:
    """The model's logits with the checkpoint's normalisation applied by hand."""
    from classbench.train.checkpoint import build_model_from_checkpoint, load_checkpoint

    ckpt = load_checkpoint(run_dir / "checkpoints" / "best.pt")
    model = build_model_from_checkpoint(ckpt).eval()
    mean = torch.tensor(ckpt["input"]["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(ckpt["input"]["std"]).view(1, 3, 1, 1)
    assert ckpt["input"]["mean"] is not None  # this run normalises in the loader
    with torch.no_grad():
        return model((x - mean) / std)


# ---------------------------------------------------------------- predict
@pytest.mark.slow  # over a second on 2 quiet cores (2026-12-02); the quick loop keeps the cheaper tests
def test_predict_names_training_images(overfit, train_images, capsys):
    from classbench.inference.predict import load_predictor, predict_files

    run_dir, _ = overfit
    results = predict_files(load_predictor(run_dir), [p for p, _ in train_images], topk=3)
    for res, (_, label) in zip(results, train_images):
        assert res["predictions"][0][0] == label
        assert len(res["predictions"]) == 3
        probs = [p for _, p in res["predictions"]]
        assert probs == sorted(probs, reverse=True) and 0.0 <= sum(probs) <= 1.0 + 1e-6

    path, label = train_images[0]
    assert main(["predict", str(run_dir), str(path), "--topk", "2"]) == 0
    out = capsys.readouterr().out
    assert str(path) in out and label in out and "%" in out
    assert main(["predict", str(run_dir / "checkpoints" / "best.pt"), str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data[0]["predictions"][0]["class"] == label and len(data[0]["predictions"]) == 4  # topk capped at 4 classes


def test_predict_resizes_other_sizes(overfit, train_images, tmp_path):
    from PIL import Image

    from classbench.inference.predict import load_image, load_predictor, predict_files

    run_dir, _ = overfit
    src, label = train_images[1]
    big = tmp_path / "big.jpg"
    with Image.open(src) as im:
        im.resize((64, 64), Image.Resampling.NEAREST).save(big, quality=95)
    wide = tmp_path / "wide.png"
    Image.new("RGB", (40, 20), (200, 10, 10)).save(wide)
    assert load_image(wide, (3, 16, 16)).shape == (3, 16, 16)
    res = predict_files(load_predictor(run_dir), [big, wide], topk=1)
    assert res[0]["predictions"][0][0] == label  # a 4x upscaled copy of a training image
    assert len(res[1]["predictions"]) == 1


def test_predict_user_errors(overfit, tmp_path, capsys):
    run_dir, _ = overfit
    bad = tmp_path / "not-an-image.png"
    bad.write_text("hello")
    assert main(["predict", str(run_dir), str(bad)]) == 2
    assert f"{bad}: cannot be read as an image" in capsys.readouterr().err  # the shared image reader's message
    assert main(["predict", str(run_dir), str(tmp_path / "missing.png")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["predict", str(tmp_path), str(bad)]) == 2
    assert "best.pt" in capsys.readouterr().err


# ---------------------------------------------------------------- export
@pytest.mark.slow  # the ONNX export and onnxruntime take seconds; the TorchScript test below is the quick check
def test_onnx_export_matches_torch(overfit, tmp_path, capsys):
    import onnx
    import onnxruntime as ort

    run_dir, _ = overfit
    out = tmp_path / "model.onnx"
    assert main(["export", str(run_dir), "--format", "onnx", "-o", str(out)]) == 0
    assert "max |logit difference|" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]  # no temp or external-data files left
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(meta["classes"]) == [f"class_{i}" for i in range(4)]

    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for batch in (1, 5):  # dynamic batch
        x = torch.rand(batch, 3, 16, 16, generator=torch.Generator().manual_seed(batch))
        got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
        np.testing.assert_allclose(got, _reference(run_dir, x).numpy(), atol=1e-4, rtol=0)


def test_torchscript_export_loads_and_matches(overfit, tmp_path):
    run_dir, _ = overfit
    out = tmp_path / "model.ts"
    assert main(["export", str(run_dir / "checkpoints" / "best.pt"), "--format", "torchscript", "-o", str(out)]) == 0
    extra = {"classes.json": ""}
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        loaded = torch.jit.load(str(out), _extra_files=extra)
    assert json.loads(extra["classes.json"]) == [f"class_{i}" for i in range(4)]
    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), _reference(run_dir, x), atol=1e-5, rtol=0)


@pytest.mark.slow  # over a second on 2 quiet cores (2026-12-02); the quick loop keeps the cheaper tests
def test_export_user_errors(overfit, tmp_path, monkeypatch, capsys):
    run_dir, _ = overfit
    assert main(["export", str(run_dir), "--format", "onnx", "-o", str(tmp_path / "no" / "dir" / "m.onnx")]) == 2
    assert "does not exist" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ClassbenchError, match=r"pip install classbench\[onnx\]"):
        from classbench.inference.export import export_model

        export_model(run_dir, "onnx", tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()
