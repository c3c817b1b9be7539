"""Datasets in memory: official CIFAR archives, image folders, and a synthetic task.

`build_data(cfg.data)` returns every split the trainer needs, as uint8 tensors,
with the normalisation statistics of the training split.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError
from .splits import (
    balance_warnings,
    channel_stats,
    class_counts,
    stratified_holdout,
    stratified_subset,
    take,
    usable_std,
)
from .types import Split

ENV_VAR = "CLASSBENCH_DATA"


@dataclass
class Data:
    splits: dict[str, Split]
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    root: str | None = None
    notes: list[str] = field(default_factory=list)
    # Problems a run should report (a split missing classes, unbalanced, a constant channel);
    # build_data also emits each as a warning.  JSON-ready, like class_counts.
    warnings: list[str] = field(default_factory=list)
    class_counts: dict[str, list[int]] = field(default_factory=dict)  # split -> images per class

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_size(self) -> tuple[int, int]:
        return self.splits["train"].image_size


def resolve_root(root: str | None) -> tuple[Path, list[Path]]:
    """The data folder: `data.root`, else $CLASSBENCH_DATA, else ./data; plus every place considered."""
    candidates: list[Path] = []
    if root:
        p = Path(root).expanduser()
        candidates.append(p)
        env = os.environ.get(ENV_VAR)
        if not p.is_absolute() and env:
            # A relative data.root may name a folder inside $CLASSBENCH_DATA.
            candidates.append(Path(env).expanduser() / p)
    else:
        env = os.environ.get(ENV_VAR)
        if env:
            candidates.append(Path(env).expanduser())
        candidates.append(Path("data"))
    for c in candidates:
        if c.exists():
            return c, candidates
    return candidates[0], candidates


_CACHE: dict[tuple, tuple[Split, Split, list[str], Path | None]] = {}


def load_raw(cfg) -> tuple[Split, Split, list[str], Path | None]:
    """The dataset's own train and test splits, before any hold-out.

    Loaded once per process: later calls (the summary's evaluation, a test
    suite's many runs) reuse the tensors, which nothing mutates.
    """
    key = (cfg.name, cfg.root, os.environ.get(ENV_VAR), str(Path.cwd()), cfg.labels, cfg.image_size,
           cfg.num_classes, cfg.synthetic_size, cfg.split_seed)
    if key not in _CACHE:
        _CACHE.clear()  # hold one dataset at a time
        _CACHE[key] = _load_raw(cfg)
    return _CACHE[key]


def _load_raw(cfg) -> tuple[Split, Split, list[str], Path | None]:
    if cfg.name == "synthetic":
        from .synthetic import make_synthetic

        train, test, classes = make_synthetic(
            num_classes=cfg.num_classes, train_size=cfg.synthetic_size,
            test_size=max(cfg.synthetic_size // 4, 64), image_size=cfg.image_size or 32, seed=cfg.split_seed,
        )
        return train, test, classes, None
    root, looked = resolve_root(cfg.root)
    if cfg.name in ("cifar10", "cifar100"):
        from .cifar import load_cifar

        if not root.exists() and len(looked) > 1:
            # Nothing exists yet: download into the first place, ./data by default.
            root = looked[-1] if not cfg.root else looked[0]
        train, test, classes = load_cifar(cfg.name, root, labels=cfg.labels, download=cfg.download)
        return train, test, classes, root
    if cfg.name == "imagefolder":
        from .imagefolder import load_imagefolder

        if not cfg.root:
            raise DataError(
                "data.name=imagefolder needs data.root: a folder holding train/<class>/* and test/<class>/* "
                f"(a relative path is also looked up inside ${ENV_VAR})."
            )
        if not root.exists():
            raise DataError(
                f"Image folder not found; looked in: {', '.join(str(p) for p in looked)}. "
                "Set data.root to a folder holding train/<class>/* and test/<class>/*."
            )
        train, test, classes = load_imagefolder(root, image_size=cfg.image_size)
        return train, test, classes, root
    raise DataError(f"Unknown dataset {cfg.name!r}; use cifar10, cifar100, imagefolder or synthetic.")


# The config key that sets each split's size, for advice in warnings.
_SIZE_KEYS = {"train": "data.train_size", "val": "data.val_size", "test": "data.test_size",
              "train_subset": "data.train_subset_size"}


def build_data(cfg) -> Data:
    """All splits for a run: train (after the val hold-out), val, test, train_subset.

    Every split smaller than its source is class-stratified and seeded by
    ``data.split_seed``: val is held out of the training images; train
    (``data.train_size``), test (``data.test_size``) and train_subset
    (``data.train_subset_size``, drawn from the training split in use) are
    subsets, each from its own random stream.  A split that lacks classes or is
    badly unbalanced, and a constant image channel, become warnings: emitted,
    and kept in ``Data.warnings`` for the run's summary.
    """
    train, test, classes, root = load_raw(cfg)
    splits: dict[str, Split] = {}
    if cfg.val_size:
        if cfg.val_size >= len(train):
            raise DataError(
                f"data.val_size={cfg.val_size} leaves no training images out of {len(train)}; lower it."
            )
        keep, held = stratified_holdout(train.labels, cfg.val_size, cfg.split_seed)
        splits["val"] = take(train, held)
        train = take(train, keep)
    train = stratified_subset(train, cfg.train_size, cfg.split_seed, "train")
    splits["train"] = train
    splits["test"] = stratified_subset(test, cfg.test_size, cfg.split_seed, "test")
    splits["train_subset"] = stratified_subset(train, cfg.train_subset_size, cfg.split_seed, "train_subset")
    splits = {k: splits[k] for k in ("train", "val", "test", "train_subset") if k in splits}
    counts = {k: class_counts(v, len(classes)) for k, v in splits.items()}
    notes = balance_warnings(counts, list(classes), _SIZE_KEYS)
    # Measured unless the config fixes the constants (the run records them); the loader applies them only
    # with data.normalize.
    if cfg.mean is not None and cfg.std is not None:
        mean, std = tuple(float(v) for v in cfg.mean), tuple(float(v) for v in cfg.std)
    else:
        mean, std = channel_stats(train.images)
        std, constant = usable_std(std)
        notes += constant
    for note in notes:
        warnings.warn(note, stacklevel=2)
    return Data(splits=splits, classes=list(classes), mean=mean, std=std, root=str(root) if root else None,
                warnings=notes, class_counts=counts)


def test_labels(cfg):
    """The labels of the test split that :func:`build_data` gives for ``cfg``, in split order (int64 numpy)."""
    _, test, _, _ = load_raw(cfg)
    return stratified_subset(test, cfg.test_size, cfg.split_seed, "test").labels.numpy().astype("int64")


def run_test_labels(run_dir):
    """The test labels of the dataset that a stored run's config names, read on this machine (the run's data
    root when it still exists, else $CLASSBENCH_DATA), for readers of test predictions stored in an older format
    (``classbench.runfolder.published_test_outcomes``, the report), which hold only the labels' digest.
    Raises DataError/ClassbenchError when the dataset is not here."""
    from ..config import load_run_config
    from ..runfolder import RunFolder, data_config_for_reader

    cfg = load_run_config(run_dir, check=False)
    return test_labels(data_config_for_reader(cfg.data, RunFolder(run_dir).config_yaml))
