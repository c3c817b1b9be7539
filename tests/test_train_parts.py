"""The trainer's parts: every LR schedule's values, the step under fp16 with the GradScaler, airbench's
whitening init, train.compile, the meter and the checkpoint schema."""

from __future__ import annotations

import json
import math
import time
import warnings

import pytest
import torch

from classbench.config import OptimConfig, SchedConfig
from classbench.models import create_model
from classbench.runfolder import RunFolder
from classbench.train import step
from classbench.train.checkpoint import TRAIN_STATE_KEYS, load_checkpoint
from classbench.train.optim import Schedule


# ---------------------------------------------------------------- every schedule, by value
def _schedule(total=100, steps_per_epoch=10, epoch_budget=False, base=0.1, **sched):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=base)
    return Schedule(opt, SchedConfig(**sched), base_lr=base, total_steps=total, steps_per_epoch=steps_per_epoch,
                    epoch_budget=epoch_budget), opt


def _values(s, steps):
    return [s.lr_at(t) for t in steps]


def test_constant():
    s, _ = _schedule(name="constant")
    assert _values(s, [0, 50, 100]) == [0.1, 0.1, 0.1]


def test_step_counts_milestones_in_steps_or_in_epochs():
    s, _ = _schedule(name="step", milestones=[20, 60], gamma=0.5)
    assert _values(s, [0, 19, 20, 59, 60, 99]) == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.025])
    s, _ = _schedule(name="step", milestones=[2, 6], gamma=0.1, epoch_budget=True)  # epochs of 10 steps
    assert _values(s, [19, 20, 59, 60]) == pytest.approx([0.1, 0.01, 0.01, 0.001])


def test_cosine_from_base_to_min_lr():
    s, _ = _schedule(name="cosine", min_lr=0.01)
    assert _values(s, [0, 25, 50, 100]) == pytest.approx(
        [0.1, 0.01 + 0.09 * (1 + math.cos(math.pi / 4)) / 2, 0.055, 0.01])


def test_warmup_linear_and_warmup_in_front_of_cosine():
    s, _ = _schedule(name="warmup_linear", min_lr=0.0)
    assert _values(s, [0, 50, 100]) == pytest.approx([0.1, 0.05, 0.0])
    s, _ = _schedule(name="cosine", warmup_steps=10, warmup_start_lr=0.0, min_lr=0.0)
    # linear from warmup_start_lr over the warmup, then the cosine over the remaining 90 steps
    assert _values(s, [0, 5, 10, 55, 100]) == pytest.approx([0.0, 0.05, 0.1, 0.05, 0.0])


def test_onecycle_rises_then_falls():
    s, _ = _schedule(name="onecycle", pct_start=0.25, div_factor=25.0)
    start = 0.1 / 25
    assert _values(s, [0, 25, 100]) == pytest.approx([start, 0.1, start / 1e4])
    assert s.lr_at(12.5) == pytest.approx(start + (0.1 - start) * 0.5)  # half way up the cosine
    assert s.lr_at(62.5) == pytest.approx(start / 1e4 + (0.1 - start / 1e4) * 0.5)  # half way down


def test_plateau_cuts_after_patience_and_the_optimizer_follows():
    s, opt = _schedule(name="plateau", patience=1, factor=0.5)
    for loss in (1.0, 0.9, 0.95, 0.95):  # two evaluations without a gain > patience=1: one cut
        s.on_eval(loss)
    assert s.lr == pytest.approx(0.05) and opt.param_groups[0]["lr"] == pytest.approx(0.05)
    s.on_eval(0.5)  # a gain resets the count, the cut stays
    assert s.lr == pytest.approx(0.05)


def test_the_schedule_sets_the_lr_of_the_next_step():
    s, opt = _schedule(name="warmup_linear", total=10)
    seen = []
    for _ in range(10):
        seen.append(opt.param_groups[0]["lr"])
        s.step()
    assert seen == pytest.approx([0.1 * (1 - t / 10) for t in range(10)])


# ---------------------------------------------------------------- the step
def _parts(precision: str, **kw):
    torch.manual_seed(0)
    model = create_model("toy_dilated", num_classes=4, width=4)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    return model, step.StepParts.build(model, opt, precision=precision, device=torch.device("cpu"), **kw)


