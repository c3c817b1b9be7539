"""The typed config tree.

A run is described by one :class:`Config`: YAML files in ``configs/<dataset>/<name>.yaml``
fill it, ``key=value`` overrides adjust it, and :func:`load_config` checks every
key and type against the dataclasses below.  Each mistake becomes a
:class:`~classbench.errors.ConfigError` that names the key and says what would
be valid, never a traceback.
"""

from __future__ import annotations

import copy
import difflib
import functools
import math
import re
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Optional, get_args, get_origin, get_type_hints

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .errors import ConfigError


@dataclass
class DataConfig:
    name: str = "cifar10"  # cifar10 | cifar100 | imagefolder | synthetic
    root: Optional[str] = None  # else $CLASSBENCH_DATA, else ./data
    download: bool = True
    labels: str = "fine"  # cifar100: fine (100 classes) | coarse (20 superclasses)
    val_size: int = 5000  # held out of train, class-stratified; 0 disables val
    split_seed: int = 0
    train_size: int = 0  # use only the first N training images after the val hold-out; 0 = all
    train_subset_size: int = 200  # the train_subset eval split: first N training images
    test_size: int = 0  # use only the first N test images; 0 = all (for smoke runs)
    image_size: Optional[int] = None  # imagefolder: resize to this size; None keeps the files' size
    pad: int = 4  # random crop with this much zero padding; 0 disables crop
    flip: bool = True
    normalize: bool = True  # per-channel mean/std of the training split (or data.mean/data.std)
    # Fixed normalisation constants on the 0..1 pixel scale, one per channel (for example a reference's
    # 0.5/0.5/0.5); None measures them on the training split.  Both or neither.
    mean: Optional[list[float]] = None
    std: Optional[list[float]] = None
    crop: str = "pad"  # pad: random crop of the zero-padded image (data.pad) | resized: random-resized crop
    crop_scale: list[float] = field(default_factory=lambda: [0.08, 1.0])  # resized: range of the area fraction
    crop_ratio: list[float] = field(default_factory=lambda: [3 / 4, 4 / 3])  # resized: range of the aspect ratio
    rotate: float = 0.0  # random rotation by up to this many degrees (bilinear, black corners); 0 turns it off
    augment: str = "none"  # none | randaugment | trivialaugment | autoaugment (the CIFAR-10 policy)
    randaugment_n: int = 2  # randaugment: operations per image
    randaugment_m: int = 9  # randaugment: magnitude, a bin in 0..30
    cutout: int = 0  # side of the square erased from each training image (after normalising: to 0); 0 off
    num_classes: int = 10  # synthetic only
    synthetic_size: int = 2048  # synthetic only: training images


@dataclass
class ModelConfig:
    name: str = "resnet20"
    args: dict[str, Any] = field(default_factory=dict)  # passed to the model factory
    channels_last: Optional[bool] = None  # None: the registry's default for the family
    sync_bn: bool = False  # DDP: convert BatchNorm to SyncBatchNorm


@dataclass
class OptimConfig:
    name: str = "sgd"  # sgd | adam | adamw
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8


@dataclass
class SchedConfig:
    # constant | step | cosine | warmup_linear | plateau | onecycle
    name: str = "constant"
    warmup_steps: int = 0  # linear warmup from warmup_start_lr to optim.lr
    warmup_start_lr: float = 1e-6
    milestones: list[int] = field(default_factory=list)  # step: in epochs if train.epochs budget, else steps
    gamma: float = 0.1  # step: factor at each milestone
    min_lr: float = 0.0  # cosine, warmup_linear, onecycle: the final lr
    factor: float = 0.1  # plateau: lr multiplier when val loss stalls
    patience: int = 10  # plateau: evaluations without improvement before the lr drops
    pct_start: float = 0.25  # onecycle: fraction of steps spent rising
    div_factor: float = 25.0  # onecycle: starting lr = optim.lr / div_factor


