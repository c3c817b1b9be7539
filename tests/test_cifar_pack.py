"""benchmarks/cifar_pack.py: a lossless compact copy of a CIFAR folder, checked on small archives in the
official format (support/data.py), and on bad packs."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO
from support.data import write_cifar10, write_cifar100
from classbench.data.cifar import load_cifar

SCRIPT = REPO / "benchmarks" / "cifar_pack.py"


def cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True, timeout=300)


def same_split(a, b):
    return np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels)


@pytest.mark.slow
@pytest.mark.parametrize("name, folder, write", [("cifar10", "cifar-10-batches-py", write_cifar10),
                                                  ("cifar100", "cifar-100-python", write_cifar100)])
def test_pack_into_two_then_unpack_gives_the_same_dataset(tmp_path, name, folder, write):
    src = tmp_path / "src"
    write(src, 200, 100) if name == "cifar10" else write(src, 300, 100)
    proc = cli("pack", src / folder, tmp_path / "packs" / name, "--parts", 2)
    assert proc.returncode == 0, proc.stderr
    packs = sorted((tmp_path / "packs").glob(f"{name}.*.npz"))
    assert len(packs) == 2
    proc = cli("unpack", tmp_path / "dst" / folder, *packs)
    assert proc.returncode == 0, proc.stderr
    assert "pixels checked" in proc.stdout
    (tr_a, te_a, cls_a), (tr_b, te_b, cls_b) = (load_cifar(name, src, download=False),
                                                load_cifar(name, tmp_path / "dst", download=False))
    assert same_split(tr_a, tr_b) and same_split(te_a, te_b) and cls_a == cls_b


def test_encode_decode_round_trip_on_natural_looking_and_extreme_pixels():
    sys.path.insert(0, str(REPO / "benchmarks"))
    import cifar_pack

    rng = np.random.default_rng(0)
    smooth = np.cumsum(rng.integers(-3, 4, (20, 3 * 32 * 32)), axis=1) % 256  # neighbours close: compresses
    extreme = rng.choice([0, 255], (20, 3 * 32 * 32))  # every wrap-around of the residuals
    for pixels in (smooth.astype(np.uint8), extreme.astype(np.uint8)):
        blob = cifar_pack.encode(pixels)
        assert np.array_equal(cifar_pack.decode(blob, len(pixels)), pixels)
    assert len(cifar_pack.encode(smooth.astype(np.uint8))) < smooth.size * 0.6


@pytest.mark.slow
def test_a_damaged_pack_stops_with_one_line_and_writes_no_batch(tmp_path):
    src = tmp_path / "src"
    write_cifar10(src, 50, 50)
    assert cli("pack", src / "cifar-10-batches-py", tmp_path / "c10").returncode == 0
    pack = tmp_path / "c10.1.npz"
    # the same pack with one pixel residual changed: it decodes, to the wrong pixels
    with np.load(pack) as z:
        arrays = {k: z[k] for k in z.files}
    key = next(k for k in arrays if k.endswith("test_batch/pixels"))
    import lzma
    raw = bytearray(lzma.decompress(arrays[key].tobytes()))
    raw[100] ^= 1
    arrays[key] = np.frombuffer(lzma.compress(bytes(raw)), np.uint8)
    arrays = {k: v for k, v in arrays.items() if "data_batch" not in k}  # no batch before the bad one
    bad = tmp_path / "bad.npz"
    np.savez(bad, **arrays)
    proc = cli("unpack", tmp_path / "dst", bad)
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0 and "test_batch's pixels differ from the ones packed" in proc.stderr
    assert not (tmp_path / "dst" / "test_batch").exists()
    assert not [p for p in (tmp_path / "dst").iterdir() if "tmp" in p.name]
    # a file that is no pack at all
    (tmp_path / "junk.npz").write_bytes(b"junk")
    proc = cli("unpack", tmp_path / "dst2", tmp_path / "junk.npz")
    assert proc.returncode == 1 and "not a readable pack" in proc.stderr and proc.stderr.count("\n") == 1
