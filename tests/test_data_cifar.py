"""CIFAR-10/100 readers, the safe unpickler, the Split type and the synthetic task."""

from __future__ import annotations

import os
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from classbench.data import cifar
from classbench.data.cifar import load_cifar
from classbench.data.safe_pickle import safe_load_pickle
from classbench.data.synthetic import make_synthetic
from classbench.data.types import Split
from classbench.errors import DataError

sys.path.insert(0, str(Path(__file__).parent))
from helpers_data import (  # noqa: E402
    CIFAR10_CLASSES,
    md5_of,
    write_cifar10,
    write_cifar100,
    write_malicious_pickle,
)

REAL_CIFAR10 = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    # Never reach the internet from tests: any download goes to a closed local port.
    monkeypatch.setitem(cifar.URLS, "cifar10", "http://127.0.0.1:9/cifar-10-python.tar.gz")
    monkeypatch.setitem(cifar.URLS, "cifar100", "http://127.0.0.1:9/cifar-100-python.tar.gz")
    monkeypatch.setattr(cifar, "DOWNLOAD_TIMEOUT_S", 5.0)


def _no_tmp_left(root: Path) -> None:
    left = [p.name for p in root.iterdir() if p.name.startswith(".classbench-tmp")]
    assert not left, left


# --------------------------------------------------------------------------- Split


def test_split_checks_and_len():
    s = Split(torch.zeros(4, 3, 8, 8, dtype=torch.uint8), torch.zeros(4, dtype=torch.int64))
    assert len(s) == 4 and s.image_size == (8, 8)
    nc = torch.zeros(4, 8, 8, 3, dtype=torch.uint8).permute(0, 3, 1, 2)
    assert Split(nc, torch.zeros(4, dtype=torch.int64)).images.is_contiguous()
    bad = [
        (torch.zeros(4, 3, 8, 8), torch.zeros(4, dtype=torch.int64)),  # float images
        (torch.zeros(4, 1, 8, 8, dtype=torch.uint8), torch.zeros(4, dtype=torch.int64)),  # 1 channel
        (torch.zeros(3, 8, 8, dtype=torch.uint8), torch.zeros(3, dtype=torch.int64)),  # 3-D
        (torch.zeros(4, 3, 8, 8, dtype=torch.uint8), torch.zeros(4, dtype=torch.int32)),  # int32 labels
        (torch.zeros(4, 3, 8, 8, dtype=torch.uint8), torch.zeros(4, 1, dtype=torch.int64)),  # 2-D labels
        (torch.zeros(4, 3, 8, 8, dtype=torch.uint8), torch.zeros(5, dtype=torch.int64)),  # length mismatch
        (np.zeros((4, 3, 8, 8), np.uint8), torch.zeros(4, dtype=torch.int64)),  # not a tensor
    ]
    for images, labels in bad:
        with pytest.raises(DataError):
            Split(images, labels)


# --------------------------------------------------------------------------- safe pickle


@pytest.mark.parametrize("protocol", [2, 4, 5])
@pytest.mark.parametrize("encoding", ["latin1", "bytes"])
def test_safe_pickle_loads_numpy_and_builtins(tmp_path, protocol, encoding):
    obj = {
        b"data": np.arange(24, dtype=np.uint8).reshape(2, 12),
        "f": np.linspace(0, 1, 5, dtype=np.float32),
        "i": np.int64(7),
        "dt": np.dtype("<i4"),
        "empty": b"",
        "containers": [1, 2.5, (3, 4), {5, 6}, frozenset({7}), bytearray(b"xy"), None, True, "s", b"b"],
    }
    p = tmp_path / "x.pkl"
    p.write_bytes(pickle.dumps(obj, protocol=protocol))
    got = safe_load_pickle(p, encoding=encoding)
    assert set(got) == {"data", "f", "i", "dt", "empty", "containers"}  # bytes keys normalised
    assert np.array_equal(got["data"], obj[b"data"]) and got["data"].dtype == np.uint8
    assert np.array_equal(got["f"], obj["f"])
    assert got["i"] == 7 and got["dt"] == np.dtype("<i4")
    assert got["containers"] == obj["containers"]


def test_safe_pickle_numpy1_spelling(tmp_path):
    # Pickles written by numpy 1.x (and the official Python 2 files) name numpy.core.multiarray.
    data = pickle.dumps(np.arange(6, dtype=np.uint8), protocol=2)
    data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    p = tmp_path / "old.pkl"
    p.write_bytes(data)
    assert np.array_equal(safe_load_pickle(p), np.arange(6, dtype=np.uint8))


@pytest.mark.parametrize("kind", ["os.system", "open", "eval", "exec", "subprocess", "nested"])
def test_safe_pickle_refuses_code(tmp_path, kind):
    marker = tmp_path / "MARKER"
    p = write_malicious_pickle(tmp_path / "evil.pkl", marker, kind=kind)
    with pytest.raises(DataError) as e:
        safe_load_pickle(p)
    assert str(p) in str(e.value) and "refused" in str(e.value)
    assert not marker.exists()


