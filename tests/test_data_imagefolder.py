"""Image-folder datasets: train/<class>/* and test/<class>/*."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from classbench.data.imagefolder import load_imagefolder
from classbench.errors import DataError

REAL_JPEG = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "cifar10-jpeg"


def make_folder(root: Path, classes=("cat", "dog", "emu"), n_train=4, n_test=2, size=(12, 10), fmt="png", seed=0,
                smooth=False):
    """Write random images; returns {split: (images (N,3,H,W) uint8, labels)} in loader order."""
    rng = np.random.default_rng(seed)
    out = {}
    w, h = size
    for split, n in (("train", n_train), ("test", n_test)):
        imgs, labels = [], []
        for ci, cls in enumerate(sorted(classes)):
            d = root / split / cls
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                if smooth:  # a flat random colour plus a gentle ramp: JPEG keeps it nearly intact
                    base = rng.integers(40, 200, size=(1, 1, 3))
                    ramp = np.add.outer(np.arange(h), np.arange(w))[:, :, None] * 2
                    arr = (base + ramp).clip(0, 255).astype(np.uint8)
                else:
                    arr = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
                Image.fromarray(arr).save(d / f"{i:03d}.{fmt}", quality=95)
                imgs.append(arr.transpose(2, 0, 1))
                labels.append(ci)
        out[split] = (np.stack(imgs), np.array(labels))
    return out


def test_png_exact(tmp_path):
    want = make_folder(tmp_path, size=(12, 10))
    train, test, classes = load_imagefolder(tmp_path)
    assert classes == ["cat", "dog", "emu"]
    assert train.images.shape == (12, 3, 10, 12) and train.images.dtype == torch.uint8
    assert train.images.is_contiguous()
    assert np.array_equal(train.images.numpy(), want["train"][0])
    assert np.array_equal(train.labels.numpy(), want["train"][1])
    assert np.array_equal(test.images.numpy(), want["test"][0])
    assert np.array_equal(test.labels.numpy(), want["test"][1])


def test_jpeg_close_and_modes(tmp_path):
    want = make_folder(tmp_path, classes=("a", "b"), size=(16, 16), fmt="jpg", smooth=True)
    # grey, palette and RGBA files are converted to RGB
    Image.fromarray(np.full((16, 16), 77, np.uint8), mode="L").save(tmp_path / "train" / "a" / "zz_grey.png")
    Image.new("P", (16, 16)).save(tmp_path / "train" / "b" / "zz_palette.png")
    Image.new("RGBA", (16, 16), (1, 2, 3, 4)).save(tmp_path / "test" / "b" / "zz_rgba.png")
    (tmp_path / "train" / "a" / ".DS_Store").write_bytes(b"junk")  # hidden files are ignored
    train, test, classes = load_imagefolder(tmp_path)
    assert classes == ["a", "b"] and len(train) == 10 and len(test) == 5
    assert train.labels.tolist() == [0] * 5 + [1] * 5
    assert torch.all(train.images[4] == 77)
    assert test.images[4, :, 0, 0].tolist() == [1, 2, 3]
    err = np.abs(train.images[:4].numpy().astype(int) - want["train"][0][:4].astype(int)).mean()
    assert err < 4, err


def test_resize_only_when_asked(tmp_path):
    make_folder(tmp_path, classes=("a", "b"), size=(20, 20))
    Image.new("RGB", (40, 30), (200, 10, 10)).save(tmp_path / "train" / "a" / "big.png")
    with pytest.raises(DataError, match="data.image_size"):
        load_imagefolder(tmp_path)
    train, test, _ = load_imagefolder(tmp_path, image_size=8)
    assert train.images.shape == (9, 3, 8, 8) and test.images.shape == (4, 3, 8, 8)
    big = train.images[4]  # sorted: 000..003, big.png
    assert big[:, 2:6, 2:6].float().mean(dim=(1, 2)).round().tolist() == [200.0, 10.0, 10.0]
    # same size as the target: pixels unchanged
    (tmp_path / "train" / "a" / "big.png").unlink()
    plain = load_imagefolder(tmp_path)[0]
    same = load_imagefolder(tmp_path, image_size=20)[0]
    assert torch.equal(same.images, plain.images)


def test_limit_per_class(tmp_path):
    want = make_folder(tmp_path, classes=("a", "b"), n_train=5, n_test=3)
    train, test, _ = load_imagefolder(tmp_path, limit_per_class=2)
    assert train.labels.tolist() == [0, 0, 1, 1] and len(test) == 4
    assert np.array_equal(train.images[2].numpy(), want["train"][0][5])


@pytest.mark.slow  # over a second on 2 quiet cores (2026-12-02); the quick loop keeps the cheaper tests
@pytest.mark.skipif(not REAL_JPEG.is_dir(), reason="shared cifar10-jpeg folder absent")
def test_real_cifar10_jpeg_subset():
    train, test, classes = load_imagefolder(REAL_JPEG, limit_per_class=20)
    assert classes == ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    assert train.images.shape == (200, 3, 32, 32) and test.images.shape == (200, 3, 32, 32)
    assert torch.bincount(train.labels).tolist() == [20] * 10
    mean = train.images.double().mean().item() / 255
    assert 0.3 < mean < 0.65
