"""Training recipes (issue #18): Mixup/CutMix, EMA, early stopping, the LR finder, stochastic depth."""

from __future__ import annotations

import contextlib
import json
import math

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import stats

from classbench.cli import main as cli_main
from classbench.config import load_config
from classbench.errors import ClassbenchError, ConfigError, TrainingInterrupted
from classbench.inference.evaluate import evaluate_checkpoint
from classbench.io import read_jsonl
from classbench.layers.droppath import DropPath
from classbench.models import create_model
from classbench.train.early_stop import EarlyStopping
from classbench.train.ema import EMA
from classbench.train.lr_find import find_lr, lr_range_test, lr_schedule
from classbench.train import step
from classbench.train.distributed import DistInfo
from classbench.train.mixing import Mixer
from classbench.train.recipe import Recipe, accumulated_forward_backward
from classbench.train.trainer import Trainer, resume, train

from conftest import REPO, TINY
from support.runs import metrics_without_timing


def distinct_batch(b=8, size=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, 3, size, size, generator=g) + torch.arange(b).view(-1, 1, 1, 1)  # no two pixels alike
    return x, torch.arange(b) % 5


# ---------------------------------------------------------------- Mixup / CutMix
def test_mixup_blends_each_image_with_its_partner_and_label_mass_sums_to_one():
    x, y = distinct_batch()
    mixer = Mixer(mixup=0.4, seed=1)
    for _ in range(5):
        mixed, t = mixer(x, y)
        assert t.kind == "mixup" and 0 <= t.lam <= 1
        assert torch.allclose(mixed, t.lam * x + (1 - t.lam) * x.flip(0), atol=1e-6)
        soft = t.soft_targets(5)
        assert torch.allclose(soft.sum(1), torch.ones(len(y)))
        same = y == y.flip(0)
        own = soft[torch.arange(len(y)), y]
        assert torch.allclose(own[~same], torch.tensor(t.lam)) and torch.allclose(own[same], torch.tensor(1.0))
        assert torch.equal(t.dominant, y if t.lam >= 0.5 else y.flip(0))


def test_cutmix_box_area_equals_the_label_mass_of_the_partner():
    x, y = distinct_batch(size=16)
    mixer = Mixer(cutmix=1.0, seed=3)
    seen_clipped = False
    for _ in range(40):
        mixed, t = mixer(x, y)
        assert t.kind == "cutmix"
        from_partner = (mixed == x.flip(0)) & (mixed != x)
        kept = mixed == x
        assert (from_partner | kept).all()
        area = from_partner[0, 0].float().mean().item()
        assert math.isclose(1 - t.lam, area, abs_tol=1e-9)
        assert (from_partner.flatten(1).sum(1) == from_partner[0].sum()).all()  # one box for the whole batch
        soft = t.soft_targets(5)
        assert torch.allclose(soft.sum(1), torch.ones(len(y)))
        seen_clipped |= 0 < area < 0.2
    assert seen_clipped
    assert torch.equal(x, distinct_batch(size=16)[0]), "the input batch is left as it was"


def test_mixed_loss_is_cross_entropy_against_the_mixed_smoothed_target():
    x, y = distinct_batch()
    logits = torch.randn(len(y), 5)
    _, t = Mixer(mixup=1.0, seed=0)(x, y)
    crit = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    want = F.cross_entropy(logits, t.soft_targets(5), label_smoothing=0.1)
    assert torch.allclose(t.loss(crit, logits), want, atol=1e-6)


def test_both_on_each_batch_picks_one_with_equal_odds():
    x, y = distinct_batch()
    mixer = Mixer(mixup=0.8, cutmix=1.0, seed=0)
    kinds = [mixer(x, y)[1].kind for _ in range(400)]
    assert 150 < kinds.count("mixup") < 250 and kinds.count("mixup") + kinds.count("cutmix") == 400


@pytest.mark.parametrize("alpha", [0.2, 1.0, 2.0])
def test_mixup_coefficient_follows_beta_alpha_alpha(alpha):
    x, y = distinct_batch(b=2, size=2)
    mixer = Mixer(mixup=alpha, seed=7)
    lams = [mixer(x, y)[1].lam for _ in range(1500)]
    assert stats.kstest(lams, stats.beta(alpha, alpha).cdf).pvalue > 0.001