# --------------------------------------------------------------------------- CIFAR-10


def _check_cifar10(train, test, classes, w):
    assert classes == CIFAR10_CLASSES
    assert train.images.dtype == torch.uint8 and train.images.shape == (len(w["train_labels"]), 3, 32, 32)
    assert train.images.is_contiguous() and test.images.is_contiguous()
    assert np.array_equal(train.images.numpy(), w["train_images"])
    assert np.array_equal(train.labels.numpy(), w["train_labels"])
    assert np.array_equal(test.images.numpy(), w["test_images"])
    assert np.array_equal(test.labels.numpy(), w["test_labels"])
    assert train.labels.dtype == torch.int64


@pytest.mark.parametrize("key_type", ["str", "bytes"])
@pytest.mark.parametrize("form", ["folder", "tar.gz"])
def test_cifar10_roundtrip(tmp_path, monkeypatch, key_type, form):
    w = write_cifar10(tmp_path, n_train_per_batch=7, n_test=9, key_type=key_type, archive=form == "tar.gz")
    if form == "tar.gz":
        monkeypatch.setitem(cifar.MD5, "cifar10", w["md5"])
        assert not (tmp_path / "cifar-10-batches-py").exists()
    train, test, classes = load_cifar("cifar10", tmp_path, download=False)
    _check_cifar10(train, test, classes, w)
    assert (tmp_path / "cifar-10-batches-py" / "data_batch_5").is_file()  # unpacked in place
    _no_tmp_left(tmp_path)
    # second call reads the unpacked folder
    train2, _, _ = load_cifar("cifar10", str(tmp_path), download=False)
    assert torch.equal(train2.images, train.images)


def test_cifar10_python2_protocol(tmp_path):
    w = write_cifar10(tmp_path, n_train_per_batch=3, n_test=4, key_type="bytes", protocol=2)
    _check_cifar10(*load_cifar("cifar10", tmp_path, download=False), w)


def test_cifar10_coarse_is_refused(tmp_path):
    write_cifar10(tmp_path, n_train_per_batch=2, n_test=2)
    with pytest.raises(DataError, match="cifar100"):
        load_cifar("cifar10", tmp_path, labels="coarse")


def test_unknown_name(tmp_path):
    with pytest.raises(DataError, match="cifar10"):
        load_cifar("cifar11", tmp_path)


# --------------------------------------------------------------------------- CIFAR-100


@pytest.mark.parametrize("key_type", ["str", "bytes"])
@pytest.mark.parametrize("form", ["folder", "tar.gz"])
def test_cifar100_fine_and_coarse(tmp_path, monkeypatch, key_type, form):
    w = write_cifar100(tmp_path, n_train=40, n_test=15, key_type=key_type, archive=form == "tar.gz")
    if form == "tar.gz":
        monkeypatch.setitem(cifar.MD5, "cifar100", w["md5"])
    train, test, classes = load_cifar("cifar100", tmp_path, download=False)
    assert classes == w["fine_classes"] and len(classes) == 100
    assert np.array_equal(train.images.numpy(), w["train_images"])
    assert np.array_equal(test.images.numpy(), w["test_images"])
    assert np.array_equal(train.labels.numpy(), w["train_fine"])
    assert np.array_equal(test.labels.numpy(), w["test_fine"])

    ctrain, ctest, cclasses = load_cifar("cifar100", tmp_path, labels="coarse", download=False)
    assert cclasses == w["coarse_classes"] and len(cclasses) == 20
    assert np.array_equal(ctrain.labels.numpy(), w["train_coarse"])
    assert np.array_equal(ctest.labels.numpy(), w["test_coarse"])
    assert torch.equal(ctrain.images, train.images)
    _no_tmp_left(tmp_path)


# --------------------------------------------------------------------------- finding / downloading


def test_nothing_found_no_download(tmp_path):
    with pytest.raises(DataError) as e:
        load_cifar("cifar10", tmp_path / "nowhere", download=False)
    msg = str(e.value)
    assert str(tmp_path / "nowhere" / "cifar-10-batches-py") in msg
    assert str(tmp_path / "nowhere" / "cifar-10-python.tar.gz") in msg
    assert "data.root=" in msg and "CLASSBENCH_DATA=" in msg


@pytest.mark.parametrize("name,folder,archive", [
    ("cifar10", "cifar-10-batches-py", "cifar-10-python.tar.gz"),
    ("cifar100", "cifar-100-python", "cifar-100-python.tar.gz"),
])
def test_download_fails_offline_says_where_it_looked(tmp_path, name, folder, archive):
    import time

    t = time.perf_counter()
    with pytest.raises(DataError) as e:
        load_cifar(name, tmp_path)
    assert time.perf_counter() - t < 10
    msg = str(e.value)
    assert str(tmp_path / folder) in msg and str(tmp_path / archive) in msg
    assert "127.0.0.1:9" in msg and "failed" in msg
    assert "data.root=" in msg and "CLASSBENCH_DATA=" in msg and f"place {archive}" in msg
    assert sorted(os.listdir(tmp_path)) == []  # no partial download left


