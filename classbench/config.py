"""The typed config tree.

A run is described by one :class:`Config`: YAML files in ``configs/<dataset>/<name>.yaml``
fill it, ``key=value`` overrides adjust it, and :func:`load_config` checks every
key and type against the dataclasses below.  Each mistake becomes a
:class:`~classbench.errors.ConfigError` that names the key and says what would
be valid, never a traceback.
"""

from __future__ import annotations

import difflib
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
    normalize: bool = True  # per-channel mean/std of the training split
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
    compile: bool = False
    threads: int = 0  # CPU threads for torch; 0 picks the number of physical cores
    grad_clip: float = 0.0  # max grad norm; 0 disables
    label_smoothing: float = 0.0
    checkpoint_every: int = 0  # steps between last.pt writes; 0: at every evaluation
    on_nonfinite: str = "stop"  # stop | skip
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
    "optim.name": ("sgd", "adam", "adamw"),
    "sched.name": ("constant", "step", "cosine", "warmup_linear", "plateau", "onecycle"),
    "train.precision": ("auto", "fp32", "bf16", "fp16"),
    "train.on_nonfinite": ("stop", "skip"),
    "log.progress": ("auto", "always", "never"),
}
EVAL_SPLITS = ("val", "test", "train_subset")

_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_0-9][A-Za-z0-9_]*)*$")


# ---------------------------------------------------------------- schema walking
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
        value = yaml.safe_load(raw) if raw.strip() else ""
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


def _read_yaml(path: Path) -> dict:
    if not path.exists():
        alt = sorted(str(p) for p in Path("configs").glob(f"*/{path.stem}.yaml")) if Path("configs").is_dir() else []
        hint = f" Configs with that name: {', '.join(alt)}." if alt else " Configs live in configs/<dataset>/<name>.yaml."
        raise ConfigError(f"Config file {path} does not exist.{hint}")
    if path.is_dir():
        raise ConfigError(f"{path} is a folder; give a YAML config file such as configs/cifar10/resnet20.yaml.")
    try:
        text = path.read_bytes().decode("utf-8")
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader
    except UnicodeDecodeError:
        raise ConfigError(f"Config file {path} is not UTF-8 text; is it really a YAML file?") from None
    except OSError as e:
        raise ConfigError(f"Cannot read config file {path}: {e.strerror or e}.") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"Config file {path} is not valid YAML{where}: {problem}.") from None
    if data is None:
        raise ConfigError(f"Config file {path} is empty; it should be a mapping such as 'model: {{name: resnet20}}'.")
    if not isinstance(data, dict):
        raise ConfigError(
            f"Config file {path} must hold a mapping of sections (data, model, optim, ...), "
            f"but holds a {type(data).__name__}."
        )
    return data


def _merge(base: DictConfig, patch: dict, where: str) -> DictConfig:
    """Merge one key at a time so a type error can name its key."""
    _check_keys(patch, Config, "", where)
    for key, value in _flatten(patch):
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


def load_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Build the resolved config: defaults <- YAML file <- overrides, then validate."""
    cfg = OmegaConf.structured(Config)
    if path is not None:
        path = Path(path)
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
    if not 0.0 <= cfg.train.label_smoothing < 1.0:
        raise ConfigError(f"train.label_smoothing must be in [0, 1), got {cfg.train.label_smoothing}.")
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
    from .models import get_entry

    get_entry(cfg.model.name)  # raises ConfigError naming the closest models


def to_yaml(cfg: Config) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def from_yaml_text(text: str) -> Config:
    """Rebuild a Config from a run folder's config.yaml or a checkpoint's text."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"Stored config is not valid YAML: {e}") from None
    cfg = _merge(OmegaConf.structured(Config), data or {}, "stored config")
    obj = OmegaConf.to_object(cfg)
    assert isinstance(obj, Config)
    return obj


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
