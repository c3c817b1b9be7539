"""Bounded and validated inputs (issue #17, "Inputs must be bounded"; issue #13 items 1 and 9).

Three corpora, each case one bad input that must give ONE clear line (exit 2
through the command line, or one ClassbenchError in-process), fast, before
anything is allocated or trained:

- BAD_CONFIGS: YAML alias bombs and deep nesting (in a file and in an override),
  ``${...}`` interpolation, values torch would refuse later (devices, seeds,
  64-bit overflows, sizes);
- BAD_RUN_CONFIGS: a run folder's stored config.yaml read by
  ``classbench.config.load_run_config`` (resume and readers);
- BAD_IMAGES: huge images (by header, before decoding), FIFOs and devices,
  through image folders and ``predict``.

Then what must work: ``log.progress=off``, ``train.device=cpu:0`` trains to the
end, config names resolve, subsets are class-stratified and seeded on every
dataset, unbalanced splits are reported, all-black images train without NaN.

With ``CLASSBENCH_RELIABILITY_REPORT=path`` the counts are merged into that JSON
file (see benchmarks/reliability_report.py).
"""

from __future__ import annotations

import json
import os
import struct
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from classbench.cli import main
from classbench.config import (
    MAX_YAML_DEPTH,
    from_yaml_text,
    load_config,
    load_run_config,
    packaged_configs,
    parse_override,
    resolve_config,
)
from classbench.data import build_data, memory
from classbench.data.imagefolder import load_imagefolder
from classbench.data.images import MAX_PIXELS, read_image
from classbench.errors import ConfigError, DataError

from conftest import REPO
from support.counts import Counts

# ---------------------------------------------------------------------------- counts for the record
COUNTS = Counts()
_write_counts = COUNTS.fixture()  # merged: tests/test_reliability.py starts the same file
count = COUNTS.add


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    """A case that wrongly gets past the config would try to download CIFAR: fail fast instead."""
    from classbench.data import cifar

    monkeypatch.setitem(cifar.URLS, "cifar10", "http://127.0.0.1:9/cifar-10-python.tar.gz")
    monkeypatch.setattr(cifar, "DOWNLOAD_TIMEOUT_S", 5.0)


