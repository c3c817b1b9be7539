"""The shipped configs: every file loads and builds its model, the recipe families stay
consistent, and every model trains a couple of steps from its config on real CIFAR-10."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import yaml

from classbench.config import Config, load_config, to_dict
from classbench.io import read_jsonl
from classbench.models import create_model, list_models
from classbench.train.trainer import train

from conftest import REPO, require_cifar
from support.marks import BIG_MODELS, params

DATASETS = ("cifar10", "cifar100")
CONFIGS = sorted(p for ds in DATASETS for p in (REPO / "configs" / ds).glob("*.yaml"))
MISSING = "<missing>"


def _id(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}"


def _load(ds: str, name: str, *overrides: str) -> Config:
    return load_config(REPO / "configs" / ds / f"{name}.yaml", list(overrides))


def _num_classes(cfg: Config) -> int:
    if cfg.data.name == "cifar100":
        return 20 if cfg.data.labels == "coarse" else 100
    assert cfg.data.name == "cifar10", cfg.data.name
    return 10


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _diff(a: Config, b: Config) -> dict:
    """Keys whose values differ from a to b (ignoring the config's own name), as {key: b's value}."""
    fa, fb = _flat(to_dict(a)), _flat(to_dict(b))
    fa.pop("name"), fb.pop("name")
    return {k: fb.get(k, MISSING) for k in sorted(set(fa) | set(fb)) if fa.get(k, MISSING) != fb.get(k, MISSING)}


# ---------------------------------------------------------------- every file loads and builds
ADAM_FAMILY = ["resnet18-imagenet-stem", "resnet34", "resnet18-wonorm", "resnet18-pcnorm", "resnet18-gn",
               "resnet18-tnc", "resnet18-ms1", "resnet18-ms2", "resnet18-ms3", "resnet18-aug", "resnet18-clr1e-4",
               "vit-12x256-8x8", "vitn-12x256-8x8", "vitn-12x256-8x8-ra", "vitn-12x256-8x8-dm",
               "vitn-12x256-8x8-lt", "vitn-12x256-8x8-ltv", "vit-aux-3x4x256-8x8", "toy-dilated"]
STEP_ZOO = ["resnet18", "alexnet", "googlenet", "mobilenetv1", "vgg16", "vit-lite-7-4", "xception"]
#: Fanziyang-v/PyTorch-Classification's fixed normalisation constants (utils/transform.py at b544704), per dataset.
FANZIYANG_NORM = {"cifar10": {"data.mean": [0.4914, 0.4822, 0.4465], "data.std": [0.2467, 0.2432, 0.2612]},
                  "cifar100": {"data.mean": [0.5070, 0.4865, 0.4409], "data.std": [0.2669, 0.2560, 0.2756]}}


def test_config_set_is_complete():
    want = set(ADAM_FAMILY + STEP_ZOO + ["resnet18-plateau", "cvit-tiny", "mcvit-tiny"])
    for ds in DATASETS:
        have = {p.stem for p in (REPO / "configs" / ds).glob("*.yaml")}
        assert want <= have, sorted(want - have)


def test_config_names_say_what_they_are():
    """No project-history labels ("s003-", "seed 002") in config names or headers; a source line may cite one."""
    for path in CONFIGS:
        assert not path.stem.startswith(("s00", "seed")), path
        text = path.read_text().lower()
        assert "seed 00" not in text and "s00" not in text, path


_BUILT: dict[tuple, tuple[int, ...]] = {}  # cifar10 and cifar100 files often build the same model


def _model_name(path: Path) -> str:
    return yaml.safe_load(path.read_text())["model"]["name"]


@pytest.mark.parametrize("path", CONFIGS, ids=_id)
def test_config_loads(path):
    """The quick check of every file: the test below also builds its model, which takes seconds for the big ones."""
    cfg = load_config(path)
    assert cfg.name == path.stem
    assert cfg.data.name == path.parent.name, f"{path} trains on {cfg.data.name}"
    assert cfg.model.name in list_models()


@pytest.mark.parametrize("path", params(CONFIGS, [p for p in CONFIGS if _model_name(p) in BIG_MODELS], ids=_id))
def test_config_loads_and_builds(path):
    cfg = load_config(path)
    assert cfg.name == path.stem
    assert cfg.data.name == path.parent.name, f"{path} trains on {cfg.data.name}"
    nc = _num_classes(cfg)
    key = (cfg.model.name, json.dumps(cfg.model.args, sort_keys=True), nc)
    if key not in _BUILT:
        torch.manual_seed(0)
        model = create_model(cfg.model.name, num_classes=nc, **cfg.model.args).eval()
        with torch.no_grad():
            out = model(torch.rand(2, 3, 32, 32))
        assert isinstance(out, torch.Tensor), f"{cfg.model.name}: eval mode must return logits only"
        assert torch.isfinite(out).all()
        _BUILT[key] = tuple(out.shape)
    assert _BUILT[key] == (2, cfg.model.args.get("head_classes", nc))


@pytest.mark.parametrize("path", sorted((REPO / "configs" / "cifar100").glob("*.yaml")), ids=_id)
def test_cifar100_configs_mirror_cifar10(path):
    twin = REPO / "configs" / "cifar10" / path.name
    assert twin.exists(), f"{path.name} has no cifar10 twin"
    # only the dataset, and a reference's normalisation constants for that dataset
    own_constants = FANZIYANG_NORM["cifar100"] if path.stem in STEP_ZOO else {}
    assert _diff(load_config(twin), load_config(path)) == {"data.name": "cifar100", **own_constants}


# ---------------------------------------------------------------- the recipes
@pytest.mark.parametrize("ds", DATASETS)
def test_adam_warmup_decay_recipe(ds):
    """enhuiz/image-classification's recipe: DeepSpeed WarmupDecayLR (warmup_min_lr 1e-6 is also where it decays to)."""
    c = _load(ds, "resnet18-imagenet-stem")
    assert (c.optim.name, c.optim.lr, list(c.optim.betas), c.optim.weight_decay) == ("adam", 2e-4, [0.9, 0.999], 0)
    assert (c.sched.name, c.sched.warmup_steps, c.sched.warmup_start_lr, c.sched.min_lr) == \
        ("warmup_linear", 500, 1e-6, 1e-6)
    assert (c.train.steps, c.train.batch_size, c.train.grad_clip) == (5000, 128, 100)
    assert (c.eval.every, list(c.eval.splits)) == (100, ["train_subset", "test"])
    assert (c.data.val_size, c.data.train_subset_size, c.data.pad, c.data.flip, c.data.normalize) == \
        (0, 200, 0, False, False)
    assert (c.model.name, c.model.args) == \
        ("resnet18", {"stem": "imagenet", "input_norm": "scalar_ema", "head_classes": 1000})