def test_mixer_state_resumes_exactly():
    x, y = distinct_batch()
    a = Mixer(mixup=0.8, cutmix=1.0, seed=4)
    for _ in range(3):
        a(x, y)
    state = a.state_dict()
    b = Mixer(mixup=0.8, cutmix=1.0, seed=999)
    b.load_state_dict(state)
    for _ in range(5):
        (xa, ta), (xb, tb) = a(x, y), b(x, y)
        assert torch.equal(xa, xb) and ta.lam == tb.lam and ta.kind == tb.kind


def test_mixer_refuses_negative_alphas():
    with pytest.raises(ValueError):
        Mixer(mixup=-0.1)


# ---------------------------------------------------------------- EMA
def test_ema_equals_the_closed_form_on_a_toy_sequence():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    decay = 0.9
    w0 = {k: v.clone() for k, v in model.state_dict().items()}
    ema = EMA(model, decay)
    history = []
    for step in range(1, 8):
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.randn_like(p) * step)
        model.train()
        model(torch.randn(4, 3))  # moves the BatchNorm running statistics and its counter
        history.append({k: v.clone() for k, v in model.state_dict().items()})
        ema.update(model)
    t = len(history)
    for key, value in ema.module.state_dict().items():
        if not value.is_floating_point():
            assert torch.equal(value, history[-1][key])  # counters are copied
            continue
        closed = decay ** t * w0[key] + sum((1 - decay) * decay ** (t - k) * history[k - 1][key]
                                            for k in range(1, t + 1))
        assert torch.allclose(value, closed, atol=1e-5), key


def test_ema_state_round_trips_and_decay_zero_tracks_the_weights():
    model = torch.nn.Linear(4, 2)
    ema = EMA(model, 0.0)
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)
    assert torch.equal(ema.module.weight, model.weight)
    other = EMA(torch.nn.Linear(4, 2), 0.5)
    other.load_state_dict(ema.state_dict())
    assert torch.equal(other.module.weight, model.weight) and not other.module.training
    with pytest.raises(ValueError):
        EMA(model, 1.0)


# ---------------------------------------------------------------- early stopping
def test_early_stop_fires_at_the_right_evaluation():
    stop = EarlyStopping(2)
    scores = [0.10, 0.20, 0.20, 0.15, 0.30]  # eval 3 ties (no improvement), eval 4 is worse
    fired = [stop.update(s) for s in scores]
    assert fired == [False, False, False, True, False]
    assert stop.best == 0.30 and stop.best_eval == 5
    assert "did not improve" in EarlyStopping(1).reason()


def test_early_stop_off_and_resumed():
    off = EarlyStopping(0)
    assert not any(off.update(0.5) for _ in range(20))
    a = EarlyStopping(3)
    for s in (0.1, 0.3, 0.2):
        a.update(s)
    b = EarlyStopping(3)
    b.load_state_dict(a.state_dict())
    assert [b.update(s) for s in (0.25, 0.29)] == [False, True]


