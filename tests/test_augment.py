"""Batched augmentation (classbench.data.augment) and its place in the DeviceLoader (issue #18)."""

from __future__ import annotations

import importlib.util
import math
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from classbench.config import DataConfig, load_config
from classbench.data.augment import (
    CIFAR10_POLICY, OP, OPS, WIDE_OPS, Augment, apply_ops, build_augment, equalize, magnitude_table,
    resized_crop_boxes,
)
from classbench.data.loader import DeviceLoader, Normalize
from classbench.data.types import Split
from classbench.errors import ConfigError

from conftest import REPO

RAW = Normalize(None, None)  # x = pixel / 255, so the pixels can be read back exactly
LAYOUT_COMMIT = "eb20568"  # the loader before this issue: the pipeline augment=none must reproduce


def split(n=64, size=16, classes=4, seed=0, low=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(low, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)
    return Split(images, torch.arange(n) % classes)


def pixels(x: torch.Tensor) -> torch.Tensor:
    return (x * 255).round()


def batches(loader, k):
    """The first `k` training batches, across epochs."""
    out = []
    for x, y in loader.batches():
        if len(out) == k:
            break
        out.append((x.clone(), y.clone()))
    return out


FULL = Augment(policy="autoaugment", crop="resized", rotate=15, cutout=5)
PIPELINES = [
    Augment(policy="randaugment", randaugment_n=3, randaugment_m=15), Augment(policy="trivialaugment"),
    Augment(policy="autoaugment"), Augment(crop="resized", crop_scale=(0.5, 1.0)), Augment(rotate=30),
    Augment(cutout=6), FULL,
]


# ---------------------------------------------------------------- augment=none is today's pipeline
def _reference_batches(s: Split, batch: int, pad: int, seed: int, epochs: int):
    """Today's pipeline written per image: the same draws (permutation, offsets, flips) in the same order."""
    g = torch.Generator().manual_seed(seed)
    padded = F.pad(s.images, (pad,) * 4)
    h, w = s.images.shape[-2:]
    out = []
    for _ in range(epochs):
        perm = torch.randperm(len(s), generator=g)
        offsets = torch.randint(0, 2 * pad + 1, (len(s), 2), generator=g)
        flips = torch.randint(0, 2, (len(s),), generator=g, dtype=torch.bool)
        for step in range(len(s) // batch):
            imgs = []
            for i in perm[step * batch:(step + 1) * batch].tolist():
                dy, dx = offsets[i].tolist()
                img = padded[i, :, dy:dy + h, dx:dx + w]
                imgs.append(img.flip(-1) if flips[i] else img)
            idx = perm[step * batch:(step + 1) * batch]
            out.append((torch.stack(imgs).float() / 255, s.labels[idx]))
    return out


def test_default_data_config_adds_no_augmentation():
    assert build_augment(DataConfig()) is None
    assert build_augment(DataConfig(augment="randaugment")) is not None


@pytest.mark.parametrize("augment", [None, Augment()])
def test_augment_none_is_the_plain_pipeline_per_image(augment):
    s = split(n=40)
    loader = DeviceLoader(s, 16, train=True, normalize=RAW, pad=2, flip=True, seed=5, augment=augment)
    got = batches(loader, 6)  # 3 epochs of 2 batches
    want = _reference_batches(s, 16, 2, 5, 3)
    for (x, y), (xr, yr) in zip(got, want):
        assert torch.equal(pixels(x), pixels(xr)) and torch.equal(y, yr)


def _layout_loader_module():
    """classbench/data/loader.py as committed before this issue (needs git and the repository history)."""
    try:
        text = subprocess.run(["git", "show", f"{LAYOUT_COMMIT}:classbench/data/loader.py"], cwd=REPO,
                              capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip(f"no git history with commit {LAYOUT_COMMIT}")
    spec = importlib.util.spec_from_loader("classbench.data._loader_before_18", loader=None)
    module = importlib.util.module_from_spec(spec)
    module.__package__ = "classbench.data"
    sys.modules[spec.name] = module
    try:
        exec(compile(text, f"{LAYOUT_COMMIT}:loader.py", "exec"), module.__dict__)
    finally:
        del sys.modules[spec.name]
    return module


@pytest.mark.parametrize("pad,flip,channels_last", [(4, True, False), (0, True, True), (3, False, False)])
def test_augment_none_is_bit_identical_to_the_committed_loader(pad, flip, channels_last):
    old = _layout_loader_module()
    s = split(n=50, size=12)
    norm = Normalize((0.4, 0.5, 0.6), (0.2, 0.25, 0.3))
    kw = dict(train=True, pad=pad, flip=flip, seed=11, channels_last=channels_last)
    new_batches = batches(DeviceLoader(s, 16, normalize=norm, augment=build_augment(DataConfig()), **kw), 9)
    old_batches = batches(old.DeviceLoader(s, 16, normalize=old.Normalize(norm.mean, norm.std), **kw), 9)
    for (x, y), (xo, yo) in zip(new_batches, old_batches):
        assert torch.equal(x, xo) and torch.equal(y, yo)
        assert x.stride() == xo.stride()


# ---------------------------------------------------------------- pipelines in the loader
@pytest.mark.parametrize("augment", PIPELINES, ids=lambda a: f"{a.policy}-{a.crop}-r{a.rotate:g}-c{a.cutout}")
def test_pipeline_shapes_dtype_range(augment):
    s = split(n=48)
    loader = DeviceLoader(s, 16, train=True, normalize=RAW, pad=2, flip=True, augment=augment, channels_last=True)
    for x, y in loader:
        assert x.shape == (16, 3, 16, 16) and x.dtype == torch.float32 and y.dtype == torch.int64
        assert x.is_contiguous(memory_format=torch.channels_last)
        p = x * 255
        assert p.min() >= 0 and p.max() <= 255
        assert torch.allclose(p, p.round(), atol=1e-3), "pixels stay whole uint8 values"


@pytest.mark.parametrize("augment", PIPELINES[:3] + [FULL], ids=lambda a: a.policy)
def test_pipeline_changes_images_and_keeps_labels(augment):
    s = split(n=32)
    plain = batches(DeviceLoader(s, 32, train=True, normalize=RAW, pad=2, flip=True, seed=1), 1)[0]
    aug = batches(DeviceLoader(s, 32, train=True, normalize=RAW, pad=2, flip=True, seed=1, augment=augment), 1)[0]
    assert torch.equal(plain[1], aug[1])
    changed = (plain[0] != aug[0]).flatten(1).any(1)
    assert 0.3 < changed.float().mean() <= 1.0


def test_resume_mid_epoch_replays_the_same_augmented_batches():
    s = split(n=64)
    kw = dict(train=True, normalize=RAW, pad=2, flip=True, seed=3, augment=FULL)
    full = batches(DeviceLoader(s, 16, **kw), 7)  # crosses an epoch boundary (4 batches an epoch)
    first = DeviceLoader(s, 16, **kw)
    it = first.batches()
    for _ in range(5):
        next(it)
    state = first.state_dict()
    resumed = DeviceLoader(s, 16, **kw)
    resumed.load_state_dict(state)
    for (x, y), (xr, yr) in zip(full[5:], batches(resumed, 2)):
        assert torch.equal(x, xr) and torch.equal(y, yr)


def test_ddp_shards_are_the_single_process_batch():
    s = split(n=64)
    kw = dict(train=True, normalize=RAW, pad=2, flip=True, seed=2, augment=Augment(crop="resized", cutout=4,
                                                                                        policy="trivialaugment"))
    whole = batches(DeviceLoader(s, 16, **kw), 3)
    ranks = [batches(DeviceLoader(s, 16, rank=r, world_size=2, **kw), 3) for r in range(2)]
    for step, (x, y) in enumerate(whole):
        xs = torch.cat([ranks[0][step][0], ranks[1][step][0]])
        ys = torch.cat([ranks[0][step][1], ranks[1][step][1]])
        assert torch.equal(ys, y)
        assert (pixels(xs) - pixels(x)).abs().max() <= 1  # per-image work; batch size may change float rounding


def test_eval_loader_ignores_augmentation():
    s = split(n=20)
    a = list(DeviceLoader(s, 8, train=False, normalize=RAW, augment=FULL))
    b = list(DeviceLoader(s, 8, train=False, normalize=RAW))
    assert len(a) == len(b) == 3
    assert all(torch.equal(x, xb) for (x, _), (xb, _) in zip(a, b))


# ---------------------------------------------------------------- Cutout
@pytest.mark.parametrize("side", [1, 5, 16])
def test_cutout_erases_exactly_one_square_of_the_configured_side(side):
    s = split(n=32, low=1)  # no zero pixels of its own, so the erased ones are countable
    loader = DeviceLoader(s, 32, train=True, normalize=RAW, pad=0, flip=False, augment=Augment(cutout=side))
    x, _ = next(iter(loader))
    zero = (x == 0).all(1)  # (B, H, W): erased in every channel
    assert torch.equal((x == 0).any(1), zero)
    assert zero.flatten(1).sum(1).tolist() == [side * side] * 32
    rows, cols = zero.any(2), zero.any(1)
    assert rows.sum(1).tolist() == [side] * 32 and cols.sum(1).tolist() == [side] * 32  # a square, not a scatter
    x_plain, _ = next(iter(DeviceLoader(s, 32, train=True, normalize=RAW, pad=0, flip=False)))
    assert torch.equal(torch.where(zero.unsqueeze(1), 0.0, x_plain), x)  # nothing else changed


def test_cutout_fills_the_mean_when_normalised():
    s = split(n=16, low=1)
    norm = Normalize((0.5, 0.4, 0.3), (0.2, 0.2, 0.2))
    x, _ = next(iter(DeviceLoader(s, 16, train=True, normalize=norm, augment=Augment(cutout=4))))
    assert ((x == 0).all(1).flatten(1).sum(1) == 16).all()


def test_cutout_larger_than_the_image_is_a_config_error():
    with pytest.raises(ConfigError, match=r"data.cutout=17 is larger than the 16x16 images"):
        DeviceLoader(split(), 16, train=True, normalize=RAW, augment=Augment(cutout=17))


# ---------------------------------------------------------------- the operations
def _batch(n=24, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), generator=g).float()


def _apply(x, name, value):
    op = torch.full((len(x),), OP[name])
    return apply_ops(x.clone(), op, torch.full((len(x),), float(value)))


@pytest.mark.parametrize("name", OPS)
def test_each_operation_keeps_shape_dtype_and_whole_pixel_values(name):
    x = _batch()
    table = magnitude_table("trivialaugment", 16, 16)
    out = _apply(x, name, table[OP[name], 20] * (-1 if name in ("shear_x", "rotate", "contrast") else 1))
    assert out.shape == x.shape and out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 255 and torch.equal(out, out.round())


def test_identity_and_neutral_magnitudes_change_nothing():
    x = _batch()
    for name, neutral in [("identity", 0.0), ("brightness", 0.0), ("color", 0.0), ("contrast", 0.0),
                          ("sharpness", 0.0), ("posterize", 8), ("solarize", 256), ("translate_x", 0),
                          ("shear_y", 0.0), ("rotate", 0.0)]:
        assert torch.equal(_apply(x, name, neutral), x), name


def test_operations_apply_per_image():
    x = _batch(n=4)
    op = torch.tensor([OP["invert"], OP["identity"], OP["posterize"], OP["brightness"]])
    value = torch.tensor([0.0, 0.0, 1.0, -1.0])
    out = apply_ops(x.clone(), op, value)
    assert torch.equal(out[0], 255 - x[0])
    assert torch.equal(out[1], x[1])
    assert set(out[2].unique().tolist()) <= {0.0, 128.0}
    assert torch.equal(out[3], torch.zeros_like(x[3]))  # brightness factor 0: black


def test_pixel_operations_match_their_definitions():
    x = _batch()
    assert torch.equal(_apply(x, "solarize", 0), 255 - x)
    assert torch.equal(_apply(x, "solarize", 128), torch.where(x >= 128, 255 - x, x))
    assert torch.equal(_apply(x, "posterize", 3), (x.long() & 0b11100000).float())
    gray = _apply(x, "color", -1.0)  # factor 0: the grayscale image
    assert torch.equal(gray[:, 0], gray[:, 1]) and torch.equal(gray[:, 1], gray[:, 2])
    flat = _apply(x, "contrast", -1.0)  # factor 0: the mean grey level everywhere
    assert (flat.flatten(1).max(1).values == flat.flatten(1).min(1).values).all()
    stretched = _apply(x * 0.5 + 20, "autocontrast", 0)
    assert (stretched.amin(dim=(2, 3)) == 0).all() and (stretched.amax(dim=(2, 3)) == 255).all()
    const = torch.full((2, 3, 8, 8), 77.0)
    assert torch.equal(_apply(const, "sharpness", 0.9), const)


def test_translate_moves_content_by_whole_pixels_and_fills_black():
    x = _batch(n=2)
    right = _apply(x, "translate_x", 3)
    assert torch.equal(right[..., 3:], x[..., :-3]) and (right[..., :3] == 0).all()
    up = _apply(x, "translate_y", -2)
    assert torch.equal(up[..., :-2, :], x[..., 2:, :]) and (up[..., -2:, :] == 0).all()


def test_rotate_by_90_degrees_is_a_quarter_turn_counter_clockwise():
    x = _batch(n=3)
    assert torch.equal(_apply(x, "rotate", 90), torch.rot90(x, 1, dims=(2, 3)))


def _equalize_one_channel(c: torch.Tensor) -> torch.Tensor:
    """PIL's ImageOps.equalize for one channel, written plainly."""
    hist = torch.bincount(c.flatten().long(), minlength=256)
    nonzero = hist[hist > 0]
    if len(nonzero) <= 1:
        return c
    step = (int(hist.sum()) - int(nonzero[-1])) // 255
    if step == 0:
        return c
    lut, n = [], step // 2
    for count in hist.tolist():
        lut.append(min(n // step, 255))
        n += count
    return torch.tensor(lut, dtype=torch.float32)[c.long()]


def test_equalize_matches_the_per_channel_algorithm():
    x = _batch(n=6)
    x[1] = (x[1] / 4).floor() + 100  # a narrow range
    x[2, 0] = 7.0  # a flat channel
    x[3, 1, :2] = 255  # a peak at the top value
    out = equalize(x)
    for i in range(len(x)):
        for c in range(3):
            assert torch.equal(out[i, c], _equalize_one_channel(x[i, c])), (i, c)


# ---------------------------------------------------------------- policies and their draws
def _plan(policy, n=4000, **kw):
    pipe = Augment(policy=policy, **kw).build(32, 32)
    return pipe.draw(n, torch.Generator().manual_seed(0))


def test_randaugment_draws_n_operations_of_magnitude_m():
    plan = _plan("randaugment", randaugment_n=3, randaugment_m=12)
    assert plan["op"].shape == (4000, 3)
    assert set(plan["op"].unique().tolist()) == set(range(WIDE_OPS))  # all 14, never invert
    table = magnitude_table("randaugment", 32, 32)
    assert torch.equal(plan["value"].abs(), table[plan["op"], 12])
    rot = plan["value"][plan["op"] == OP["rotate"]]
    assert torch.allclose(rot.abs(), torch.tensor(12.0)) and (rot < 0).any() and (rot > 0).any()


def test_trivialaugment_draws_one_operation_with_a_uniform_magnitude():
    plan = _plan("trivialaugment")
    assert plan["op"].shape == (4000, 1)
    shear = plan["value"][plan["op"] == OP["shear_x"]].abs()
    assert shear.max() <= 0.99 + 1e-6 and len(shear.unique()) > 20


def test_autoaugment_follows_the_cifar10_policy():
    plan = _plan("autoaugment", n=20000)
    op = plan["op"]
    assert op.shape == (20000, 2)
    first = {OP[sub[0][0]] for sub in CIFAR10_POLICY} | {OP["identity"]}
    assert set(op[:, 0].unique().tolist()) <= first
    # ("invert", 0.1) opens one sub-policy in 25: about 0.4 % of first operations are inversions.
    share = (op[:, 0] == OP["invert"]).float().mean().item()
    assert 0.002 < share < 0.006
    # The 15th sub-policy's second operation is ("invert", 0.0): never applied; inversions come from
    # the 24th sub-policy only, about 0.1 / 25 of second operations.
    share2 = (op[:, 1] == OP["invert"]).float().mean().item()
    assert 0.002 < share2 < 0.006


def test_resized_crop_boxes_respect_scale_and_ratio():
    g = torch.Generator().manual_seed(0)
    boxes = resized_crop_boxes(5000, (0.25, 0.6), (0.5, 2.0), 32, 32, g)
    top, left, bh, bw = boxes.unbind(1)
    assert (top >= 0).all() and (left >= 0).all() and (top + bh <= 32 + 1e-4).all() and (left + bw <= 32 + 1e-4).all()
    area = bh * bw / 1024
    assert area.min() >= 0.25 - 1e-4 and area.max() <= 0.6 + 1e-4
    ratio = bw / bh
    assert ratio.min() >= 0.5 - 1e-4 and ratio.max() <= 2.0 + 1e-4


def test_resized_crop_of_the_whole_image_is_exact_and_flips_with_the_plan():
    s = split(n=16)
    aug = Augment(crop="resized", crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0))
    loader = DeviceLoader(s, 16, train=True, normalize=RAW, pad=4, flip=True, seed=0, augment=aug)
    x, y = next(iter(loader))
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(16, generator=g)
    flips = torch.randint(0, 2, (16,), generator=g, dtype=torch.bool)  # pad is ignored: no offsets drawn
    want = s.images[perm].float()
    want = torch.where(flips[perm].view(-1, 1, 1, 1), want.flip(-1), want)
    assert torch.equal(pixels(x), want)


def test_rotation_angles_stay_within_the_limit():
    plan = Augment(rotate=20).build(32, 32).draw(3000, torch.Generator().manual_seed(0))
    assert plan["angle"].abs().max() <= 20 and plan["angle"].std() > 8


# ---------------------------------------------------------------- config
@pytest.mark.parametrize("override,message", [
    ("data.augment=autoaug", "data.augment='autoaug' is not valid; choose one of: none, randaugment"),
    ("data.crop=random", "data.crop='random' is not valid"),
    ("data.cutout=33", "data.cutout=33 is larger than the 32x32 images"),
    ("data.cutout=-1", "data.cutout must not be negative"),
    ("data.rotate=-5", "data.rotate must not be negative"),
    ("data.randaugment_m=40", "data.randaugment_m must be a magnitude bin in 0..30"),
    ("data.crop_scale=[0.9,0.1]", "data.crop_scale must be [low, high]"),
    ("data.crop_ratio=[0,1]", "data.crop_ratio must be [low, high]"),
])
def test_bad_augmentation_values_are_one_line_config_errors(override, message):
    with pytest.raises(ConfigError) as e:
        load_config(REPO / "configs/cifar10/resnet20.yaml", [override])
    assert message in str(e.value) and "\n" not in str(e.value)


def test_cutout_is_checked_against_the_synthetic_image_size():
    with pytest.raises(ConfigError, match="larger than the 16x16 images"):
        load_config(None, ["data.name=synthetic", "data.image_size=16", "data.cutout=20", "train.steps=1"])
    cfg = load_config(None, ["data.name=synthetic", "data.image_size=16", "data.cutout=16", "train.steps=1"])
    assert cfg.data.cutout == 16 and math.isclose(cfg.data.crop_ratio[1], 4 / 3)