SEED002_VARIANTS = {
    "resnet34": {"model.name": "resnet34"},
    "resnet18-wonorm": {"model.args.input_norm": "none"},
    "resnet18-pcnorm": {"model.args.input_norm": "per_channel_ema"},
    "resnet18-gn": {"model.args.norm": "gn"},
    "resnet18-tnc": {"model.args.head_classes": MISSING},
    "resnet18-ms1": {"model.args.mixstyle_stages": [1]},
    "resnet18-ms2": {"model.args.mixstyle_stages": [1, 2]},
    "resnet18-ms3": {"model.args.mixstyle_stages": [1, 2, 3]},
    "resnet18-aug": {"data.pad": 4, "data.flip": True, "data.rotate": 15},
    "resnet18-clr1e-4": {"sched.name": "constant", "optim.lr": 1e-4, "sched.warmup_steps": 0, "sched.min_lr": 0.0},
}
SEED002_OTHERS = {  # the same recipe, normaliser and 1000-way head on other models (no ResNet stem option)
    "vit-12x256-8x8": ("vit_12x256_p8", {}), "vitn-12x256-8x8": ("vitn_12x256_p8", {}),
    "vitn-12x256-8x8-ra": ("vitn_12x256_p8_ra", {}), "vitn-12x256-8x8-dm": ("vitn_12x256_p8_dm", {}),
    "vitn-12x256-8x8-lt": ("vitn_12x256_p8_lt", {}), "vitn-12x256-8x8-ltv": ("vitn_12x256_p8_ltv", {}),
    "vit-aux-3x4x256-8x8": ("vit_aux_3x4x256_p8", {}), "toy-dilated": ("toy_dilated", {"model.args.conv_bias": True}),
}