@dataclass
class TrainConfig:
    epochs: int = 0  # the budget, unless train.steps > 0
    steps: int = 0  # when > 0, overrides train.epochs
    batch_size: int = 128  # the global batch; split across ranks under DDP
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    compile: str = "auto"  # auto (compile where it was measured to pay off; train/compile_choice.py) | on | off
    compile_mode: str = "default"  # torch.compile mode: default | reduce-overhead (CUDA graphs) | max-autotune
    deterministic: bool = False  # deterministic kernels (warn where an op has none); docs/reliability.md
    tf32: bool = True  # CUDA: fp32 matmuls/convolutions in TF32 on GPUs that have it (Ampere and later)
    threads: int = 0  # CPU threads for torch; 0 picks the number of physical cores
    grad_clip: float = 0.0  # max grad norm; 0 disables
    label_smoothing: float = 0.0
    mixup: float = 0.0  # Mixup's Beta alpha; 0 turns it off
    cutmix: float = 0.0  # CutMix's Beta alpha; 0 turns it off (both on: each batch picks one)
    ema: float = 0.0  # decay of an EMA of the weights, evaluated as its own selection; 0 turns it off
    early_stop: int = 0  # stop after this many evaluations without a better val top-1; 0 turns it off
    accumulate: int = 1  # micro-batches per optimizer step; train.batch_size is their total
    checkpoint_every: int = 0  # steps between last.pt writes; 0: at every evaluation
    on_nonfinite: str = "stop"  # stop | skip
    # On --resume with a new budget, a budget-shaped schedule (cosine, warmup_linear, onecycle) either
    # keeps its old plan and holds its final lr past it (continue) or is stretched over the new budget
    # (replan); ask: refuse and show both when they differ (docs/design.md, "Resuming with a new budget").
    resume_schedule: str = "ask"  # ask | continue | replan
    max_nonfinite_skips: int = 10
    runs_dir: str = "runs"


@dataclass
class EvalConfig:
    every: int = 0  # steps between evaluations; 0: once per epoch
    splits: list[str] = field(default_factory=lambda: ["val", "test"])
    batch_size: int = 1024
    tta: bool = False  # also average the horizontally flipped view


@dataclass
class LogConfig:
    every: int = 50  # steps between train lines in metrics.jsonl
    progress: str = "auto"  # auto (only on a terminal) | always | never
    tensorboard: bool = False


@dataclass
class Config:
    name: str = "unnamed"  # the config file's stem; names the run folder
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    sched: SchedConfig = field(default_factory=SchedConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    log: LogConfig = field(default_factory=LogConfig)


CHOICES: dict[str, tuple[str, ...]] = {
    "data.name": ("cifar10", "cifar100", "imagefolder", "synthetic"),
    "data.labels": ("fine", "coarse"),
    "data.augment": ("none", "randaugment", "trivialaugment", "autoaugment"),
    "data.crop": ("pad", "resized"),
    "optim.name": ("sgd", "adam", "adamw"),
    "sched.name": ("constant", "step", "cosine", "warmup_linear", "plateau", "onecycle"),
    "train.precision": ("auto", "fp32", "bf16", "fp16"),
    "train.on_nonfinite": ("stop", "skip"),
    "train.resume_schedule": ("ask", "continue", "replan"),
    "train.compile": ("auto", "on", "off"),
    "train.compile_mode": ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"),
    "log.progress": ("auto", "always", "never"),
}
EVAL_SPLITS = ("val", "test", "train_subset")

_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_0-9][A-Za-z0-9_]*)*$")