def one_clean_error(code: int, err: str, *needles: str) -> str:
    assert code == 2, err
    assert "Traceback" not in err, err
    errors = [ln for ln in err.strip().splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1, err
    for n in needles:
        assert n in errors[0], f"{n!r} not in {errors[0]!r}"
    return errors[0]


# A run that trains in well under a second.
SMALL = ["data.name=synthetic", "data.num_classes=4", "data.synthetic_size=128", "data.image_size=8",
         "data.val_size=32", "data.train_subset_size=16", "data.pad=1", "model.name=toy_dilated",
         "model.args.width=4", "optim.name=adam", "optim.lr=0.01", "train.batch_size=16", "train.steps=4",
         "train.threads=1", "train.precision=fp32", "eval.every=2", "eval.batch_size=64", "log.progress=never"]


def base_config(folder: Path) -> str:
    path = folder / "base.yaml"
    path.write_text("train: {steps: 4}\n")
    return str(path)


def alias_bomb(levels: int, indent: str = "    ") -> str:
    """A "billion laughs" block: each level lists the previous one 9 times (9**levels values once expanded)."""
    lines = [f"{indent}l0: &l0 [x,x,x,x,x,x,x,x,x]"]
    lines += [f"{indent}l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, levels + 1)]
    return "\n".join(lines)


DEEP = 5000  # far past Python's recursion limit when parsed recursively


@pytest.fixture
def cfgdir(tmp_path):
    d = tmp_path / "configs"
    d.mkdir()
    base = {"train": {"steps": 4}}
    (d / "base.yaml").write_text(yaml.safe_dump(base))
    files = {
        "bomb.yaml": "model:\n  args:\n" + alias_bomb(5) + "\ntrain: {steps: 4}\n",  # 314 bytes, 9**5 values
        "bomb_top.yaml": "train: {steps: 4}\nmodel:\n  name: toy_dilated\n  args:\n" + alias_bomb(8) + "\n",
        "self_alias.yaml": "train: {steps: 4}\nmodel: {args: {x: &a [1, *a]}}\n",
        "deep_list.yaml": "train: {steps: 4}\nmodel: {args: {x: " + "[" * DEEP + "]" * DEEP + "}}\n",
        "deep_map.yaml": "train: {steps: 4}\nmodel: {args: " + "{a: " * DEEP + "1" + "}" * DEEP + "}\n",
        "deep_block.yaml": "train: {steps: 4}\nmodel:\n  args:\n" + "".join(
            "  " * (i + 2) + f"k{i}:\n" for i in range(MAX_YAML_DEPTH + 4)) + "  " * (MAX_YAML_DEPTH + 6) + "v\n",
        "env.yaml": "train: {steps: 4}\ndata: {root: '${oc.env:HOME}'}\n",
        "interp_key.yaml": "train: {steps: 4}\nname: '${train.seed}'\n",
        "interp_args.yaml": "train: {steps: 4}\nmodel: {name: toy_dilated, args: {act: ['${oc.env:PATH}']}}\n",
        "progress_off.yaml": "train: {steps: 4}\nlog: {progress: off}\n",
    }
    for name, text in files.items():
        (d / name).write_text(text)
    return d


B = "{d}/base.yaml"
BOMB_OVERRIDE = "model.args.x=[&a [x,x,x,x,x,x,x,x,x], &b [*a,*a,*a,*a,*a,*a,*a,*a,*a], " \
                "&c [*b,*b,*b,*b,*b,*b,*b,*b,*b], &d [*c,*c,*c,*c,*c,*c,*c,*c,*c], [*d,*d,*d,*d,*d,*d,*d,*d,*d]]"
# (id, argv after `train`, words the one-line message must hold)
BAD_CONFIGS = [
    ("alias_bomb_file", ["{d}/bomb.yaml"], ["bomb.yaml", "expands to more than 2,000 values"]),
    ("alias_bomb_9_levels", ["{d}/bomb_top.yaml"], ["expands to more than"]),
    ("alias_bomb_override", [B, BOMB_OVERRIDE], ["model.args.x", "expands to more than"]),
    ("alias_to_itself", ["{d}/self_alias.yaml"], ["refers to itself"]),
    ("deep_list_file", ["{d}/deep_list.yaml"], ["deep_list.yaml", f"nests deeper than {MAX_YAML_DEPTH} levels"]),
    ("deep_mapping_file", ["{d}/deep_map.yaml"], ["nests deeper than"]),
    ("deep_block_file", ["{d}/deep_block.yaml"], ["nests deeper than"]),
    ("deep_list_override", [B, "model.args.x=" + "[" * DEEP + "]" * DEEP], ["model.args.x", "nests deeper than"]),
    ("deep_mapping_override", [B, "model.args=" + "{a: " * DEEP + "1" + "}" * DEEP], ["nests deeper than"]),
    ("env_interpolation_file", ["{d}/env.yaml"], ["'data.root'", "${oc.env:HOME}", "interpolation"]),
    ("key_interpolation_file", ["{d}/interp_key.yaml"], ["'name'", "interpolation"]),
    ("interpolation_in_args_list", ["{d}/interp_args.yaml"], ["model.args", "interpolation"]),
    ("env_interpolation_override", [B, "data.root=${oc.env:HOME}"], ["'data.root'", "interpolation"]),
    ("key_interpolation_override", [B, "name=run-${train.seed}"], ["'name'", "interpolation"]),
    ("interpolation_in_args_key", [B, "model.args={'${x}': 1}"], ["model.args", "interpolation"]),
    ("device_meta", [B, "train.device=meta"], ["train.device='meta'", "cpu, cuda or cuda:N"]),
    ("device_xpu", [B, "train.device=xpu"], ["train.device='xpu'"]),
    ("device_cpu_1", [B, "train.device=cpu:1"], ["train.device='cpu:1'", "one CPU device"]),
    ("seed_above_2_64", [B, f"train.seed={2**64 + 1}"], ["train.seed", "64-bit"]),
    ("seed_2_63", [B, f"train.seed={2**63}"], ["train.seed"]),
    ("seed_negative", [B, "train.seed=-1"], ["train.seed must be between 0 and 2**63-1"]),
    ("split_seed_above_2_64", [B, f"data.split_seed={2**64}"], ["data.split_seed"]),
    ("steps_above_int64", [B, f"train.steps={2**70}"], ["train.steps", "64-bit"]),
    ("classes_above_images", [B, "data.name=synthetic", "data.num_classes=1000000", "data.val_size=0",
                              "eval.splits=[test]"], ["data.num_classes=1000000", "data.synthetic_size=2048"]),
    ("synthetic_size_huge", [B, "data.name=synthetic", "data.synthetic_size=100000000000", "data.val_size=0",
                             "eval.splits=[test]"], ["would need about", "TiB", "data.synthetic_size"]),
    ("synthetic_classes_and_size_huge", [B, "data.name=synthetic", "data.num_classes=100000000",
                                         "data.synthetic_size=1000000000", "data.val_size=0", "eval.splits=[test]"],
     ["would need about", "data.num_classes"]),
    ("image_size_50000", [B, "data.name=synthetic", "data.image_size=50000", "data.val_size=0",
                          "eval.splits=[test]"], ["50000x50000", "would need about", "data.image_size"]),
]


def test_bad_config_corpus_is_big_enough():
    assert len(BAD_CONFIGS) >= 25


@pytest.mark.parametrize("case", BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS])
def test_bad_config_is_refused_at_once(cfgdir, capsys, case, monkeypatch, tmp_path):
    name, argv, needles = case
    monkeypatch.chdir(tmp_path)
    argv = [a.replace("{d}", str(cfgdir)) for a in argv]
    t = time.perf_counter()
    code = main(["train", *argv, f"train.runs_dir={tmp_path / 'runs'}"])
    elapsed = time.perf_counter() - t
    one_clean_error(code, capsys.readouterr().err, *needles)
    assert elapsed < 20, f"{name} took {elapsed:.1f} s to refuse"  # the bombs took minutes before
    assert not list((tmp_path / "runs").glob("*/*/*/checkpoints/last.pt")), "a bad config started training"
    count("bounded_config_cases")


def test_interpolation_never_reads_the_environment(monkeypatch):
    monkeypatch.setenv("CLASSBENCH_SECRET", "s3cret")
    for text in ["data.root=${oc.env:CLASSBENCH_SECRET}", "name=${oc.env:CLASSBENCH_SECRET,x}"]:
        with pytest.raises(ConfigError) as e:
            load_config(None, ["train.steps=1", text])
        assert "s3cret" not in str(e.value) and "interpolation" in str(e.value)
    count("bounded_config_cases")


def test_alias_bomb_is_refused_before_it_is_expanded():
    # Nine levels: 9**9 = 387 million values if anything expanded it; the refusal must be instant.
    text = "model:\n  args:\n" + alias_bomb(9) + "\n"
    t = time.process_time()  # this process's CPU time: other load on the machine does not count
    with pytest.raises(ConfigError, match="expands to more than"):
        from_yaml_text(text)
    with pytest.raises(ConfigError, match="expands to more than"):
        parse_override("model.args.x=" + BOMB_OVERRIDE.split("=", 1)[1])
    assert time.process_time() - t < 2.0  # expanding would take minutes
    count("bounded_config_cases")


def test_small_aliases_still_work():
    cfg = load_config(None, ["train.steps=10", "sched.milestones=[&m 1, 2]"])  # a legitimate anchor
    assert cfg.sched.milestones == [1, 2]


@pytest.mark.parametrize("text", ["log.progress=off", "log.progress=no", "log.progress=false", "log.progress='off'"])
def test_progress_off_means_never(text):
    assert load_config(None, ["train.steps=1", text]).log.progress == "never"


def test_progress_on_and_off_in_a_yaml_file(cfgdir):
    assert load_config(cfgdir / "progress_off.yaml").log.progress == "never"
    assert load_config(cfgdir / "base.yaml", ["log.progress=on"]).log.progress == "always"
    with pytest.raises(ConfigError, match="log.progress"):
        load_config(cfgdir / "base.yaml", ["log.progress=sometimes"])


@pytest.mark.parametrize("given,stored", [("cpu:0", "cpu"), ("cpu", "cpu"), ("auto", "auto"), ("cuda", "cuda"),
                                          ("cuda:1", "cuda:1")])
def test_device_is_normalised_like_torch(given, stored):
    assert load_config(None, ["train.steps=1", f"train.device={given}"]).train.device == stored


def test_device_cpu0_trains_to_the_end(tmp_path, capsys, monkeypatch):
    """cpu:0 trained, then failed reading its own best.pt ("tagged with cpu:0"); its resume was refused."""
    monkeypatch.chdir(tmp_path)
    code = main(["train", base_config(tmp_path), *SMALL, "train.device=cpu:0", f"train.runs_dir={tmp_path / 'runs'}"])
    err = capsys.readouterr().err
    assert code == 0, err
    (run,) = [p for p in (tmp_path / "runs").glob("*/*/*") if p.is_dir()]
    assert json.loads((run / "status.json").read_text())["status"] == "finished"
    assert load_run_config(run).train.device == "cpu"
    count("bounded_config_cases")


# ---------------------------------------------------------------------------- config names
def test_config_names_resolve_to_bundled_configs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no configs/ here: the name is looked up in the package or the repository
    # The package's bundled configs when it ships them, else the repository's configs/.
    bundled = REPO / "classbench" / "configs"
    home = bundled if bundled.is_dir() else REPO / "configs"
    assert resolve_config("cifar10/resnet20") == home / "cifar10" / "resnet20.yaml"
    assert resolve_config("cifar10/resnet20.yaml") == home / "cifar10" / "resnet20.yaml"
    cfg = load_config("cifar10/resnet20")
    assert cfg.name == "resnet20" and cfg.model.name == "resnet20"
    names = packaged_configs()
    assert "cifar10/resnet20" in names and all("/" in n for n in names) and "groups" not in names
    with pytest.raises(ConfigError, match="cifar10/resnet20"):
        load_config("cifar10/resnet2")  # names the closest configs


def test_an_existing_path_wins_over_a_config_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cifar10").mkdir()
    (tmp_path / "cifar10" / "resnet20").write_text("model: {name: toy_dilated}\ntrain: {steps: 3}\n")
    assert load_config("cifar10/resnet20").model.name == "toy_dilated"
    assert resolve_config("../cifar10/resnet20") == Path("../cifar10/resnet20")  # never searched


# ---------------------------------------------------------------------------- a run's stored config
def _run_with(tmp_path, content) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    if isinstance(content, bytes):
        (run / "config.yaml").write_bytes(content)
    elif content == "folder":
        (run / "config.yaml").mkdir()
    elif content is not None:
        (run / "config.yaml").write_text(content)
    return run


BAD_RUN_CONFIGS = [
    ("missing", None, ["not a run folder"]),
    ("empty", "", ["is empty"]),
    ("comments_only", "# nothing\n", ["is empty"]),
    ("folder", "folder", ["is a folder"]),
    ("not_utf8", "name: caf\u00e9\n".encode("latin-1"), ["not UTF-8"]),
    ("binary", bytes(range(256)), ["config.yaml"]),
    ("interpolation", "data: {root: '${oc.env:HOME}'}\n", ["interpolation"]),
    ("alias_bomb", "model:\n  args:\n" + alias_bomb(6) + "\n", ["expands to more than"]),
    ("deep", "model: {args: {x: " + "[" * DEEP + "]" * DEEP + "}}\n", ["nests deeper than"]),
    ("a_list", "- 1\n- 2\n", ["must hold a mapping"]),
    ("unknown_key", "trainer: {steps: 3}\n", ["'trainer'"]),
    ("wrong_type", "train: {steps: many}\n", ["train.steps"]),
    ("python_tag", "train: !!python/object/apply:os.system ['true']\n", ["not valid YAML"]),
    ("bad_device", "train: {steps: 3, device: meta}\n", ["train.device='meta'"]),
]


@pytest.mark.parametrize("case", BAD_RUN_CONFIGS, ids=[c[0] for c in BAD_RUN_CONFIGS])
def test_bad_run_config_is_refused_with_one_line(tmp_path, case):
    name, content, needles = case
    run = _run_with(tmp_path, content)
    with pytest.raises(ConfigError) as e:
        load_run_config(run)
    msg = str(e.value)
    assert "\n" not in msg and all(n in msg for n in needles), msg
    assert str(run) in msg
    count("bounded_run_config_cases")


@pytest.mark.parametrize("content", ["", "folder", "name: caf\u00e9\n".encode("latin-1"), "name: '${oc.env:HOME}'\n"],
                         ids=["empty", "folder", "not_utf8", "interpolation"])
def test_resume_refuses_a_bad_run_config(tmp_path, capsys, content, monkeypatch):
    """An empty config.yaml resumed under the default config, on another dataset, mixing two datasets' metrics."""
    monkeypatch.chdir(tmp_path)
    run = _run_with(tmp_path, content)
    (run / "metrics.jsonl").write_text("")
    before = sorted(p.name for p in run.iterdir())
    code = main(["train", "--resume", str(run)])
    one_clean_error(code, capsys.readouterr().err, "config.yaml")
    assert sorted(p.name for p in run.iterdir()) == before and not (tmp_path / "data").exists()
    count("bounded_run_config_cases")


def test_a_good_run_config_loads(tmp_path):
    run = _run_with(tmp_path, "train: {steps: 3, device: 'cpu:0'}\nmodel: {name: toy_dilated}\n")
    cfg = load_run_config(run)
    assert cfg.train.steps == 3 and cfg.model.name == "toy_dilated" and cfg.train.device == "cpu"


def test_a_checkpoints_stored_config_is_bounded_too():
    with pytest.raises(ConfigError, match="nests deeper than"):
        from_yaml_text("model: {args: {x: " + "[" * DEEP + "]" * DEEP + "}}\n", "checkpoint x.pt's config")
    with pytest.raises(ConfigError, match="is empty"):
        from_yaml_text("")
    count("bounded_run_config_cases", 2)


# ---------------------------------------------------------------------------- images
def write_png(path: Path, width: int, height: int) -> Path:
    """A real, valid 1-bit greyscale PNG, all black, written row by row (a few MB even at 20000x20000)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\0" * (1 + (width + 7) // 8)  # filter byte + packed pixels
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
                     + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def small_png_bytes(size=(8, 8), color=(10, 20, 30)) -> bytes:
    import io

    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def image_folder(root: Path, counts: dict[str, tuple[int, int]], size=(8, 8), seed=0, black=False) -> Path:
    """``root/{train,test}/<class>/NNN.png``, written class by class like a real dataset folder."""
    rng = np.random.default_rng(seed)
    for split_i, split in enumerate(("train", "test")):
        for cls, n in counts.items():
            d = root / split / cls
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n[split_i]):
                arr = np.zeros((size[1], size[0], 3), np.uint8) if black else \
                    rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
                Image.fromarray(arr).save(d / f"{i:03d}.png")
    return root


def test_the_png_writer_writes_real_pngs(tmp_path):
    p = write_png(tmp_path / "x.png", 21, 5)
    with Image.open(p) as im:
        assert im.size == (21, 5) and im.format == "PNG"
        assert np.asarray(im.convert("L")).max() == 0


def _huge_first_image(root: Path, n_small: int) -> Path:
    write_png(root / "train" / "a" / "000.png", 11000, 11000)
    small = small_png_bytes()
    for split, n in (("train", n_small), ("test", n_small // 2)):
        for cls in ("a", "b"):
            d = root / split / cls
            d.mkdir(parents=True, exist_ok=True)
            for i in range(1, n + 1):
                (d / f"{i:03d}.png").write_bytes(small)
    return root


def imagefolder_11000_first_image(tmp_path, monkeypatch):
    """One 11000x11000 PNG sets the size of ~1,000 images: ~360 GiB, refused before anything is decoded."""
    root = _huge_first_image(tmp_path / "big", 400)
    return (lambda: load_imagefolder(root)), ["11000x11000", "would need about", "GiB", "data.image_size"]


def imagefolder_11000_with_little_memory(tmp_path, monkeypatch):
    root = _huge_first_image(tmp_path / "big", 4)
    monkeypatch.setattr(memory, "available_bytes", lambda: 1 << 30)
    return (lambda: load_imagefolder(root)), ["13 images of 11000x11000", "1.0 GiB is available"]


def imagefolder_image_size_50000(tmp_path, monkeypatch):
    root = image_folder(tmp_path / "f", {"a": (30, 10), "b": (30, 10)})
    return (lambda: load_imagefolder(root, image_size=50000)), ["50000x50000", "would need about", "GiB"]


def imagefolder_bomb_inside(tmp_path, monkeypatch):
    root = image_folder(tmp_path / "f", {"a": (2, 1), "b": (2, 1)})
    bomb = write_png(root / "train" / "b" / "zzz.png", 20000, 20000)
    return (lambda: load_imagefolder(root, image_size=8)), [str(bomb), "400 megapixels", "limit of 179 megapixels"]


def imagefolder_fifo(tmp_path, monkeypatch):
    root = image_folder(tmp_path / "f", {"a": (2, 1), "b": (2, 1)})
    fifo = root / "train" / "b" / "pipe.png"
    os.mkfifo(fifo)
    return (lambda: load_imagefolder(root)), [str(fifo), "FIFO"]


def predict_bomb(tmp_path, monkeypatch):
    from classbench.inference.predict import load_image

    p = write_png(tmp_path / "bomb.png", 20000, 20000)
    return (lambda: load_image(p, (3, 32, 32))), [str(p), "400 megapixels", "limit of 179 megapixels"]


def predict_fifo(tmp_path, monkeypatch):
    from classbench.inference.predict import load_image

    p = tmp_path / "pipe.png"
    os.mkfifo(p)
    return (lambda: load_image(p, (3, 32, 32))), [str(p), "FIFO"]


def predict_char_device(tmp_path, monkeypatch):
    from classbench.inference.predict import load_image

    return (lambda: load_image("/dev/zero", (3, 32, 32))), ["/dev/zero", "character device"]


def predict_folder(tmp_path, monkeypatch):
    return (lambda: read_image(tmp_path)), [str(tmp_path), "a folder"]


def predict_decode_too_big_for_memory(tmp_path, monkeypatch):
    p = write_png(tmp_path / "big.png", 9000, 9000)  # under the pixel limit; 81 MP to decode
    monkeypatch.setattr(memory, "available_bytes", lambda: 100 << 20)
    return (lambda: read_image(p)), [str(p), "9000x9000", "would need about", "100.0 MiB is available"]


BAD_IMAGES = [imagefolder_11000_first_image, imagefolder_11000_with_little_memory, imagefolder_image_size_50000,
              imagefolder_bomb_inside, imagefolder_fifo, predict_bomb, predict_fifo, predict_char_device,
              predict_folder, predict_decode_too_big_for_memory]


@pytest.mark.parametrize("make", BAD_IMAGES, ids=[f.__name__ for f in BAD_IMAGES])
def test_bad_image_is_refused_with_one_line(make, tmp_path, monkeypatch):
    call, needles = make(tmp_path, monkeypatch)
    result: dict = {}

    def run():
        try:
            call()
        except BaseException as e:  # noqa: BLE001 - the assertion below names it
            result["error"] = e

    t = threading.Thread(target=run, daemon=True)
    start = time.perf_counter()
    t.start()
    t.join(timeout=60)
    if t.is_alive():  # today a FIFO blocks open() forever: give it a writer so the thread can end
        for fifo in tmp_path.rglob("pipe.png"):
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            os.close(fd)
        t.join(timeout=10)
        pytest.fail(f"{make.__name__}: still waiting after 60 s")
    e = result.get("error")
    assert isinstance(e, DataError), f"expected a DataError, got {type(e).__name__}: {e}"
    msg = str(e)
    assert "\n" not in msg, msg
    for n in needles:
        assert n in msg, f"{n!r} not in {msg!r}"
    assert time.perf_counter() - start < 30
    count("bounded_image_cases")


def test_pixel_limit_is_pillows_bomb_limit():
    assert MAX_PIXELS == 2 * Image.MAX_IMAGE_PIXELS


def test_predict_cli_refuses_a_fifo_and_a_bomb(trained_run, tmp_path, capsys):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    bomb = write_png(tmp_path / "bomb.png", 20000, 20000)
    for path, needle in ((fifo, "FIFO"), (bomb, "megapixels")):
        done = threading.Event()
        threading.Thread(target=lambda: (done.wait(30) or os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))),
                         daemon=True).start()  # unblocks today's hang so the test can fail instead of hang
        code = main(["predict", str(trained_run), str(path)])
        done.set()
        one_clean_error(code, capsys.readouterr().err, str(path), needle)
        count("bounded_image_cases")


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    assert main(["train", base_config(runs), *SMALL, f"train.runs_dir={runs}"]) == 0
    (run,) = [p for p in runs.glob("*/*/*") if p.is_dir()]
    return run


# ---------------------------------------------------------------------------- subsets (#13 item 1)
def data_cfg(*overrides):
    return load_config(None, ["train.steps=1", *overrides]).data


def test_image_folder_subsets_hold_every_class(tmp_path):
    """An image folder lists class by class: "the first N" of it was one class (airplanes only)."""
    root = image_folder(tmp_path / "f", {"airplane": (20, 10), "bird": (20, 10), "cat": (20, 10)})
    data = build_data(data_cfg("data.name=imagefolder", f"data.root={root}", "data.val_size=6",
                               "data.train_size=12", "data.test_size=9", "data.train_subset_size=6"))
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 12, "val": 6, "test": 9, "train_subset": 6}
    for name, split in data.splits.items():
        assert torch.bincount(split.labels, minlength=3).tolist() == [len(split) // 3] * 3, name
    assert data.class_counts["train"] == [4, 4, 4] and data.warnings == []


def test_cifar_sized_subsets_are_stratified_on_synthetic_data_too():
    data = build_data(data_cfg("data.name=synthetic", "data.num_classes=10", "data.synthetic_size=1000",
                               "data.image_size=8", "data.val_size=100", "data.train_size=200",
                               "data.test_size=50", "data.train_subset_size=30"))
    for name, split in data.splits.items():
        counts = torch.bincount(split.labels, minlength=10)
        assert counts.min() == counts.max() == len(split) // 10, (name, counts.tolist())


def test_subsets_are_seeded_and_independent():
    base = ["data.name=synthetic", "data.num_classes=4", "data.synthetic_size=400", "data.image_size=8",
            "data.val_size=40", "data.test_size=20", "data.train_subset_size=12"]

    def pick(*extra):
        return build_data(data_cfg(*base, *extra)).splits

    a, b = pick("data.train_size=100"), pick("data.train_size=100")
    other_seed = pick("data.train_size=100", "data.split_seed=1")
    bigger_train = pick("data.train_size=200")
    assert all(torch.equal(a[k].images, b[k].images) for k in a)  # same seed: same images
    assert not torch.equal(a["train"].images, other_seed["train"].images)
    assert not torch.equal(a["test"].images, other_seed["test"].images)
    assert torch.equal(a["test"].images, bigger_train["test"].images)  # test does not move with train_size
    assert torch.equal(a["val"].images, bigger_train["val"].images)
    # A subset of the full split, not its first N images:
    full = pick("data.test_size=0")
    assert not torch.equal(a["test"].images, full["test"].images[:20])


def test_a_split_missing_classes_is_reported(tmp_path):
    root = image_folder(tmp_path / "f", {"a": (6, 3), "b": (6, 3), "c": (6, 3)})
    with pytest.warns(UserWarning, match=r"data split 'test' has no images of 1 of its 3 classes"):
        data = build_data(data_cfg("data.name=imagefolder", f"data.root={root}", "data.val_size=3",
                                   "data.test_size=2"))
    assert any("data.test_size" in w for w in data.warnings)
    assert data.class_counts["test"].count(0) == 1
    count("split_warning_cases")


def test_an_unbalanced_split_is_reported(tmp_path):
    root = image_folder(tmp_path / "f", {"common": (40, 4), "rare": (4, 4)})
    with pytest.warns(UserWarning, match=r"'train' is unbalanced: class 'rare' has \d+ images"):
        data = build_data(data_cfg("data.name=imagefolder", f"data.root={root}", "data.val_size=4"))
    assert data.class_counts["train"][0] > 3 * data.class_counts["train"][1]
    count("split_warning_cases")


def _split_warning_argv(tmp_path) -> list[str]:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"train": {"steps": 1}}))
    argv = [a for a in SMALL if not a.startswith(("data.val_size", "train.steps"))]
    return ["train", str(cfg), *argv, "data.val_size=0", "eval.splits=[test]", "data.test_size=2",
            f"train.runs_dir={tmp_path / 'runs'}"]


SPLIT_WARNING = "data split 'test' has no images of 2 of its 4 classes"


def _check_summary_warning(tmp_path) -> None:
    (run,) = [p for p in (tmp_path / "runs").glob("*/*/*") if p.is_dir()]
    summary = json.loads((run / "summary.json").read_text())
    assert len(summary["data_warnings"]) == 1 and "data.test_size" in summary["data_warnings"][0]


def test_split_warnings_reach_the_summary_of_train(tmp_path, capsys):
    """The quick check of the test below, through classbench.cli.main (pytest, not the CLI, shows the warning)."""
    with pytest.warns(UserWarning, match=SPLIT_WARNING):
        assert main(_split_warning_argv(tmp_path)) == 0, capsys.readouterr().err
    _check_summary_warning(tmp_path)


@pytest.mark.slow  # spawns a process
def test_split_warnings_reach_the_runs_output(tmp_path):
    """`classbench train` prints each data warning as one `warning:` line."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "classbench", *_split_warning_argv(tmp_path)],
                       capture_output=True, text=True, cwd=REPO, timeout=300)
    assert r.returncode == 0, r.stderr
    assert f"warning: {SPLIT_WARNING}" in r.stderr, r.stderr
    _check_summary_warning(tmp_path)
    count("split_warning_cases")


