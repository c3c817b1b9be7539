"""A corpus of broken datasets: each must give a DataError that names the culprit.

Every case builds a small broken dataset in ``tmp_path`` and returns the call
that loads it plus the strings the error message must contain (at least the
offending file or folder).  No case may leave temporary files behind or run
code from a pickle.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from classbench.data import cifar
from classbench.data.cifar import load_cifar
from classbench.data.imagefolder import load_imagefolder
from classbench.errors import DataError

sys.path.insert(0, str(Path(__file__).parent))
from helpers_data import (  # noqa: E402
    md5_of,
    write_batch,
    write_cifar10,
    write_cifar100,
    write_malicious_pickle,
    write_pickle,
    write_tar_gz_members,
)

CASES = {}


def case(fn):
    CASES[fn.__name__] = fn
    return fn


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    monkeypatch.setitem(cifar.URLS, "cifar10", "http://127.0.0.1:9/cifar-10-python.tar.gz")
    monkeypatch.setitem(cifar.URLS, "cifar100", "http://127.0.0.1:9/cifar-100-python.tar.gz")
    monkeypatch.setattr(cifar, "DOWNLOAD_TIMEOUT_S", 5.0)


def c10(tmp_path, **kw):
    kw.setdefault("n_train_per_batch", 4)
    kw.setdefault("n_test", 4)
    w = write_cifar10(tmp_path, **kw)
    return w, tmp_path / "cifar-10-batches-py"


def c10_loader(tmp_path, **kw):
    return lambda: load_cifar("cifar10", tmp_path, download=False, **kw)


def good_batch(n=4, **override):
    rng = np.random.default_rng(1)
    d = {"batch_label": "b", "labels": [int(x) for x in rng.integers(0, 10, n)],
         "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8)}
    d.update(override)
    return d


def trusted_archive(monkeypatch, path, name="cifar10"):
    """Make ``path`` pass the md5 check, so what is tested is what comes after."""
    monkeypatch.setitem(cifar.MD5, name, md5_of(path))


# --------------------------------------------------------------------------- CIFAR archives


@case
def archive_truncated(tmp_path, monkeypatch):
    w = write_cifar10(tmp_path, n_train_per_batch=50, n_test=10, archive=True)
    data = w["archive"].read_bytes()
    w["archive"].write_bytes(data[: len(data) // 2])
    trusted_archive(monkeypatch, w["archive"])
    return c10_loader(tmp_path), [str(w["archive"]), "truncated"]


@case
def archive_wrong_md5(tmp_path, monkeypatch):
    w = write_cifar10(tmp_path, n_train_per_batch=2, n_test=2, archive=True)
    return c10_loader(tmp_path), [str(w["archive"]), "md5", "Delete"]


@case
def archive_not_gzip(tmp_path, monkeypatch):
    p = tmp_path / "cifar-10-python.tar.gz"
    p.write_bytes(b"<html>404 not found</html>")
    trusted_archive(monkeypatch, p)
    return c10_loader(tmp_path), [str(p)]


@case
def archive_zero_bytes(tmp_path, monkeypatch):
    p = tmp_path / "cifar-100-python.tar.gz"
    p.write_bytes(b"")
    return (lambda: load_cifar("cifar100", tmp_path, download=False)), [str(p), "md5"]


@case
def archive_path_traversal(tmp_path, monkeypatch):
    root = tmp_path / "root"
    root.mkdir()
    p = write_tar_gz_members(root / "cifar-10-python.tar.gz", {"cifar-10-batches-py/../../evil.txt": b"x"})
    trusted_archive(monkeypatch, p)
    return c10_loader(root), [str(p), "evil.txt", ".."]


@case
def archive_absolute_member(tmp_path, monkeypatch):
    p = write_tar_gz_members(tmp_path / "cifar-10-python.tar.gz", {str(tmp_path / "abs_evil.txt"): b"x"})
    trusted_archive(monkeypatch, p)
    return c10_loader(tmp_path), [str(p), "absolute"]


@case
def archive_symlink_member(tmp_path, monkeypatch):
    p = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(p, "w:gz") as tar:
        ti = tarfile.TarInfo("cifar-10-batches-py/data_batch_1")
        ti.type = tarfile.SYMTYPE
        ti.linkname = "/etc/passwd"
        tar.addfile(ti)
    trusted_archive(monkeypatch, p)
    return c10_loader(tmp_path), [str(p), "data_batch_1", "links"]


@case
def archive_without_expected_folder(tmp_path, monkeypatch):
    p = write_tar_gz_members(tmp_path / "cifar-10-python.tar.gz", {"something-else/readme.txt": b"hello"})
    trusted_archive(monkeypatch, p)
    return c10_loader(tmp_path), [str(p), "cifar-10-batches-py"]


@case
def nothing_found_download_off(tmp_path, monkeypatch):
    return c10_loader(tmp_path), [str(tmp_path / "cifar-10-batches-py"), str(tmp_path / "cifar-10-python.tar.gz")]


@case
def download_fails_offline(tmp_path, monkeypatch):
    return (lambda: load_cifar("cifar100", tmp_path)), [
        str(tmp_path / "cifar-100-python"), str(tmp_path / "cifar-100-python.tar.gz"), "CLASSBENCH_DATA"]


# --------------------------------------------------------------------------- CIFAR batch files


@case
def pickle_truncated(tmp_path, monkeypatch):
    _, folder = c10(tmp_path)
    p = folder / "data_batch_2"
    p.write_bytes(p.read_bytes()[:5000])
    return c10_loader(tmp_path), [str(p), "truncated"]


@case
def pickle_zero_bytes(tmp_path, monkeypatch):
    _, folder = c10(tmp_path)
    p = folder / "data_batch_1"
    p.write_bytes(b"")
    return c10_loader(tmp_path), [str(p), "empty"]


@case
def pickle_garbage(tmp_path, monkeypatch):
    _, folder = c10(tmp_path)
    p = folder / "test_batch"
    p.write_bytes(os.urandom(3000))
    return c10_loader(tmp_path), [str(p)]


@case
def pickle_gzipped(tmp_path, monkeypatch):
    # someone gzipped a batch file in place
    _, folder = c10(tmp_path)
    p = folder / "data_batch_3"
    p.write_bytes(gzip.compress(p.read_bytes()))
    return c10_loader(tmp_path), [str(p)]


@case
def pickle_payload_os_system(tmp_path, monkeypatch):
    _, folder = c10(tmp_path)
    marker = tmp_path / "MARKER"
    p = write_malicious_pickle(folder / "data_batch_1", marker, kind="os.system")
    return c10_loader(tmp_path), [str(p), "system", "refused"]


@case
def pickle_payload_in_meta(tmp_path, monkeypatch):
    _, folder = c10(tmp_path)
    marker = tmp_path / "MARKER"
    p = write_malicious_pickle(folder / "batches.meta", marker, kind="open")
    return c10_loader(tmp_path), [str(p), "refused"]


@case
def pickle_payload_nested_in_dict(tmp_path, monkeypatch):
    _, folder = c10(tmp_path)
    marker = tmp_path / "MARKER"
    p = write_malicious_pickle(folder / "test_batch", marker, kind="nested")
    return c10_loader(tmp_path), [str(p), "refused"]


@case
def missing_batch_file(tmp_path, monkeypatch):
    _, folder = c10(tmp_path)
    (folder / "data_batch_3").unlink()
    return c10_loader(tmp_path), [str(folder / "data_batch_3"), "missing"]


@case
def missing_test_batch(tmp_path, monkeypatch):
    _, folder = c10(tmp_path)
    (folder / "test_batch").unlink()
    return c10_loader(tmp_path), [str(folder / "test_batch"), "missing"]


@case
def missing_meta(tmp_path, monkeypatch):
    _, folder = c10(tmp_path)
    (folder / "batches.meta").unlink()
    return c10_loader(tmp_path), [str(folder / "batches.meta"), "missing"]


@case
def meta_without_label_names(tmp_path, monkeypatch):
    _, folder = c10(tmp_path)
    write_batch(folder / "batches.meta", {"num_cases_per_batch": 4})
    return c10_loader(tmp_path), [str(folder / "batches.meta"), "label_names"]


@case
def wrong_array_shape(tmp_path, monkeypatch):
    _, folder = c10(tmp_path)
    write_batch(folder / "data_batch_1", good_batch(data=np.zeros((4, 3000), np.uint8)))
    return c10_loader(tmp_path), [str(folder / "data_batch_1"), "shape", "(4, 3000)"]


@case
def wrong_array_ndim(tmp_path, monkeypatch):
    _, folder = c10(tmp_path)
    write_batch(folder / "data_batch_2", good_batch(data=np.zeros((4, 3, 32, 32), np.uint8)), key_type="bytes")
    return c10_loader(tmp_path), [str(folder / "data_batch_2"), "shape"]


@case
def wrong_dtype(tmp_path, monkeypatch):
    _, folder = c10(tmp_path)
    write_batch(folder / "data_batch_1", good_batch(data=np.zeros((4, 3072), np.float32)))
    return c10_loader(tmp_path), [str(folder / "data_batch_1"), "uint8", "float32"]


@case
def data_not_an_array(tmp_path, monkeypatch):
    _, folder = c10(tmp_path)
    write_batch(folder / "data_batch_4", good_batch(data=[[0] * 3072] * 4))
    return c10_loader(tmp_path), [str(folder / "data_batch_4"), "numpy array"]


@case
def labels_out_of_range(tmp_path, monkeypatch):
    _, folder = c10(tmp_path)
    write_batch(folder / "test_batch", good_batch(labels=[0, 1, 10, 2]))
    return c10_loader(tmp_path), [str(folder / "test_batch"), "10", "0..9"]


@case
def labels_negative(tmp_path, monkeypatch):
    _, folder = c10(tmp_path)
    write_batch(folder / "data_batch_4", good_batch(labels=[0, -1, 2, 2]))
    return c10_loader(tmp_path), [str(folder / "data_batch_4"), "-1"]


@case
def labels_not_ints(tmp_path, monkeypatch):
    _, folder = c10(tmp_path)
    write_batch(folder / "data_batch_1", good_batch(labels=[0.5, 1.0, 2.0, 3.0]))
    return c10_loader(tmp_path), [str(folder / "data_batch_1"), "ints"]


@case
def label_data_length_mismatch(tmp_path, monkeypatch):
    _, folder = c10(tmp_path)
    write_batch(folder / "data_batch_5", good_batch(labels=[0, 1, 2]))
    return c10_loader(tmp_path), [str(folder / "data_batch_5"), "4 images", "3 labels"]


@case
def not_a_dict(tmp_path, monkeypatch):
    _, folder = c10(tmp_path)
    write_pickle(folder / "data_batch_1", [np.zeros((4, 3072), np.uint8), [0, 1, 2, 3]])
    return c10_loader(tmp_path), [str(folder / "data_batch_1"), "dict", "list"]


@case
def missing_data_key(tmp_path, monkeypatch):
    _, folder = c10(tmp_path)
    d = good_batch()
    d["pixels"] = d.pop("data")
    write_batch(folder / "data_batch_1", d, key_type="bytes")
    return c10_loader(tmp_path), [str(folder / "data_batch_1"), "'data'"]


@case
def missing_labels_key(tmp_path, monkeypatch):
    _, folder = c10(tmp_path)
    d = good_batch()
    del d["labels"]
    write_batch(folder / "test_batch", d)
    return c10_loader(tmp_path), [str(folder / "test_batch"), "'labels'"]


@case
def cifar100_missing_coarse_labels(tmp_path, monkeypatch):
    write_cifar100(tmp_path, n_train=6, n_test=3)
    folder = tmp_path / "cifar-100-python"
    d = {"batch_label": "x", "fine_labels": [1, 2, 3], "data": np.zeros((3, 3072), np.uint8)}
    write_batch(folder / "test", d)
    return (lambda: load_cifar("cifar100", tmp_path, labels="coarse", download=False)), [
        str(folder / "test"), "coarse_labels"]


@case
def cifar100_fine_label_out_of_range(tmp_path, monkeypatch):
    write_cifar100(tmp_path, n_train=6, n_test=3, key_type="bytes")
    folder = tmp_path / "cifar-100-python"
    d = {"batch_label": "x", "fine_labels": [1, 100, 3], "coarse_labels": [0, 0, 0],
         "data": np.zeros((3, 3072), np.uint8)}
    write_batch(folder / "train", d, key_type="bytes")
    return (lambda: load_cifar("cifar100", tmp_path, download=False)), [str(folder / "train"), "0..99"]


@case
def cifar100_missing_meta(tmp_path, monkeypatch):
    write_cifar100(tmp_path, n_train=6, n_test=3)
    folder = tmp_path / "cifar-100-python"
    (folder / "meta").unlink()
    return (lambda: load_cifar("cifar100", tmp_path, download=False)), [str(folder / "meta")]


# --------------------------------------------------------------------------- image folders


def png(path: Path, size=(8, 8), color=(10, 20, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


def image_tree(root: Path, classes=("a", "b"), n=2, size=(8, 8)):
    for split in ("train", "test"):
        for c in classes:
            for i in range(n):
                png(root / split / c / f"{i}.png", size)
    return root


@case
def imagefolder_empty_class(tmp_path, monkeypatch):
    image_tree(tmp_path)
    (tmp_path / "train" / "c").mkdir()
    (tmp_path / "test" / "c").mkdir()
    png(tmp_path / "test" / "c" / "0.png")
    return (lambda: load_imagefolder(tmp_path)), [str(tmp_path / "train" / "c"), "no images"]


@case
def imagefolder_empty_class_hidden_only(tmp_path, monkeypatch):
    image_tree(tmp_path)
    (tmp_path / "test" / "b" / "0.png").unlink()
    (tmp_path / "test" / "b" / "1.png").unlink()
    (tmp_path / "test" / "b" / ".DS_Store").write_bytes(b"x")
    return (lambda: load_imagefolder(tmp_path)), [str(tmp_path / "test" / "b"), "no images"]


@case
def imagefolder_corrupt_image(tmp_path, monkeypatch):
    image_tree(tmp_path)
    p = tmp_path / "train" / "b" / "1.png"
    data = p.read_bytes()
    p.write_bytes(data[:20] + bytes(len(data) - 20))
    return (lambda: load_imagefolder(tmp_path)), [str(p)]


@case
def imagefolder_truncated_jpeg(tmp_path, monkeypatch):
    image_tree(tmp_path)
    p = tmp_path / "test" / "a" / "2.jpg"
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(buf, "JPEG")
    p.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    return (lambda: load_imagefolder(tmp_path)), [str(p)]


@case
def imagefolder_non_image_file(tmp_path, monkeypatch):
    image_tree(tmp_path)
    p = tmp_path / "train" / "a" / "notes.txt"
    p.write_text("these are cats\n")
    return (lambda: load_imagefolder(tmp_path)), [str(p), "image"]


@case
def imagefolder_zero_byte_image(tmp_path, monkeypatch):
    image_tree(tmp_path)
    p = tmp_path / "train" / "b" / "3.png"
    p.write_bytes(b"")
    return (lambda: load_imagefolder(tmp_path)), [str(p)]


@case
def imagefolder_test_classes_differ(tmp_path, monkeypatch):
    image_tree(tmp_path)
    png(tmp_path / "test" / "zebra" / "0.png")
    return (lambda: load_imagefolder(tmp_path)), [str(tmp_path / "test"), "zebra"]


@case
def imagefolder_test_class_missing(tmp_path, monkeypatch):
    image_tree(tmp_path, classes=("a", "b", "c"))
    for f in (tmp_path / "test" / "c").iterdir():
        f.unlink()
    (tmp_path / "test" / "c").rmdir()
    return (lambda: load_imagefolder(tmp_path)), [str(tmp_path / "test"), "'c'"]


@case
def imagefolder_mixed_sizes(tmp_path, monkeypatch):
    image_tree(tmp_path, size=(8, 8))
    p = png(tmp_path / "test" / "b" / "9.png", size=(9, 8))
    return (lambda: load_imagefolder(tmp_path)), [str(p), "9x8", str(tmp_path / "train" / "a" / "0.png"),
                                                  "data.image_size"]


@case
def imagefolder_missing_train(tmp_path, monkeypatch):
    png(tmp_path / "test" / "a" / "0.png")
    return (lambda: load_imagefolder(tmp_path)), [str(tmp_path / "train"), "missing"]


@case
def imagefolder_missing_test(tmp_path, monkeypatch):
    png(tmp_path / "train" / "a" / "0.png")
    return (lambda: load_imagefolder(tmp_path)), [str(tmp_path / "test"), "missing"]


@case
def imagefolder_no_class_folders(tmp_path, monkeypatch):
    (tmp_path / "train").mkdir()
    (tmp_path / "test").mkdir()
    png(tmp_path / "train" / "loose.png")
    return (lambda: load_imagefolder(tmp_path)), [str(tmp_path / "train"), "class folders"]


@case
def imagefolder_root_missing(tmp_path, monkeypatch):
    return (lambda: load_imagefolder(tmp_path / "nope")), [str(tmp_path / "nope"), "does not exist"]


# --------------------------------------------------------------------------- the corpus


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_data(name, tmp_path, monkeypatch):
    tmp_path = tmp_path / "ds"
    tmp_path.mkdir()
    marker = tmp_path / "MARKER"
    load, expected = CASES[name](tmp_path, monkeypatch)
    with pytest.raises(DataError) as e:
        load()
    msg = str(e.value)
    for s in expected:
        assert s in msg, f"{s!r} not in message: {msg}"
    assert not marker.exists(), "a pickle payload ran"
    assert not (tmp_path.parent / "evil.txt").exists() and not (tmp_path / "abs_evil.txt").exists()
    assert not (tmp_path / "cifar-10-batches-py").exists() or (tmp_path / "cifar-10-batches-py" / "data_batch_1").exists()
    left = [p for p in tmp_path.rglob(".classbench-tmp*")]
    assert not left, f"temporary files left behind: {left}"


def test_malicious_batch_does_not_run(tmp_path):
    """The headline case, spelled out: a __reduce__ payload as data_batch_1 never runs."""
    write_cifar10(tmp_path, n_train_per_batch=2, n_test=2)
    marker = tmp_path / "MARKER"
    write_malicious_pickle(tmp_path / "cifar-10-batches-py" / "data_batch_1", marker, kind="os.system")
    # sanity: the payload is real (plain pickle would run it)
    probe = tmp_path / "PROBE"
    write_malicious_pickle(tmp_path / "probe.pkl", probe, kind="open")
    with open(tmp_path / "probe.pkl", "rb") as f:
        pickle.load(f).close()
    assert probe.exists()
    with pytest.raises(DataError, match="refused"):
        load_cifar("cifar10", tmp_path, download=False)
    assert not marker.exists()