@pytest.mark.slow  # over a second on 2 quiet cores (2026-12-02); the quick loop keeps the cheaper tests
@pytest.mark.parametrize("ds", DATASETS)
def test_adam_family_variants_change_only_what_their_name_says(ds):
    base = _load(ds, "resnet18-imagenet-stem")
    for name, want in SEED002_VARIANTS.items():
        assert _diff(base, _load(ds, name)) == want, name
    for name, (model, extra) in SEED002_OTHERS.items():
        want = {"model.name": model, "model.args.stem": MISSING, **extra}
        assert _diff(base, _load(ds, name)) == want, name


@pytest.mark.parametrize("ds", DATASETS)
def test_sgd_step_recipe_is_shared(ds):
    """Fanziyang-v/PyTorch-Classification's HEAD recipe: 10 warmup epochs, then x0.1 at epochs 69, 129, 189."""
    c = _load(ds, "resnet18")
    assert (c.optim.name, c.optim.lr, c.optim.momentum, c.optim.nesterov, c.optim.weight_decay) == \
        ("sgd", 0.1, 0.9, False, 5e-4)
    assert (c.sched.name, list(c.sched.milestones), c.sched.gamma, c.sched.warmup_start_lr) == \
        ("step", [69, 129, 189], 0.1, 0.01)
    assert (c.train.epochs, c.train.steps, c.train.batch_size) == (200, 0, 128)
    assert (c.data.val_size, c.data.pad, c.data.flip, c.data.rotate, c.data.normalize) == (5000, 4, True, 15, True)
    # the warmup is 10 epochs of the 45,000-image train split, last partial batch dropped
    assert c.sched.warmup_steps == 10 * ((50_000 - c.data.val_size) // c.train.batch_size)
    assert (c.eval.every, list(c.eval.splits)) == (0, ["val", "test"])
    for name in STEP_ZOO[1:]:  # the zoo differs from resnet18.yaml in its model only
        diff = _diff(c, _load(ds, name))
        assert diff and all(k.startswith("model.") for k in diff), (name, diff)
    assert _diff(c, _load(ds, "resnet18-plateau")) == {
        "sched.name": "plateau", "sched.warmup_steps": 0, "sched.warmup_start_lr": 1e-6, "sched.milestones": [],
        "train.batch_size": 256, "data.rotate": 0,
        **({k: FANZIYANG_NORM["cifar10"][k] for k in ("data.mean", "data.std")} if ds == "cifar100" else {})}


@pytest.mark.parametrize("ds", DATASETS)
def test_reference_normalisation_constants(ds):
    """Fanziyang-v's presets normalise with the source's fixed constants of their dataset (the early plateau
    recipe with the CIFAR-10 ones on both datasets, as its train.py and test.py do); tintn's with 0.5; seed
    002's give [0, 1] pixels to the model's running normaliser, as the source's ToTensor-only loader does."""
    for name in [*STEP_ZOO, "resnet18-plateau"]:
        c = _load(ds, name)
        want = FANZIYANG_NORM["cifar10" if name == "resnet18-plateau" else ds]
        assert (c.data.normalize, list(c.data.mean), list(c.data.std)) == (True, want["data.mean"], want["data.std"]), name
    for name in ("cvit-tiny", "mcvit-tiny"):
        c = _load(ds, name)
        assert (c.data.normalize, list(c.data.mean), list(c.data.std)) == (True, [0.5] * 3, [0.5] * 3), name
    for name in ("resnet18-imagenet-stem", "resnet18-aug", "resnet34", "toy-dilated", "vit-12x256-8x8",
                 "vitn-12x256-8x8", "vit-aux-3x4x256-8x8"):
        c = _load(ds, name)
        assert (c.data.normalize, c.data.mean, c.data.std) == (False, None, None), name
        assert c.model.args.get("input_norm") == "scalar_ema", name


@pytest.mark.parametrize("ds", DATASETS)
def test_compact_vit_recipe(ds):
    """tintn's recipe: AdamW 1e-2 / 1e-2, all 50,000 images, RandomResizedCrop(scale 0.8-1, ratio 3/4-4/3) + flip."""
    for name in ("cvit-tiny", "mcvit-tiny"):
        c = _load(ds, name)
        assert (c.optim.name, c.optim.lr, c.optim.weight_decay, c.sched.name) == ("adamw", 0.01, 0.01, "constant")
        assert (c.train.epochs, c.train.batch_size, c.data.val_size, list(c.eval.splits)) == (100, 256, 0, ["test"])
        assert (c.data.crop, list(c.data.crop_scale), c.data.flip) == ("resized", [0.8, 1.0], True)
        assert list(c.data.crop_ratio) == pytest.approx([3 / 4, 4 / 3])


@pytest.mark.slow  # over a second on 2 quiet cores (2026-12-02); the quick loop keeps the cheaper tests
def test_sgd_step_schedule_matches_the_source_lambda():
    """After the warmup, the lr of every epoch is the source's LambdaLR: 0.1 ** ((e + 1 - 10) // 60)."""
    from classbench.train.optim import Schedule

    c = _load("cifar100", "resnet18")
    steps_per_epoch = c.sched.warmup_steps // 10
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=c.optim.lr)
    sched = Schedule(opt, c.sched, base_lr=c.optim.lr, total_steps=200 * steps_per_epoch,
                     steps_per_epoch=steps_per_epoch, epoch_budget=True)
    for epoch in range(10, 200):
        source = c.optim.lr * 0.1 ** ((epoch + 1 - 10) // 60)
        for step in (epoch * steps_per_epoch, (epoch + 1) * steps_per_epoch - 1):
            assert sched.lr_at(step) == pytest.approx(source), (epoch, step)
    # the warmup ends at the source's first full-lr epoch and starts at its first epoch's lr
    assert sched.lr_at(0) == pytest.approx(0.01) and sched.lr_at(10 * steps_per_epoch) == pytest.approx(0.1)


# ---------------------------------------------------------------- smoke: a few steps on real CIFAR-10
def _one_config_per_model() -> dict[str, Path]:
    """The cifar10 config with the shortest name for each model (resnet18 -> resnet18.yaml)."""
    chosen: dict[str, Path] = {}
    for path in sorted((REPO / "configs" / "cifar10").glob("*.yaml"), key=lambda p: (len(p.stem), p.stem)):
        chosen.setdefault(load_config(path).model.name, path)
    return chosen


SMOKE = _one_config_per_model()


def _tiny_budget(cfg: Config, root: Path, runs: Path) -> list[str]:
    """Tiny-budget overrides that keep the config's own optimiser, schedule, model and data options."""
    over = [
        f"data.root={root}", "train.steps=2", "train.batch_size=8", "data.train_size=64",
        f"data.val_size={20 if cfg.data.val_size else 0}", "data.test_size=16", "data.train_subset_size=8",
        "eval.every=2", "eval.batch_size=16", "log.every=1", "log.progress=never", "train.threads=1",
        f"train.runs_dir={runs}",
    ]
    if cfg.sched.warmup_steps >= 2:
        over.append("sched.warmup_steps=1")
    if cfg.sched.milestones:
        over.append("sched.milestones=[1]")
    return over


@pytest.mark.slow  # trains on real CIFAR-10; test_models.py's train-step test is the quick check of every model
@pytest.mark.parametrize("model", sorted(SMOKE), ids=str)
def test_smoke_trains_from_config_on_cifar10(model, tmp_path):
    root = require_cifar()
    path = SMOKE[model]
    cfg = load_config(path, _tiny_budget(load_config(path), root, tmp_path))
    run_dir = train(cfg)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["steps"] == 2 and summary["model"] == model, summary
    assert math.isfinite(summary["test_loss"]), summary
    lines = read_jsonl(run_dir / "metrics.jsonl")
    train_lines = [r for r in lines if r.get("split") == "train"]
    assert train_lines, lines
    for r in train_lines:
        for k, v in r.items():
            if k.startswith("loss"):
                assert math.isfinite(v), (k, r)
    if cfg.model.name == "vit_aux_3x4x256_p8":
        assert {"loss_aux_l4", "loss_aux_l8"} <= set(train_lines[-1]), train_lines[-1]