# ---------------------------------------------------------------------------- all-black images
def test_all_black_images_train_without_nan(tmp_path, monkeypatch):
    """std 0 made every input inf/NaN; the run then stopped, blaming the learning rate."""
    monkeypatch.chdir(tmp_path)
    root = image_folder(tmp_path / "black", {"a": (16, 4), "b": (16, 4)}, black=True)
    with pytest.warns(UserWarning, match="channels of the training images are constant"):
        data = build_data(data_cfg("data.name=imagefolder", f"data.root={root}", "data.val_size=4"))
    assert data.std == (1.0, 1.0, 1.0) and len(data.warnings) == 1
    argv = [a for a in SMALL if not a.startswith("data.")]
    code = main(["train", base_config(tmp_path), *argv, "data.name=imagefolder", f"data.root={root}",
                 "data.val_size=4", "data.pad=1",
                 f"train.runs_dir={tmp_path / 'runs'}"])
    assert code == 0
    (run,) = [p for p in (tmp_path / "runs").glob("*/*/*") if p.is_dir()]
    assert json.loads((run / "status.json").read_text())["status"] == "finished"
    assert not (run / "nonfinite.json").exists()
    count("bounded_image_cases")


def test_fixed_normalisation_constants_replace_the_measured_ones():
    """data.mean/data.std (a reference's 0.5/0.5/0.5) are what the loader applies and the run records."""
    from classbench.data.loader import Normalize, to_float

    base = ["data.name=synthetic", "data.synthetic_size=64", "data.val_size=16"]
    measured = build_data(data_cfg(*base))
    fixed = build_data(data_cfg(*base, "data.mean=[0.5,0.5,0.5]", "data.std=[0.5,0.5,0.5]"))
    assert fixed.mean == (0.5, 0.5, 0.5) and fixed.std == (0.5, 0.5, 0.5)
    assert measured.mean != fixed.mean
    scale, shift = Normalize(fixed.mean, fixed.std).affine(torch.device("cpu"))
    pixels = torch.tensor([0, 255], dtype=torch.uint8).view(1, 1, 1, 2).expand(1, 3, 1, 2)
    assert torch.allclose(to_float(pixels, scale, shift, False), torch.tensor([-1.0, 1.0]).view(1, 1, 1, 2))