def test_download_from_mirror_checks_md5_and_unpacks(tmp_path, monkeypatch):
    src = tmp_path / "mirror"
    w = write_cifar10(src, n_train_per_batch=3, n_test=3, archive=True)
    root = tmp_path / "data"
    monkeypatch.setitem(cifar.URLS, "cifar10", w["archive"].as_uri())
    monkeypatch.setitem(cifar.MD5, "cifar10", w["md5"])
    _check_cifar10(*load_cifar("cifar10", root), w)
    assert md5_of(root / "cifar-10-python.tar.gz") == w["md5"]
    _no_tmp_left(root)


def test_download_wrong_md5_keeps_nothing(tmp_path, monkeypatch):
    src = tmp_path / "mirror"
    w = write_cifar10(src, n_train_per_batch=3, n_test=3, archive=True)
    root = tmp_path / "data"
    monkeypatch.setitem(cifar.URLS, "cifar10", w["archive"].as_uri())
    with pytest.raises(DataError, match="md5"):
        load_cifar("cifar10", root)
    assert not root.exists()  # the folder it created is removed again


def test_archive_wrong_md5_says_delete(tmp_path):
    w = write_cifar10(tmp_path, n_train_per_batch=2, n_test=2, archive=True)
    with pytest.raises(DataError) as e:
        load_cifar("cifar10", tmp_path, download=False)
    msg = str(e.value)
    assert str(w["archive"]) in msg and w["md5"] in msg and cifar.MD5["cifar10"] in msg and "Delete" in msg
    assert not (tmp_path / "cifar-10-batches-py").exists()


# --------------------------------------------------------------------------- real data


@pytest.mark.slow  # over a second on 2 quiet cores (2026-12-02); the quick loop keeps the cheaper tests
@pytest.mark.skipif(not (REAL_CIFAR10 / "cifar-10-batches-py").is_dir(), reason="shared CIFAR-10 pickles absent")
def test_real_cifar10_pickles():
    train, test, classes = load_cifar("cifar10", REAL_CIFAR10, download=False)
    assert classes == CIFAR10_CLASSES
    # The shared test batch holds all 10,000 official test images (until 2026-12-02 only the first 1,000).
    assert train.images.shape == (50000, 3, 32, 32) and test.images.shape == (10000, 3, 32, 32)
    assert test.labels[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
    assert torch.bincount(train.labels).tolist() == [5000] * 10
    assert torch.bincount(test.labels).tolist() == [1000] * 10
    test_mean = test.images.sum(dim=(0, 2, 3), dtype=torch.int64).double() / (10000 * 1024 * 255)
    assert torch.allclose(test_mean, torch.tensor([0.4942, 0.4851, 0.4504], dtype=torch.float64), atol=3e-3)
    mean = train.images.sum(dim=(0, 2, 3), dtype=torch.int64).double() / (50000 * 1024 * 255)
    assert torch.allclose(mean, torch.tensor([0.4914, 0.4822, 0.4465], dtype=torch.float64), atol=3e-3)


# --------------------------------------------------------------------------- synthetic


def test_synthetic_shapes_and_determinism():
    train, test, classes = make_synthetic(num_classes=5, train_size=100, test_size=40, image_size=16, seed=3)
    assert classes == [f"class_{i}" for i in range(5)]
    assert train.images.shape == (100, 3, 16, 16) and train.images.dtype == torch.uint8
    assert test.images.shape == (40, 3, 16, 16)
    assert torch.bincount(train.labels, minlength=5).tolist() == [20] * 5
    again = make_synthetic(num_classes=5, train_size=100, test_size=40, image_size=16, seed=3)
    assert torch.equal(again[0].images, train.images) and torch.equal(again[1].labels, test.labels)
    other = make_synthetic(num_classes=5, train_size=100, test_size=40, image_size=16, seed=4)
    assert not torch.equal(other[0].images, train.images)
    # the test split does not depend on the train size
    bigger = make_synthetic(num_classes=5, train_size=300, test_size=40, image_size=16, seed=3)
    assert torch.equal(bigger[1].images, test.images)
    with pytest.raises(DataError):
        make_synthetic(num_classes=1)


@pytest.fixture
def one_thread():
    # 2 shared cores: more torch threads only add contention for this tiny model.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_synthetic_is_learnable(one_thread):
    torch.manual_seed(0)
    train, test, _ = make_synthetic(seed=0, image_size=16)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(32, 10),
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x = (train.images.float() / 255 - 0.5) / 0.25
    g = torch.Generator().manual_seed(0)
    for _ in range(40):
        idx = torch.randint(0, len(train), (64,), generator=g)
        loss = torch.nn.functional.cross_entropy(model(x[idx]), train.labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        acc = (model((test.images.float() / 255 - 0.5) / 0.25).argmax(1) == test.labels).float().mean().item()
    assert acc > 0.4, acc  # chance is 0.1
