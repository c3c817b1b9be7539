"""One evaluation path: the trainer's evaluate, TTA, and checkpoint evaluation for eval, report, predict."""

from __future__ import annotations

import json

import pytest
import torch

from classbench.data.loader import DeviceLoader, Normalize
from classbench.data.types import Split
from classbench.runfolder import RunFolder
from classbench.train.evaluate import evaluate


class _Asymmetric(torch.nn.Module):
    """Logits from the left half of the image only, so a horizontal flip changes them."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.w = torch.nn.Parameter(torch.randn(classes, 3 * 8 * 4, generator=g))

    def forward(self, x):
        return x[:, :, :, :4].flatten(1) @ self.w.t()


def _split(n=37, seed=1):
    g = torch.Generator().manual_seed(seed)
    return Split(torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8, generator=g),
                 torch.randint(0, 3, (n,), generator=g))


def test_tta_averages_the_probabilities_of_the_image_and_its_mirror():
    model, split = _Asymmetric(), _split()
    loader = DeviceLoader(split, 16, train=False, device=torch.device("cpu"), normalize=Normalize(None, None))
    plain = evaluate(model, loader, tta=False, with_predictions=True)
    tta = evaluate(model, loader, tta=True, with_predictions=True)

    x = split.images.float() / 255
    probs = (model(x).softmax(1) + model(x.flip(3)).softmax(1)) / 2
    y = split.labels
    assert tta["pred"].tolist() == probs.argmax(1).tolist()
    assert tta["top1"] == pytest.approx((probs.argmax(1) == y).float().mean().item())
    assert tta["loss"] == pytest.approx(torch.nn.functional.nll_loss(probs.log(), y).item(), rel=1e-5)
    assert plain["pred"].tolist() == model(x).argmax(1).tolist()
    assert tta["pred"].tolist() != plain["pred"].tolist()  # the mirror matters for this model: TTA did something
    assert tta["count"] == plain["count"] == 37


def test_report_best_run_accuracy_is_summary_test_top1_with_tta(tiny_cfg):
    """The report's best-run section, `classbench eval` and summary.json agree for a run trained with eval.tta=true."""
    from classbench.compare.report import build_report, evaluate_per_class
    from classbench.compare.runs import load_runs
    from classbench.inference.evaluate import evaluate_checkpoint
    from classbench.train.trainer import train

    # data.normalize and a channels_last conv model: the normalisation and memory format come from the checkpoint
    run_dir = train(tiny_cfg("eval.tta=true", "train.steps=6", "train.epochs=0", "eval.every=3", "data.normalize=true"))
    summary = json.loads(RunFolder(run_dir).summary_json.read_text())
    (run,) = load_runs(run_dir.parents[2], warn=False)
    ev = evaluate_per_class(run, device="cpu")
    assert ev.top1 == summary["test_top1"]
    m = evaluate_checkpoint(run_dir, device="cpu")  # `classbench eval`
    assert (m["top1"], m["top5"], m["count"]) == (summary["test_top1"], summary["test_top5"], ev.count)
    assert m["loss"] == summary["test_loss"]  # bit-equal: the same TTA, normalisation, batches and precision
    html = build_report([run], runs_dir=run_dir.parents[2])
    assert f"test top-1 <strong>{100 * summary['test_top1']:.2f}%</strong>" in html


def test_eval_limit_evaluates_a_prefix_and_says_so(tiny_cfg):
    from classbench.compare.report import evaluate_per_class
    from classbench.compare.runs import load_run
    from classbench.train.trainer import train

    run_dir = train(tiny_cfg("train.steps=2", "train.epochs=0"))
    ev = evaluate_per_class(load_run(run_dir), limit=10)
    assert ev.count == 10 and ev.confusion.sum() == 10
    assert ev.notes and "first 10 of" in ev.notes[0]


def test_predict_uses_the_training_normalisation(tiny_cfg, tmp_path):
    """The exported/predict wrapper on [0, 1] floats gives the logits the trainer's loader input gives."""
    from classbench.inference.predict import load_predictor
    from classbench.train.trainer import train

    run_dir = train(tiny_cfg("train.steps=2", "train.epochs=0", "data.normalize=true"))
    p = load_predictor(run_dir)
    mean, std = p.ckpt["input"]["mean"], p.ckpt["input"]["std"]
    assert mean is not None
    raw = _split(5).images
    scale, shift = Normalize(mean, std).affine(torch.device("cpu"))  # what the training loader applies to uint8
    loader_x = raw.float() * scale + shift
    with torch.no_grad():
        want = p.model.model(loader_x)
        got = p.model(raw.float() / 255)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