# ---------------------------------------------------------------- LR finder
def _learnable_step():
    """Logistic regression on a separable task: the loss falls for moderate lrs and blows up for huge ones."""
    g = torch.Generator().manual_seed(0)
    w_true = torch.randn(20, 3, generator=g)
    model = torch.nn.Linear(20, 3)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)

    def step(lr):
        for group in opt.param_groups:
            group["lr"] = lr
        x = torch.randn(64, 20, generator=g)
        loss = F.cross_entropy(model(x), (x @ w_true).argmax(1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()

    return step


def test_lr_finder_gives_a_finite_suggestion_on_a_learnable_task():
    result = lr_range_test(_learnable_step(), start_lr=1e-4, end_lr=1e4, steps=120)
    assert result.suggestion is not None and math.isfinite(result.suggestion)
    assert 1e-3 < result.suggestion < 1e2
    assert result.suggestion <= result.min_loss_lr
    assert "exceeded" in result.stopped or "non-finite" in result.stopped  # 1e4 diverges
    assert min(result.smoothed) < result.smoothed[0] * 0.7


def test_lr_schedule_is_exponential_and_checked():
    lrs = lr_schedule(1e-6, 1.0, 7)
    assert math.isclose(lrs[0], 1e-6) and math.isclose(lrs[-1], 1.0)
    assert all(math.isclose(b / a, 10.0) for a, b in zip(lrs, lrs[1:]))
    with pytest.raises(ClassbenchError):
        lr_schedule(1.0, 0.1, 10)


@pytest.mark.slow  # over a second on 2 quiet cores (2026-12-02); the quick loop keeps the cheaper tests
def test_lr_find_command_prints_a_suggestion_and_writes_a_png(tmp_path, capsys):
    out = tmp_path / "curve.png"
    rc = cli_main(["lr-find", str(REPO / "configs/cifar10/resnet20.yaml"), *TINY, "train.mixup=0.2",
                   "--steps", "40", "--start-lr", "1e-5", "--end-lr", "10", "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "suggested lr" in text or "no suggestion" in text
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size[0] > 300


def test_find_lr_on_the_synthetic_task_suggests_a_finite_lr(tiny_cfg):
    result = find_lr(tiny_cfg("data.augment=trivialaugment"), start_lr=1e-5, end_lr=10.0, steps=60)
    assert result.suggestion is not None and 1e-5 <= result.suggestion <= 10.0


def test_lr_find_command_rejects_bad_ranges(capsys):
    assert cli_main(["lr-find", str(REPO / "configs/cifar10/resnet20.yaml"), "--start-lr", "1", "--end-lr",
                     "0.1"]) == 2
    assert "start lr < end lr" in capsys.readouterr().err


# ---------------------------------------------------------------- stochastic depth
def test_drop_path_drops_whole_samples_and_keeps_the_expectation():
    torch.manual_seed(0)
    layer = DropPath(0.25).train()
    x = torch.ones(4000, 5, 3)
    out = layer(x)
    per_sample = out.flatten(1)
    assert ((per_sample == 0).all(1) | (per_sample == 1 / 0.75).all(1)).all()
    assert abs((per_sample[:, 0] == 0).float().mean().item() - 0.25) < 0.03
    assert torch.equal(layer.eval()(x), x)


def test_vit_drop_path_rises_linearly_over_the_layers():
    model = create_model("vit_lite_7_4", num_classes=10, drop_path=0.3, depth=4, dim=32, heads=2, mlp_dim=32)
    rates = [blk.drop_path.p for blk in model.blocks]
    assert rates[0] == 0 and math.isclose(rates[-1], 0.3) and rates == sorted(rates)
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(model(x), model(x))


# ---------------------------------------------------------------- config
@pytest.mark.parametrize("override,message", [
    ("train.mixup=-0.2", "train.mixup must not be negative"),
    ("train.cutmix=-1", "train.cutmix must not be negative"),
    ("train.ema=1.0", "train.ema must be in [0, 1)"),
    ("train.ema=-0.5", "train.ema must be in [0, 1)"),
    ("train.early_stop=-3", "train.early_stop must not be negative"),
    ("train.accumulate=0", "train.accumulate=0 must be at least 1"),
    ("train.accumulate=3", "must be at least 1 and divide train.batch_size=128"),
])
def test_bad_recipe_values_are_one_line_config_errors(override, message):
    with pytest.raises(ConfigError) as e:
        load_config(REPO / "configs/cifar10/resnet20.yaml", [override])
    assert message in str(e.value) and "\n" not in str(e.value)


def test_recipe_keys_default_off():
    cfg = load_config(REPO / "configs/cifar10/resnet20.yaml")
    t, d = cfg.train, cfg.data
    assert (t.mixup, t.cutmix, t.ema, t.early_stop, t.accumulate) == (0.0, 0.0, 0.0, 0, 1)
    assert (d.augment, d.crop, d.cutout, d.rotate) == ("none", "pad", 0, 0.0)


# ---------------------------------------------------------------- in the trainer
ALL_ON = ["data.augment=randaugment", "data.crop=resized", "data.crop_scale=[0.5,1.0]", "data.cutout=4",
          "data.rotate=10", "train.mixup=0.4", "train.cutmix=1.0", "train.ema=0.8", "train.early_stop=50",
          "train.accumulate=2", "train.checkpoint_every=5"]
TOY_WIDE_HEAD = "model.args.head_classes=7"  # more logits than classes: the soft targets must span them


@pytest.mark.parametrize("extra", [
    [*ALL_ON, TOY_WIDE_HEAD],
    pytest.param([*ALL_ON, "data.augment=autoaugment", "model.name=cvit_tiny", "model.args={}",
                  "model.args.image_size=16", "model.args.drop_path=0.2", "train.accumulate=4", "eval.tta=true"],
                 marks=pytest.mark.slow),  # a transformer: seconds; the toy case keeps every option in the quick loop
], ids=["toy-all-options", "vit-drop-path-autoaugment"])
@pytest.mark.slow  # over a second on 2 quiet cores (2026-12-02); the quick loop keeps the cheaper tests
def test_resume_with_every_recipe_option_is_exact(tiny_cfg, extra):
    reference = train(tiny_cfg(*extra))
    trainer = Trainer(tiny_cfg(*extra))
    spe = trainer.steps_per_epoch
    trainer.stop_after = spe + spe // 2 + 1  # mid second epoch, off the checkpoint and eval boundaries
    with pytest.raises(TrainingInterrupted):
        trainer.fit()
    resume(trainer.run_dir)
    assert _without_clocks(trainer.run_dir) == _without_clocks(reference)
    a, b = (json.loads((d / "summary.json").read_text()) for d in (reference, trainer.run_dir))
    for key in ("best_val_top1", "best_val_step", "test_top1", "best_weights", "best_val_top1_ema",
                "best_val_top1_model", "steps"):
        assert a[key] == b[key], key
    for kind in ("best", "last"):
        wa = torch.load(reference / f"checkpoints/{kind}.pt", weights_only=True)
        wb = torch.load(trainer.run_dir / f"checkpoints/{kind}.pt", weights_only=True)
        assert all(torch.equal(wa["model"][k], wb["model"][k]) for k in wa["model"]), kind
    ema_a = torch.load(reference / "checkpoints/last.pt", weights_only=True)["trainer"]["recipe"]["ema"]
    ema_b = torch.load(trainer.run_dir / "checkpoints/last.pt", weights_only=True)["trainer"]["recipe"]["ema"]
    assert all(torch.equal(ema_a[k], ema_b[k]) for k in ema_a)


def _without_clocks(run_dir):
    """metrics.jsonl without any wall-clock field (support.runs' list lacks the newer "time_no_ckpt")."""
    return [{k: v for k, v in r.items() if not k.startswith("time")} for r in metrics_without_timing(run_dir)]


def test_mixed_and_ema_runs_record_both_selections(tiny_cfg):
    run_dir = train(tiny_cfg("train.mixup=0.4", "train.ema=0.5", "train.epochs=3"))
    lines = read_jsonl(run_dir / "metrics.jsonl")
    assert all(r.get("mixed") is True for r in lines if r["split"] == "train")
    assert {"val", "val_ema", "test", "test_ema"} <= {r["split"] for r in lines}
    s = json.loads((run_dir / "summary.json").read_text())
    model_best = max(r["top1"] for r in lines if r["split"] == "val")
    ema_best = max(r["top1"] for r in lines if r["split"] == "val_ema")
    assert s["best_val_top1_model"] == model_best and s["best_val_top1_ema"] == ema_best
    assert s["best_val_top1"] == max(model_best, ema_best)
    assert s["best_weights"] == ("ema" if ema_best > model_best else "model")
    best = torch.load(run_dir / "checkpoints/best.pt", weights_only=True)
    assert best["weights"] == s["best_weights"]
    assert evaluate_checkpoint(run_dir, split="val")["top1"] == s["best_val_top1"]  # best.pt holds the winner


def test_best_pt_holds_the_ema_weights_when_they_score_better(tiny_cfg, monkeypatch):
    import classbench.train.trainer as trainer_module

    real = trainer_module.evaluate

    def favour_ema(model, loader, **kw):  # the EMA weights score higher on every split
        m = real(model, loader, **kw)
        return {**m, "top1": m["top1"] + 1.0} if model is trainer.recipe.ema.module else m

    monkeypatch.setattr(trainer_module, "evaluate", favour_ema)
    trainer = Trainer(tiny_cfg("train.ema=0.5", "train.epochs=1"))  # one evaluation, at the last step
    run_dir = trainer.fit()
    s = json.loads((run_dir / "summary.json").read_text())
    best = torch.load(run_dir / "checkpoints/best.pt", weights_only=True)
    last = torch.load(run_dir / "checkpoints/last.pt", weights_only=True)
    assert s["best_weights"] == best["weights"] == "ema" and best["step"] == last["step"]
    ema = last["trainer"]["recipe"]["ema"]
    assert all(torch.equal(best["model"][k], ema[k]) for k in ema)
    assert not all(torch.equal(best["model"][k], last["model"][k]) for k in ema)


def test_early_stop_ends_the_run_as_finished_and_says_why(tiny_cfg):
    # An lr this small leaves the predictions as they are: val top-1 never improves after the first evaluation.
    run_dir = train(tiny_cfg("optim.lr=1e-12", "train.early_stop=2", "eval.every=2", "train.epochs=4"))
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "finished" and "early stop" in status["message"]
    s = json.loads((run_dir / "summary.json").read_text())
    assert s["early_stopped"] is True and "train.early_stop=2" in s["stop_reason"]
    assert s["steps"] == 6  # evaluations at steps 2 (best), 4 and 6 (no improvement): stops at the third
    assert [r["step"] for r in read_jsonl(run_dir / "metrics.jsonl") if r["split"] == "val"] == [2, 4, 6]


def test_accumulated_gradients_equal_the_full_batch_gradient():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    x, y = torch.randn(8, 3, 2, 2), torch.randint(0, 3, (8,))
    parts = step.StepParts.build(model, torch.optim.SGD(model.parameters(), lr=0.1), precision="fp32",
                                 device=torch.device("cpu"), label_smoothing=0.1)
    full = step.forward(parts, x, y)
    parts.optimizer.zero_grad()
    step.backward(parts, full.total)
    want = [p.grad.clone() for p in model.parameters()]
    out = accumulated_forward_backward(parts, x, y, 4)
    assert all(torch.allclose(p.grad, g, atol=1e-6) for p, g in zip(model.parameters(), want))
    assert torch.allclose(out.loss, full.loss, atol=1e-6) and out.logits.shape == (8, 3)


def test_accumulation_skips_the_ddp_all_reduce_on_all_but_the_last_micro_batch():
    class FakeDDP(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
            self.syncing, self.calls = True, []

        @contextlib.contextmanager
        def no_sync(self):
            self.syncing = False
            yield
            self.syncing = True

        def forward(self, x):
            self.calls.append(self.syncing)
            return self.inner(x)

    model = FakeDDP()
    parts = step.StepParts.build(model, torch.optim.SGD(model.parameters(), lr=0.1), precision="fp32",
                                 device=torch.device("cpu"))
    accumulated_forward_backward(parts, torch.randn(8, 3, 2, 2), torch.randint(0, 3, (8,)), 4)
    assert model.calls == [False, False, False, True]


def test_recipe_selection_prefers_the_better_weights_and_ties_keep_the_model(tiny_cfg):
    cfg = tiny_cfg("train.ema=0.9", "train.early_stop=2")
    recipe = Recipe(cfg, torch.nn.Linear(2, 2), 4, DistInfo())
    assert recipe.observe(10, 0.5, 0.6) == "ema"
    assert recipe.observe(20, 0.7, 0.7) == "model"
    assert recipe.observe(30, 0.6, 0.65) == "ema" and recipe.stop_reason is None
    assert recipe.observe(40, 0.6, 0.6) == "model" and recipe.stop_reason is not None  # 2 without a better 0.7
    assert recipe.best == {"model": {"top1": 0.7, "step": 20}, "ema": {"top1": 0.7, "step": 20}}