def test_fp16_step_goes_through_the_grad_scaler():
    x, y = torch.rand(8, 3, 8, 8), torch.arange(8) % 4
    model, parts = _parts("fp16")
    assert parts.scaler.is_enabled()
    before = [p.detach().clone() for p in model.parameters()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = step.train_step(parts, x, y)
    assert out.logits.dtype == torch.float16  # autocast ran the forward in half precision
    assert parts.scaler.get_scale() == 2.0**16  # finite gradients: the scale stays
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))

    # An overflow: the scaler skips the update and halves the scale
    weights = [p.detach().clone() for p in model.parameters()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        step.update(parts, step.forward(parts, x, y).total * float("inf"))
    assert parts.scaler.get_scale() == 2.0**15
    assert all(torch.equal(a, b) for a, b in zip(weights, model.parameters()))


def test_fp32_step_has_no_scaler_and_clips_to_grad_clip():
    x, y = torch.rand(8, 3, 8, 8), torch.arange(8) % 4
    model, parts = _parts("fp32", grad_clip=1e-3, label_smoothing=0.1)
    assert not parts.scaler.is_enabled()
    out = step.forward(parts, x, y)
    expected = torch.nn.functional.cross_entropy(out.logits, y, label_smoothing=0.1)
    assert out.loss.item() == pytest.approx(expected.item())
    step.update(parts, out.total)
    norm = torch.sqrt(sum((p.grad.float() ** 2).sum() for p in model.parameters()))
    assert norm.item() == pytest.approx(1e-3, rel=1e-3)  # clipped to the max norm before the update


def test_trainer_runs_fp16_and_saves_the_scaler(tiny_cfg):
    from classbench.train.trainer import train

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fp16 on a CPU without half units warns that it is slow
        run_dir = train(tiny_cfg("train.precision=fp16", "train.steps=3", "train.epochs=0"))
    summary = json.loads(RunFolder(run_dir).summary_json.read_text())
    assert summary["precision"] == "fp16" and summary["steps"] == 3
    ckpt = load_checkpoint(RunFolder(run_dir).last_pt)
    assert ckpt["scaler"]["scale"] == 2.0**16  # the enabled scaler's state, for an exact resume
    assert set(TRAIN_STATE_KEYS) <= set(ckpt)


# ---------------------------------------------------------------- airbench's whitening
def _smooth_images(n=400, size=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, size, size, generator=g)
    return (x + x.roll(1, 2) + x.roll(1, 3) + torch.rand(n, 3, 1, 1, generator=g)) / 2  # correlated pixels


def test_airbench_whitening_decorrelates_2x2_patches():
    model = create_model("airbench_net", num_classes=10)
    x = _smooth_images()
    model.data_init(x)
    w = model.whiten_weight.detach().double()
    assert torch.equal(w[12:], -w[:12])  # the second half mirrors the first

    patches = torch.nn.functional.unfold(x.double(), kernel_size=2).transpose(1, 2).reshape(-1, 12)
    cov = torch.cov(patches.T, correction=0)
    eig = torch.linalg.eigvalsh(cov).flip(0)
    f = w[:12].reshape(12, 12)
    white = f @ cov @ f.T  # covariance of the filter outputs
    expected = torch.diag(eig / (eig + model.whiten_eps))  # identity, shrunk where the variance is below eps
    torch.testing.assert_close(white, expected, atol=1e-6, rtol=1e-5)


def test_the_trainer_fits_the_whitening_on_a_new_run_only(tiny_cfg, monkeypatch):
    from classbench.train.trainer import Trainer, resume

    overrides = ("model.name=airbench_net", "model.args={}", "model.args.widths=[8, 8, 8]", "train.steps=2", "train.epochs=0",
                 "data.normalize=true")
    fresh = create_model("airbench_net", num_classes=4, widths=[8, 8, 8]).whiten_weight
    trainer = Trainer(tiny_cfg(*overrides))
    fitted = trainer.model.whiten_weight.detach().clone()
    assert not torch.equal(fitted, fresh)
    expected = create_model("airbench_net", num_classes=4, widths=[8, 8, 8])
    scale, shift = trainer.normalize.affine(torch.device("cpu"))
    expected.data_init(trainer.data.splits["train"].images[:10000].float() * scale + shift)
    torch.testing.assert_close(fitted, expected.whiten_weight, rtol=1e-5, atol=1e-6)
    run_dir = trainer.fit()
    calls = []
    monkeypatch.setattr(type(trainer.model), "data_init", lambda self, x: calls.append(1))
    resume(run_dir, ["train.steps=3"])
    assert calls == []  # a resume takes the whitening from last.pt


# ---------------------------------------------------------------- train.compile
@pytest.mark.slow
def test_train_compile_on_a_tiny_model(tiny_cfg):
    from classbench.train.trainer import train

    plain = train(tiny_cfg("train.steps=4", "train.epochs=0", "model.args={width: 4}"))
    compiled = train(tiny_cfg("train.steps=4", "train.epochs=0", "model.args={width: 4}", "train.compile=true"))
    a = json.loads(RunFolder(plain).summary_json.read_text())
    b = json.loads(RunFolder(compiled).summary_json.read_text())
    assert b["compile"] is True and b["compile_time_s"] > 0 and a["compile_time_s"] == 0
    assert b["steps"] == 4
    # the compiled graph computes the same function (kernels may round differently)
    assert b["test_loss"] == pytest.approx(a["test_loss"], rel=1e-3)


# ---------------------------------------------------------------- the meter
def test_meter_books_paused_time_apart_from_training():
    from classbench.train.meter import Meter

    m = Meter(torch.device("cpu"))
    m.start()
    time.sleep(0.02)
    m.count(10)
    with m.paused():
        time.sleep(0.05)  # evaluation: not training
    time.sleep(0.02)
    m.count(10)
    m.pause()
    assert m.train_images == 20
    assert 0.035 < m.train_time < 0.06 and m.wall() >= 0.09
    assert m.window_img_per_s() == pytest.approx(20 / m.train_time)
    assert m.window_img_per_s() == 0.0  # the window starts again
    state = m.state_dict()
    other = Meter(torch.device("cpu"))
    other.load_state_dict(state)
    assert other.train_time == m.train_time and other.wall_offset == pytest.approx(state["wall"])