# ---------------------------------------------------------------- schema walking
@functools.cache  # get_type_hints re-evaluates every annotation: most of load_config's time without this
def _schema_fields(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


def _describe(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is None:
        return getattr(tp, "__name__", str(tp))
    args = [a for a in get_args(tp) if a is not type(None)]
    if origin in (list,):
        return f"list of {_describe(args[0])}"
    if origin in (dict,):
        return "mapping"
    if len(args) == 1:  # Optional[X]
        return f"{_describe(args[0])} or null"
    return str(tp)


def _all_keys(cls: type = Config, prefix: str = "") -> list[str]:
    keys = []
    for name, tp in _schema_fields(cls).items():
        full = f"{prefix}{name}"
        keys.append(full)
        if is_dataclass(tp):
            keys += _all_keys(tp, full + ".")
    return keys


def _unknown_key_error(key: str, where: str) -> ConfigError:
    valid = [k for k in _all_keys() if ("." in k) == ("." in key)]
    close = difflib.get_close_matches(key, valid, n=3, cutoff=0.6)
    leaf = key.rsplit(".", 1)[-1]
    close += [k for k in valid if k.rsplit(".", 1)[-1] == leaf and k not in close][:3]
    hint = f" Did you mean {' or '.join(repr(k) for k in close)}?" if close else ""
    section = key.split(".")[0]
    if section in {f.name for f in fields(Config)} and "." in key:
        sec_keys = [k for k in valid if k.startswith(section + ".") and k.count(".") == 1]
        hint += f" Valid keys in '{section}': {', '.join(k.split('.', 1)[1] for k in sec_keys)}."
    elif "." not in key:
        hint += f" Top-level keys are: {', '.join(f.name for f in fields(Config))}."
    return ConfigError(f"Unknown config key '{key}' ({where}).{hint}")


def _check_keys(node: Any, cls: type, prefix: str, where: str) -> None:
    """Reject keys that are not in the schema, recursively, naming the closest valid ones."""
    if not isinstance(node, dict):
        raise ConfigError(
            f"'{prefix.rstrip('.') or 'the config'}' must be a mapping of keys to values ({where}), "
            f"got {type(node).__name__}."
        )
    hints = _schema_fields(cls)
    for key, value in node.items():
        full = f"{prefix}{key}"
        if not isinstance(key, str) or key not in hints:
            raise _unknown_key_error(str(full), where)
        tp = hints[key]
        if is_dataclass(tp) and value is not None:
            _check_keys(value, tp, full + ".", where)


def _leaf_type(key: str) -> Any:
    cls: Any = Config
    tp: Any = None
    for part in key.split("."):
        if not is_dataclass(cls):
            return None
        tp = _schema_fields(cls).get(part)
        cls = tp
    return tp


# ---------------------------------------------------------------- overrides
def parse_override(text: str) -> tuple[str, Any]:
    """Split ``key=value`` and parse the value as YAML (numbers, bools, lists, null).

    A value YAML cannot parse is kept as the literal string.
    """
    if "=" not in text:
        raise ConfigError(
            f"Override '{text}' is not of the form key=value (for example optim.lr=0.05 or train.epochs=3)."
        )
    key, raw = text.split("=", 1)
    key = key.strip()
    if not _KEY_RE.match(key):
        raise ConfigError(f"Override '{text}': '{key}' is not a dotted config key such as optim.lr.")
    try:
        value = _safe_yaml(raw) if raw.strip() else ""
    except _YamlBoundExceeded as e:
        raise ConfigError(f"Override '{key}=...': its value {e}.") from None
    except yaml.YAMLError:
        value = raw
    if value is not None and not isinstance(value, (str, int, float, bool, list, dict)):
        value = raw  # e.g. dates: keep what the user typed
    return key, value


def _nest(key: str, value: Any) -> dict:
    out: dict = {}
    cur = out
    parts = key.split(".")
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
    cur[parts[-1]] = value
    return out


# ---------------------------------------------------------------- loading
class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (plain PyYAML keeps the last one silently)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:  # unhashable: the base class reports it
                break
            if duplicate:
                raise yaml.constructor.ConstructorError(None, None, f"found duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


# Bounds on what one YAML document may expand to.  A config has ~70 keys in 3
# levels; these leave ample room and keep loading (OmegaConf spends ~0.5 ms per
# node in a list) around a second at worst.  Aliases are counted as often as they are
# used, so a 300-byte "billion laughs" document is refused before anything is built.
MAX_YAML_DEPTH = 32
MAX_YAML_NODES = 2_000


class _YamlBoundExceeded(Exception):
    """A document nests too deeply or expands too far; deliberately not a yaml.YAMLError."""


def _expanded_size(root: yaml.Node) -> int:
    """Node count with every alias expanded, computed once per distinct node (no recursion, no expansion)."""
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]

    def children(node: yaml.Node) -> list[yaml.Node]:
        if isinstance(node, yaml.MappingNode):
            return [n for pair in node.value for n in pair]
        return list(node.value) if isinstance(node, yaml.SequenceNode) else []

    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            sizes[key] = 1 + sum(sizes[id(c)] for c in children(node))
            on_path.discard(key)
            if sizes[key] > MAX_YAML_NODES:
                raise _YamlBoundExceeded(
                    f"expands to more than {MAX_YAML_NODES:,} values once its aliases (*name) are "
                    "expanded; write the values out instead of nesting aliases"
                )
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise _YamlBoundExceeded("holds an alias (*name) that refers to itself")
        on_path.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in children(node))
    return sizes[id(root)]


class _BoundedLoader(_UniqueKeyLoader):
    """The loader for every config text: safe, unique keys, bounded depth and alias expansion."""

    _depth = 0

    def compose_node(self, parent, index):
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise _YamlBoundExceeded(f"nests deeper than {MAX_YAML_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def get_single_data(self):
        node = self.get_single_node()
        if node is None:
            return None
        _expanded_size(node)
        return self.construct_document(node)


def _safe_yaml(text: str) -> Any:
    """Parse YAML text with :class:`_BoundedLoader`; a bound exceeded raises _YamlBoundExceeded."""
    try:
        return yaml.load(text, Loader=_BoundedLoader)  # noqa: S506 - a SafeLoader subclass
    except RecursionError:  # a fallback: the depth bound should stop this first
        raise _YamlBoundExceeded(f"nests deeper than {MAX_YAML_DEPTH} levels") from None


def _yaml_error_text(e: yaml.YAMLError) -> str:
    mark = getattr(e, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    return f"{where}: {problem}"


def _parse_config_text(text: str, what: str) -> dict:
    """YAML text of a whole config -> its mapping, or a one-line ConfigError naming ``what``."""
    try:
        data = _safe_yaml(text)
    except _YamlBoundExceeded as e:
        raise ConfigError(f"{what} {e}.") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{what} is not valid YAML{_yaml_error_text(e)}.") from None
    if data is None:
        raise ConfigError(f"{what} is empty; it should be a mapping such as 'model: {{name: resnet20}}'.")
    if not isinstance(data, dict):
        raise ConfigError(
            f"{what} must hold a mapping of sections (data, model, optim, ...), but holds a {type(data).__name__}."
        )
    return data


def _read_config_file(path: Path, what: str) -> dict:
    """A config file's mapping; missing, folder, unreadable, not UTF-8, empty or not YAML: one ConfigError."""
    if path.is_dir():
        raise ConfigError(f"{what} is a folder; give a YAML config file such as configs/cifar10/resnet20.yaml.")
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{what} does not exist.") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{what} is not UTF-8 text; is it really a YAML file?") from None
    except OSError as e:
        raise ConfigError(f"Cannot read {what}: {e.strerror or e}.") from None
    return _parse_config_text(text, what)


def _read_yaml(path: Path) -> dict:
    if not path.exists() and not path.is_symlink():
        names = difflib.get_close_matches(path.with_suffix("").name, list(packaged_configs()), n=3, cutoff=0.0)
        alt = sorted(n for n in packaged_configs() if n.rsplit("/", 1)[-1] == path.stem) or names
        hint = (f" Configs with a close name: {', '.join(alt)}." if alt
                else " Configs live in configs/<dataset>/<name>.yaml.")
        raise ConfigError(f"Config file {path} does not exist.{hint}")
    return _read_config_file(path, f"Config file {path}")


# ---------------------------------------------------------------- config names
def config_dirs() -> list[Path]:
    """Where configs are looked up by name: the package's bundled configs, else the repository's configs/."""
    bundled = Path(__file__).resolve().parent / "configs"
    if bundled.is_dir():
        return [bundled]
    repo = Path(__file__).resolve().parent.parent / "configs"
    return [repo] if repo.is_dir() else []


def packaged_configs() -> dict[str, Path]:
    """Every config that can be named, e.g. ``{"cifar10/resnet20": Path(...)}``, sorted by name.

    Only ``<dataset>/<name>.yaml`` files count: top-level files such as
    ``groups.yaml`` describe configs and are not configs themselves.
    """
    found: dict[str, Path] = {}
    for d in config_dirs():
        for p in sorted(d.glob("*/*.yaml")):
            found.setdefault(f"{p.parent.name}/{p.stem}", p)
    return found


def resolve_config(name: str | Path) -> Path:
    """A config argument as a file: an existing path wins; else a bundled config named like ``cifar10/resnet20``.

    A name that matches neither comes back unchanged, so that reading it reports
    the missing file (with the closest config names).
    """
    path = Path(name).expanduser()
    if path.exists() or path.is_symlink() or path.is_absolute() or ".." in path.parts:
        return path
    return packaged_configs().get(path.as_posix().removesuffix(".yaml"), path)


# YAML 1.1 reads off/on (and no/yes) as booleans; for these string keys they mean a choice.
_BOOL_WORDS = {"log.progress": {False: "never", True: "always", "off": "never", "on": "always"},
               "train.compile": {False: "off", True: "on", "false": "off", "true": "on"}}


def _refuse_interpolation(key: str, value: Any, where: str) -> None:
    """OmegaConf would resolve ``${...}`` against other keys or, with ``oc.env``, the environment: refuse it."""
    stack: list[tuple[str, Any]] = [(key, key), (key, value)]  # the dotted key too: model.args keys are free
    while stack:
        k, v = stack.pop()
        if isinstance(v, dict):
            stack.extend((f"{k}.{kk}", vv) for kk, vv in v.items())
            stack.extend((k, kk) for kk in v)  # keys are strings OmegaConf reads too
        elif isinstance(v, list):
            stack.extend((k, vv) for vv in v)
        elif isinstance(v, str) and "${" in v:
            shown = v if len(v) <= 60 else v[:57] + "..."
            raise ConfigError(
                f"Config key '{k}' holds {shown!r} ({where}): ${{...}} interpolation is not supported, "
                "so a config never reads other keys or the environment. Write the value itself."
            )


def _merge(base: DictConfig, patch: dict, where: str) -> DictConfig:
    """Merge one key at a time so a type error can name its key."""
    _check_keys(patch, Config, "", where)
    for key, value in _flatten(patch):
        _refuse_interpolation(key, value, where)
        words = _BOOL_WORDS.get(key)
        if words is not None and isinstance(value, (bool, str)) and value in words:
            value = words[value]
        try:
            OmegaConf.update(base, key, value, merge=False)
        except OmegaConfBaseException as e:
            tp = _leaf_type(key)
            expected = _describe(tp) if tp is not None else "a valid value"
            raise ConfigError(
                f"Config key '{key}' expects {expected}, but got {value!r} ({where}). "
                f"Set it as {key}=<{expected}>."
            ) from e
    return base


def _flatten(d: dict, prefix: str = "") -> list[tuple[str, Any]]:
    items: list[tuple[str, Any]] = []
    for k, v in d.items():
        full = f"{prefix}{k}"
        tp = _leaf_type(full)
        # Descend into sections and into non-empty free mappings (model.args), so that
        # `model.args.width=8` adds one option instead of replacing all of them.
        free_mapping = tp is None or get_origin(tp) is dict
        if isinstance(v, dict) and v and ((tp is not None and is_dataclass(tp)) or free_mapping):
            items += _flatten(v, full + ".")
        else:
            items.append((full, v))
    return items


@functools.cache
def _default_node() -> DictConfig:
    return OmegaConf.structured(Config)


def _defaults() -> DictConfig:
    """A fresh DictConfig of the defaults: a copy of one built once (building one costs 4x as much)."""
    return copy.deepcopy(_default_node())


def load_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Build the resolved config: defaults <- YAML file <- overrides, then validate."""
    cfg = _defaults()
    if path is not None:
        path = resolve_config(path)
        data = _read_yaml(path)
        data.setdefault("name", path.stem)
        cfg = _merge(cfg, data, f"in {path}")
    return _apply(cfg, overrides)


def apply_overrides(cfg: Config, overrides: list[str] | tuple[str, ...]) -> Config:
    """A stored config (a resumed run's) with key=value overrides, checked like a fresh one."""
    return _apply(OmegaConf.structured(cfg), overrides)


def _apply(node: DictConfig, overrides: list[str] | tuple[str, ...]) -> Config:
    for text in overrides:
        key, value = parse_override(text)
        node = _merge(node, _nest(key, value), f"override '{text}'")
    obj = OmegaConf.to_object(node)
    assert isinstance(obj, Config)
    validate(obj)
    return obj


def validate(cfg: Config) -> None:
    """Checks beyond types: choices, ranges, and names that must exist."""
    for key, choices in CHOICES.items():
        section, leaf = key.split(".")
        value = getattr(getattr(cfg, section), leaf)
        if value not in choices:
            close = difflib.get_close_matches(str(value), choices, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"{key}={value!r} is not valid; choose one of: {', '.join(choices)}.{hint}")
    positive = {
        "train.batch_size": cfg.train.batch_size,
        "eval.batch_size": cfg.eval.batch_size,
        "log.every": cfg.log.every,
        "data.num_classes": cfg.data.num_classes,
        "data.synthetic_size": cfg.data.synthetic_size,
        "optim.lr": cfg.optim.lr,
        "sched.gamma": cfg.sched.gamma, "sched.factor": cfg.sched.factor, "sched.div_factor": cfg.sched.div_factor,
    }
    for section in fields(cfg):  # NaN/inf slip through every range check below
        for f in fields(getattr(cfg, section.name)) if is_dataclass(getattr(cfg, section.name)) else ():
            value = getattr(getattr(cfg, section.name), f.name)
            for v in value if isinstance(value, list) else [value]:
                if isinstance(v, float) and not math.isfinite(v):
                    raise ConfigError(f"{section.name}.{f.name} must be a finite number, got {value}.")
                # torch keeps sizes, counts and seeds in int64: a bigger int fails deep inside it, later.
                if isinstance(v, int) and not isinstance(v, bool) and not -INT64_MAX <= v <= INT64_MAX:
                    raise ConfigError(
                        f"{section.name}.{f.name}={v} does not fit in a 64-bit integer, which torch needs."
                    )
    for key, seed in (("train.seed", cfg.train.seed), ("data.split_seed", cfg.data.split_seed)):
        if not 0 <= seed <= INT64_MAX:  # torch, numpy and python generators all take this range
            raise ConfigError(f"{key} must be between 0 and 2**63-1, got {seed}.")
    cfg.train.device = _check_device(cfg.train.device)
    if not cfg.name or cfg.name in (".", "..") or any(c in cfg.name for c in "/\\\0"):
        raise ConfigError(f"name={cfg.name!r} names the run folder: use a plain non-empty name without '/' or '\\'.")
    for key, value in positive.items():
        if value <= 0:
            raise ConfigError(f"{key} must be greater than 0, got {value}.")
    non_negative = {
        "train.epochs": cfg.train.epochs, "train.steps": cfg.train.steps,
        "data.val_size": cfg.data.val_size, "data.train_size": cfg.data.train_size,
        "data.train_subset_size": cfg.data.train_subset_size, "data.pad": cfg.data.pad,
        "data.test_size": cfg.data.test_size,
        "eval.every": cfg.eval.every, "train.checkpoint_every": cfg.train.checkpoint_every,
        "train.grad_clip": cfg.train.grad_clip, "train.threads": cfg.train.threads,
        "sched.warmup_steps": cfg.sched.warmup_steps, "optim.weight_decay": cfg.optim.weight_decay,
        "train.max_nonfinite_skips": cfg.train.max_nonfinite_skips,
        "optim.momentum": cfg.optim.momentum, "optim.eps": cfg.optim.eps, "sched.min_lr": cfg.sched.min_lr,
        "sched.warmup_start_lr": cfg.sched.warmup_start_lr, "sched.patience": cfg.sched.patience,
        "train.mixup": cfg.train.mixup, "train.cutmix": cfg.train.cutmix, "data.cutout": cfg.data.cutout,
        "data.rotate": cfg.data.rotate, "data.randaugment_n": cfg.data.randaugment_n,
        "train.early_stop": cfg.train.early_stop,
    }
    for key, value in non_negative.items():
        if value < 0:
            raise ConfigError(f"{key} must not be negative, got {value}.")
    if not all(0.0 <= b < 1.0 for b in cfg.optim.betas):
        raise ConfigError(f"optim.betas must be two numbers in [0, 1), e.g. [0.9, 0.999]; got {list(cfg.optim.betas)}.")
    if not 0.0 < cfg.sched.pct_start < 1.0:
        raise ConfigError(f"sched.pct_start must be in (0, 1), got {cfg.sched.pct_start}.")
    if cfg.data.image_size is not None and cfg.data.image_size <= 0:
        raise ConfigError(f"data.image_size must be greater than 0 (or null), got {cfg.data.image_size}.")
    if cfg.data.name == "synthetic" and cfg.data.num_classes > cfg.data.synthetic_size:
        raise ConfigError(
            f"data.num_classes={cfg.data.num_classes} is more than data.synthetic_size={cfg.data.synthetic_size}: "
            "some classes would have no training image. Lower data.num_classes or raise data.synthetic_size."
        )
    if not 0.0 <= cfg.train.label_smoothing < 1.0:
        raise ConfigError(f"train.label_smoothing must be in [0, 1), got {cfg.train.label_smoothing}.")
    _validate_recipe(cfg)
    if cfg.train.epochs == 0 and cfg.train.steps == 0:
        raise ConfigError("No training budget: set train.epochs=N or train.steps=N (steps win when both are set).")
    if not cfg.eval.splits:
        raise ConfigError("eval.splits is empty; list at least one of: " + ", ".join(EVAL_SPLITS) + ".")
    for split in cfg.eval.splits:
        if split not in EVAL_SPLITS:
            raise ConfigError(f"eval.splits holds {split!r}; valid splits are: {', '.join(EVAL_SPLITS)}.")
    if cfg.data.val_size == 0 and "val" in cfg.eval.splits:
        raise ConfigError("eval.splits asks for 'val' but data.val_size=0 disables it; drop 'val' or set data.val_size.")
    if cfg.sched.name == "plateau" and "val" not in cfg.eval.splits:
        raise ConfigError("sched.name=plateau lowers the lr when val loss stalls, so eval.splits must include 'val'.")
    if cfg.sched.name == "step" and not cfg.sched.milestones:
        raise ConfigError("sched.name=step needs sched.milestones, e.g. sched.milestones=[60,120,160].")
    budget, unit = (cfg.train.steps, "steps") if cfg.train.steps > 0 else (cfg.train.epochs, "epochs")
    for m in cfg.sched.milestones:
        if m <= 0 or m >= budget:
            raise ConfigError(
                f"sched.milestones={list(cfg.sched.milestones)}: milestone {m} lies outside the budget of "
                f"{budget} {unit} (milestones count {unit} when the budget is train.{unit})."
            )
    if cfg.sched.warmup_steps and cfg.train.steps and cfg.sched.warmup_steps >= cfg.train.steps:
        raise ConfigError(
            f"sched.warmup_steps={cfg.sched.warmup_steps} is not below train.steps={cfg.train.steps}."
        )
    # model.name is checked where models are built (train, the config command, the sweep's plan):
    # loading a config must not import the model zoo (classbench.models, torch).


INT64_MAX = 2**63 - 1
DEVICE_TYPES = ("cpu", "cuda")


def _check_device(name: str) -> str:
    """``train.device`` as torch spells it, normalised (``cpu:0`` -> ``cpu``), or a ConfigError.

    Only devices classbench trains on pass: a name torch accepts but cannot
    train with here (``meta``, ``xpu``, ...) is refused now, not after training.
    Whether a GPU is present is checked when the run starts, on its machine.
    """
    if name == "auto":
        return name
    import torch

    try:
        device = torch.device(name)
    except (RuntimeError, ValueError, TypeError):
        device = None
    if device is None or device.type not in DEVICE_TYPES:
        raise ConfigError(f"train.device={name!r} is not a device classbench trains on; use auto, cpu, cuda or cuda:N.")
    if device.type == "cpu":
        if device.index not in (None, 0):
            raise ConfigError(f"train.device={name!r}: there is one CPU device; use train.device=cpu.")
        return "cpu"  # torch treats cpu and cpu:0 as one device, but not as equal names
    return str(device)


def _validate_recipe(cfg: Config) -> None:
    """Ranges of the augmentation and regularisation keys (issue #18); negatives are refused above."""
    d, t = cfg.data, cfg.train
    if not 0 <= d.randaugment_m < 31:
        raise ConfigError(f"data.randaugment_m must be a magnitude bin in 0..30, got {d.randaugment_m}.")
    if not 0.0 <= t.ema < 1.0:
        raise ConfigError(f"train.ema must be in [0, 1) (a decay such as 0.999; 0 turns EMA off), got {t.ema}.")
    if t.accumulate < 1 or t.batch_size % t.accumulate:
        raise ConfigError(f"train.accumulate={t.accumulate} must be at least 1 and divide "
                          f"train.batch_size={t.batch_size} (the total of its micro-batches).")
    if d.rotate > 180:
        raise ConfigError(f"data.rotate is the largest angle in degrees, at most 180; got {d.rotate}.")
    if (d.mean is None) != (d.std is None):
        raise ConfigError("data.mean and data.std are fixed normalisation constants: set both, or neither "
                          "(to measure them on the training split).")
    if d.mean is not None:
        mean, std = list(d.mean), list(d.std)
        if len(mean) != 3 or len(std) != 3 or not all(math.isfinite(v) for v in mean + std) or min(std) <= 0:
            raise ConfigError(f"data.mean and data.std need one finite value per channel (3), with every std > 0; "
                              f"got mean={mean}, std={std}.")
    scale, ratio = list(d.crop_scale), list(d.crop_ratio)
    if len(scale) != 2 or not 0 < scale[0] <= scale[1] <= 1:
        raise ConfigError(f"data.crop_scale must be [low, high] with 0 < low <= high <= 1, got {scale}.")
    if len(ratio) != 2 or not 0 < ratio[0] <= ratio[1]:
        raise ConfigError(f"data.crop_ratio must be [low, high] with 0 < low <= high, got {ratio}.")
    size = 32 if d.name in ("cifar10", "cifar100") else d.image_size or (32 if d.name == "synthetic" else None)
    if size is not None and d.cutout > size:  # image folders of unknown size: the loader checks
        raise ConfigError(f"data.cutout={d.cutout} is larger than the {size}x{size} images; "
                          f"use at most {size} (0 turns Cutout off).")


def to_yaml(cfg: Config) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def from_yaml_text(text: str, what: str = "The stored config") -> Config:
    """Rebuild a Config from a run folder's config.yaml or a checkpoint's text.

    The text is untrusted (run folders are shared): it is parsed with the same
    bounds as a config file, and empty text, interpolation, unknown keys and
    wrong types are refused with one :class:`ConfigError` naming ``what``.
    """
    if not isinstance(text, str):
        raise ConfigError(f"{what} must be YAML text, got {type(text).__name__}.")
    return _build_stored(_parse_config_text(text, what), what)


def _build_stored(data: dict, what: str) -> Config:
    cfg = _merge(_defaults(), data, f"in {what[0].lower() + what[1:]}")
    obj = OmegaConf.to_object(cfg)
    assert isinstance(obj, Config)
    return obj


def load_run_config(run_dir: str | Path, *, check: bool = True) -> Config:
    """The config stored in a run folder's ``config.yaml``, read as untrusted input.

    Missing, a folder, unreadable, not UTF-8, empty, not a mapping, too deep or
    too expanded, ``${...}`` interpolation, unknown keys, wrong types: each is a
    one-line :class:`ConfigError`.  With ``check`` (for resuming, which trains
    with it) the values are validated like a fresh config's; readers that only
    show a config can pass ``check=False``.
    """
    from . import runfolder

    path = runfolder.RunFolder(run_dir).config_yaml
    if not path.exists() and not path.is_symlink():
        raise ConfigError(
            f"{run_dir} is not a run folder (no {runfolder.CONFIG}); give the folder that `train` created."
        )
    what = f"The run's config {path}"
    cfg = _build_stored(_read_config_file(path, what), what)
    if check:
        try:
            validate(cfg)
        except ConfigError as e:
            raise ConfigError(f"{what}: {e}") from None
    return cfg


def to_dict(cfg: Config) -> dict:
    return OmegaConf.to_container(OmegaConf.structured(cfg))  # type: ignore[return-value]


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Flatten nested dicts into dotted keys; lists and scalars are leaves."""
    out: dict[str, Any] = {}
    if isinstance(tree, dict):
        if not tree and prefix:
            out[prefix] = {}
        for k, v in tree.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            out.update(flatten(v, key))
    else:
        out[prefix] = tree
    return out
