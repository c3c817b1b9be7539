"""The training loop.

Read it top to bottom: `Trainer.__init__` builds everything from the config
(or from a run folder's last checkpoint), `fit` runs steps until the budget is
spent, evaluating, logging and checkpointing on the way, and `_finish` writes
the summary.

The hot path never waits for the device: losses and accuracy counts add up in
device tensors and are read once per `log.every` steps.  The clock that
measures training img/s stops for evaluation, checkpoints and compilation.
"""

from __future__ import annotations

import copy
import math
import signal
import threading
import time
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..config import Config, apply_overrides, from_yaml_text, to_yaml
from ..data import build_data
from ..data.loader import DeviceLoader, Normalize, to_float
from ..errors import ClassbenchError, NonFiniteLossError, TrainingInterrupted
from ..io import append_jsonl, atomic_write_json, atomic_write_text, read_jsonl
from ..models import create_model, get_entry
from . import distributed
from .checkpoint import load_checkpoint, load_model_state, rng_state, save_checkpoint, set_rng_state
from .evaluate import evaluate, logits_of
from .optim import Schedule, build_optimizer
from .precision import autocast, resolve_device, resolve_precision, setup_threads
from ..runfolder import create_run_dir, environment, write_status


class Trainer:
    def __init__(self, cfg: Config, *, resume_dir: str | Path | None = None) -> None:
        self.cfg = cfg
        self.dist = distributed.setup(cfg.train.device)
        self.is_main = self.dist.rank == 0
        self.threads = setup_threads(cfg.train.threads or distributed.local_threads(self.dist))  # DDP: cores // procs
        self.device = self.dist.device or resolve_device(cfg.train.device)
        self.precision = resolve_precision(cfg.train.precision, self.device)
        if self.device.type == "cpu":
            keep_freed_memory()
        torch.manual_seed(cfg.train.seed)

        # ---- data: every split in memory, batches made on the device
        self.data = build_data(cfg.data)
        entry = get_entry(cfg.model.name)
        self.channels_last = entry.channels_last if cfg.model.channels_last is None else cfg.model.channels_last
        self.normalize = Normalize(self.data.mean, self.data.std) if cfg.data.normalize else Normalize(None, None)
        common = dict(device=self.device, normalize=self.normalize, channels_last=self.channels_last,
                      rank=self.dist.rank, world_size=self.dist.world_size)
        try:
            self.train_loader = DeviceLoader(
                self.data.splits["train"], cfg.train.batch_size, train=True, pad=cfg.data.pad,
                flip=cfg.data.flip, seed=cfg.train.seed, **common)
        except ValueError as e:
            raise ClassbenchError(f"Cannot batch the training split: {e}.") from None
        self.eval_loaders = {
            s: DeviceLoader(self.data.splits[s], cfg.eval.batch_size, train=False, **common)
            for s in cfg.eval.splits if s in self.data.splits
        }
        self.steps_per_epoch = len(self.train_loader)
        self.total_steps = cfg.train.steps or cfg.train.epochs * self.steps_per_epoch
        self.eval_every = cfg.eval.every or self.steps_per_epoch
        self.checkpoint_every = cfg.train.checkpoint_every or self.eval_every
        self.selection_split = "val" if "val" in self.eval_loaders else "test"
        if self.selection_split not in self.eval_loaders:
            raise ClassbenchError("eval.splits must include 'val' or 'test' to choose best.pt.")

        # ---- model, optimizer, schedule
        self.model_args = dict(cfg.model.args)
        try:
            model = create_model(cfg.model.name, num_classes=self.data.num_classes, **self.model_args)
        except RuntimeError as e:  # e.g. model.args.width=-3: torch refuses the layer shapes
            raise ClassbenchError(f"Cannot build model {cfg.model.name!r} with model.args={self.model_args}: "
                                  f"{str(e).splitlines()[0]}. Fix model.args.") from None
        self.model = model.to(self.device)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        if resume_dir is None and callable(getattr(self.model, "data_init", None)):
            self._data_init()  # e.g. airbench's frozen whitening layer; a resume loads it from last.pt
        if cfg.model.sync_bn and self.dist.world_size > 1:
            distributed.check_sync_bn(self.device)  # SyncBatchNorm runs on GPUs only: a clear error on CPU
            self.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        self.optimizer = build_optimizer(self.model, cfg.optim, self.device)
        self.schedule = Schedule(self.optimizer, cfg.sched, base_lr=cfg.optim.lr, total_steps=self.total_steps,
                                 steps_per_epoch=self.steps_per_epoch, epoch_budget=cfg.train.steps == 0)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        self.criterion = torch.nn.CrossEntropyLoss(label_smoothing=cfg.train.label_smoothing)
        self.train_model = distributed.wrap(self.model, self.dist)
        if self.dist.world_size > 1:  # the init above is shared; dropout, MixStyle & co draw per-rank streams
            torch.manual_seed(distributed.rank_seed(cfg.train.seed, self.dist.rank))
        self.compile_time = 0.0
        if cfg.train.compile:
            self.train_model = torch.compile(self.train_model)

        # ---- state that a checkpoint carries
        self.step = 0
        self.best = {"top1": -1.0, "step": 0}
        self.train_time = 0.0  # seconds of training steps only
        self.train_images = 0  # images behind train_time
        self.skipped = 0
        self.last_finite_loss: float | None = None
        self._zero_window()

        # ---- run folder
        self.resumed = resume_dir is not None
        if self.resumed:
            self.run_dir = Path(resume_dir)
            self._load_last()
        elif self.is_main:
            try:
                self.run_dir = create_run_dir(cfg.train.runs_dir, cfg.data.name, cfg.name)
            except OSError as e:  # runs_dir is a file, read-only, full, ...
                raise ClassbenchError(f"Cannot create a run folder under train.runs_dir={cfg.train.runs_dir}: "
                                      f"{e.strerror or e} ({e.filename}). Set train.runs_dir to a writable folder.") from None
        else:
            self.run_dir = Path(distributed.broadcast_object(None, self.dist))
        if self.dist.world_size > 1 and not self.resumed and self.is_main:
            distributed.broadcast_object(str(self.run_dir), self.dist)
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.metrics_path = self.run_dir / "metrics.jsonl"
        self.tb = None
        self._stop_signal: int | None = None

    def _data_init(self, max_images: int = 10000) -> None:
        """Call ``model.data_init(x)`` once before training: ``x`` is the first ``max_images`` training
        images as float on the device, normalised and laid out as training batches, not augmented."""
        images = self.data.splits["train"].images[:max_images].to(self.device)
        scale, shift = self.normalize.affine(self.device)
        with torch.no_grad():
            self.model.data_init(to_float(images, scale, shift, self.channels_last))

    # ================================================================ loop
    def fit(self) -> Path:
        try:
            return self._fit()
        except (TrainingInterrupted, NonFiniteLossError):
            raise  # these wrote their own status
        except Exception as e:
            if self.is_main and (self.run_dir / "status.json").exists():
                write_status(self.run_dir, "failed", f"{type(e).__name__}: {e}"[:500])
            raise

    def _fit(self) -> Path:
        cfg = self.cfg
        if self.is_main:
            self._start_records()
        show = cfg.log.progress == "always" or (cfg.log.progress == "auto" and _is_tty())
        bar = tqdm(total=self.total_steps, initial=self.step, disable=not (show and self.is_main),
                   unit="step", dynamic_ncols=True, desc=cfg.name)
        batches = self.train_loader.batches()
        self.wall_start = time.perf_counter() - self.wall_offset
        with self._signals(), self._closing_tensorboard():
            self._clock_start = time.perf_counter()
            stop_poll = distributed.StopPoll(self.dist)  # DDP: all ranks agree to stop at the same step
            while self.step < self.total_steps:
                signum = stop_poll(self._stop_signal or 0)
                if signum:
                    self._stop_signal = signum
                    self._interrupt()
                x, y = next(batches)
                self._train_step(x, y)
                self.step += 1
                bar.update(1)
                if self.step == 1 and cfg.train.compile and not self.resumed:
                    self._pause_clock(count=False)  # the first compiled step is compilation, not training
                    self.compile_time = self._last_segment
                    self._clock_start = time.perf_counter()
                last = self.step == self.total_steps
                if self.step % cfg.log.every == 0 or last:
                    self._log_train(bar)
                if self.step % self.eval_every == 0 or last:
                    self._evaluate()
                if self.step % self.checkpoint_every == 0 or last:
                    self._save_last()
            if self._last_eval_step != self.step:
                # A resumed run whose budget was cut to where it stopped: evaluate the final weights.
                self._evaluate()
                self._save_last()
            stop_poll.close()
        bar.close()
        return self._finish()

    def _train_step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        with autocast(self.precision, self.device):
            out = self.train_model(x)
            logits = logits_of(out)
            loss = self.criterion(logits, y)
            total = loss
            for name, aux_logits in (out.get("aux", {}) if isinstance(out, dict) else {}).items():
                aux_loss = self.criterion(aux_logits, y)
                total = total + aux_loss
                key = f"loss_{name}"
                if key in self.window:
                    self.window[key] += aux_loss.detach().float()
                else:
                    self.window[key] = aux_loss.detach().float().clone()  # owned, since later steps add in place
        if self.cfg.train.on_nonfinite == "skip" and not distributed.all_ranks(bool(torch.isfinite(total)), self.dist):
            # a host sync, only for `skip`; under DDP all ranks skip together (a lone backward would hang)
            self.skipped += 1
            if self.skipped > self.cfg.train.max_nonfinite_skips:
                self._nonfinite(f"more than train.max_nonfinite_skips={self.cfg.train.max_nonfinite_skips} "
                                "steps had a non-finite loss")
            if not all(bool(torch.isfinite(b).all()) for b in self.model.buffers() if b.is_floating_point()):
                # the forward already wrote them (BatchNorm statistics): skipping the update cannot undo that
                self._nonfinite("a non-finite forward pass left non-finite values in the model's buffers "
                                "(e.g. BatchNorm running statistics), so the step cannot be skipped")
            self.schedule.step()
            return
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        if self.cfg.train.grad_clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.train.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.schedule.step()
        w = self.window
        w["loss"] += loss.detach().float()
        w["nonfinite"] += (~torch.isfinite(total.detach())).float()
        w["correct"] += (logits.detach().argmax(1) == y).sum()
        w["steps"] += 1
        w["images"] += len(y)
        self._segment_images += len(y)  # a host-side count: no sync

    # ================================================================ records
    def _zero_window(self) -> None:
        z = lambda: torch.zeros((), device=self.device)  # noqa: E731
        self.window = {"loss": z(), "nonfinite": z(), "correct": z(), "steps": z(), "images": z()}

    def _record(self, rec: dict) -> None:
        if not self.is_main:
            return
        append_jsonl(self.metrics_path, rec)
        if self.tb is not None:
            self.tb.log(rec)

    def _log_train(self, bar) -> None:
        self._pause_clock()
        w = {k: v.item() for k, v in self.window.items()}  # the one host sync per log interval
        w = distributed.average_window(w, self.dist)
        steps = max(w.pop("steps"), 1.0)
        if w.pop("nonfinite") > 0 or not math.isfinite(w["loss"]):
            self._nonfinite(f"the loss became non-finite between steps {self.step - int(steps) + 1} and {self.step}")
        images = w.pop("images")
        loss = w.pop("loss") / steps
        rec = {"step": self.step, "epoch": round(self.step / self.steps_per_epoch, 4), "split": "train",
               "loss": loss, "top1": w.pop("correct") / max(images, 1.0), "lr": self.schedule.lr,
               "time": round(time.perf_counter() - self.wall_start, 3),
               "img_per_s": round(self._window_images / max(self._window_time, 1e-9), 2)}
        rec.update({k: v / steps for k, v in w.items()})  # auxiliary losses
        extra = getattr(self.model, "extra_metrics", None)
        if extra is not None:
            rec.update({k: float(v) for k, v in extra().items()})
        self.last_finite_loss = loss
        self._record(rec)
        bar.set_postfix(loss=f"{loss:.3f}", acc=f"{rec['top1']:.3f}", img_s=f"{rec['img_per_s']:.0f}")
        self._zero_window()
        self._window_images = self._window_time = 0.0
        self._clock_start = time.perf_counter()

    def _pause_clock(self, count: bool = True) -> None:
        """Close the current training segment. The sync makes GPU time land in the right segment."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seg = time.perf_counter() - self._clock_start
        images = self._segment_images * self.dist.world_size
        self._last_segment, self._segment_images = seg, 0
        if count:
            self.train_time += seg
            self.train_images += images
            self._window_time += seg
            self._window_images += images

    # ================================================================ evaluation and checkpoints
    def _evaluate(self) -> None:
        self._last_eval_step = self.step
        self._pause_clock()
        self._check_window_finite()  # best.pt must never hold weights that saw a non-finite loss
        results = {}
        for split, loader in self.eval_loaders.items():
            m = evaluate(self.model, loader, precision=self.precision, tta=self.cfg.eval.tta)
            results[split] = m
            self._record({"step": self.step, "epoch": round(self.step / self.steps_per_epoch, 4), "split": split,
                          "loss": m["loss"], "top1": m["top1"], "top5": m["top5"],
                          "time": round(time.perf_counter() - self.wall_start, 3)})
        if "val" in results:
            self.schedule.on_eval(results["val"]["loss"])
        sel = results[self.selection_split]
        if sel["top1"] > self.best["top1"]:
            self.best = {"top1": sel["top1"], "step": self.step}
            if self.is_main:
                save_checkpoint(self.ckpt_dir / "best.pt", self._model_record("best", results))
        self._clock_start = time.perf_counter()

    @cached_property
    def _config_yaml(self) -> str:  # to_yaml takes ~50 ms; checkpoints may be written every step
        return to_yaml(self.cfg)

    def _model_record(self, kind: str, metrics: dict | None = None) -> dict:
        return {
            "kind": kind, "model_name": self.cfg.model.name, "model_args": self.model_args,
            "num_classes": self.data.num_classes, "classes": self.data.classes,
            "input": {"size": [3, *self.data.image_size],
                      "mean": list(self.normalize.mean) if self.normalize.mean else None,
                      "std": list(self.normalize.std) if self.normalize.std else None},
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "step": self.step,
            "metrics": {s: {k: v for k, v in m.items() if k in ("loss", "top1", "top5")} for s, m in (metrics or {}).items()},
            "config": self._config_yaml,
        }

    def _save_last(self) -> None:
        self._pause_clock()
        self._check_window_finite()
        ranks = distributed.gather_objects(  # DDP: every rank's own RNG streams and log-window sums
            {"rng": rng_state(), "window": {k: v.detach().cpu() for k, v in self.window.items()}},
            self.dist) if self.dist.world_size > 1 else None
        if self.is_main:
            state = self._model_record("last")
            if ranks is not None:
                state["ranks"] = ranks
            state.update({
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.schedule.state_dict(),
                "scaler": self.scaler.state_dict(),
                "rng": rng_state(),
                "loader": self.train_loader.state_dict(),
                "world_size": self.dist.world_size,
                "trainer": {
                    "step": self.step, "best": self.best, "train_time": self.train_time,
                    "train_images": self.train_images, "skipped": self.skipped,
                    "wall": time.perf_counter() - self.wall_start, "compile_time": self.compile_time,
                    "window": {k: v.detach().cpu() for k, v in self.window.items()},
                    "window_time": self._window_time, "window_images": self._window_images,
                },
            })
            save_checkpoint(self.ckpt_dir / "last.pt", state)
        self._clock_start = time.perf_counter()

    def _check_window_finite(self) -> None:
        # `stop` detects non-finite losses lazily; never checkpoint weights that saw one.
        if distributed.any_rank(self.window["nonfinite"].item() > 0, self.dist):  # DDP: all ranks stop together
            self._nonfinite(f"the loss became non-finite before step {self.step}")

    def _load_last(self) -> None:
        path = self.run_dir / "checkpoints" / "last.pt"
        if not path.exists():
            raise ClassbenchError(f"Cannot resume {self.run_dir}: it has no checkpoints/last.pt.")
        ckpt = load_checkpoint(path, map_location=self.device)
        lacking = [k for k in ("optimizer", "scheduler", "scaler", "rng", "loader", "trainer") if k not in ckpt]
        if lacking:
            raise ClassbenchError(f"Cannot resume from {path}: it is not a full training checkpoint (no "
                                  f"{', '.join(lacking)}; kind {ckpt.get('kind')!r}). Was a best.pt copied over it?")
        saved_world = ckpt.get("world_size", 1)
        if saved_world != self.dist.world_size:
            raise ClassbenchError(
                f"{path} was saved by a run on {saved_world} process(es), but this run has "
                f"{self.dist.world_size}. Resume with the same number of processes (the data order of "
                "each rank depends on it)."
            )
        load_model_state(self.model, ckpt["model"], str(path))
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.schedule.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        self.train_loader.load_state_dict(ckpt["loader"])
        t = ckpt["trainer"]
        self.step, self.best, self.skipped = int(t["step"]), dict(t["best"]), int(t["skipped"])
        self.train_time, self.train_images = float(t["train_time"]), int(t["train_images"])
        self.compile_time = float(t["compile_time"])
        self.window = {k: v.to(self.device) for k, v in t["window"].items()}
        self._window_time, self._window_images = float(t["window_time"]), float(t["window_images"])
        self.wall_offset = float(t["wall"])
        set_rng_state(distributed.to_cpu(ckpt["rng"]))  # map_location may have put the RNG states on the GPU
        if ckpt.get("ranks"):  # DDP: this rank's own RNG streams and log-window sums
            own = ckpt["ranks"][self.dist.rank]
            self.window = {k: v.to(self.device) for k, v in own["window"].items()}
            set_rng_state(distributed.to_cpu(own["rng"]))
        evaluated = [r["step"] for r in read_jsonl(self.run_dir / "metrics.jsonl", warn=False)
                     if r.get("split") != "train" and r.get("step", 0) <= self.step]
        self._last_eval_step = max(evaluated, default=None)

    # ================================================================ run folder
    def _start_records(self) -> None:
        if self.resumed:
            # A run killed mid-write leaves the temporary file of that write (.<name>.<random>.tmp).
            for stale in [*self.run_dir.glob(".*.tmp"), *self.ckpt_dir.glob(".*.tmp")]:
                stale.unlink(missing_ok=True)
            # Lines written after the checkpoint belong to steps that will be trained again.
            kept = [r for r in read_jsonl(self.metrics_path) if r.get("step", 0) <= self.step]
            atomic_write_text(self.metrics_path, "".join(_json_line(r) for r in kept))
        else:
            atomic_write_json(self.run_dir / "env.json", environment(self.device))
        # Also on resume: overrides (a new budget) make this the config the run really finishes under.
        atomic_write_text(self.run_dir / "config.yaml", to_yaml(self.cfg))
        write_status(self.run_dir, "running")
        if self.cfg.log.tensorboard:
            from .tensorboard import TensorBoardLogger

            self.tb = TensorBoardLogger(self.run_dir, _hparams(self.cfg),
                                        purge_step=self.step + 1 if self.resumed else None)

    def _finish(self) -> Path:
        wall = time.perf_counter() - self.wall_start
        test = self._test_of_best()  # every rank: under DDP each evaluates its test shard
        if self.is_main:
            summary = self._summary(wall, test)
            atomic_write_json(self.run_dir / "summary.json", summary)
            write_status(self.run_dir, "finished")
            if self.tb is not None:
                self.tb.close({k: summary[k] for k in ("best_val_top1", "test_top1", "test_top5") if summary.get(k) is not None})
        distributed.barrier(self.dist)
        return self.run_dir

    def _test_of_best(self) -> dict:
        """Test metrics of best.pt. Under DDP rank 0 reads it and sends the weights to the others."""
        if "test" not in self.data.splits:
            return {}
        model = copy.deepcopy(self.model)
        if self.is_main:
            best = load_checkpoint(self.ckpt_dir / "best.pt", map_location=self.device)
            load_model_state(model, best["model"], "best.pt")
        distributed.broadcast_module(model, self.dist)
        loader = self.eval_loaders.get("test") or DeviceLoader(
            self.data.splits["test"], self.cfg.eval.batch_size, train=False, device=self.device,
            normalize=self.normalize, channels_last=self.channels_last)
        return evaluate(model, loader, precision=self.precision, tta=self.cfg.eval.tta)

    def _summary(self, wall: float, test: dict) -> dict:
        from ..models.profile import count_flops, count_params

        flops_model = create_model(self.cfg.model.name, num_classes=self.data.num_classes, **self.model_args)
        return {
            "name": self.cfg.name, "model": self.cfg.model.name, "dataset": self.cfg.data.name,
            "num_classes": self.data.num_classes, "params": count_params(self.model),
            "flops": count_flops(flops_model, (3, *self.data.image_size)), "status": "finished",
            "selection_split": self.selection_split,
            "best_val_top1": self.best["top1"] if self.selection_split == "val" else None,
            "best_val_step": self.best["step"] if self.selection_split == "val" else None,
            "best_step": self.best["step"],
            "test_top1": test.get("top1"), "test_top5": test.get("top5"), "test_loss": test.get("loss"),
            "steps": self.step, "epochs": round(self.step / self.steps_per_epoch, 4),
            "batch_size": self.cfg.train.batch_size, "world_size": self.dist.world_size,
            "device": str(self.device), "precision": self.precision, "threads": self.threads,
            "channels_last": self.channels_last, "compile": self.cfg.train.compile,
            "wall_time_s": round(wall, 2), "train_time_s": round(self.train_time, 2),
            "compile_time_s": round(self.compile_time, 2),
            "train_img_per_s": round(self.train_images / max(self.train_time, 1e-9), 2),
            "nonfinite_skipped": self.skipped,
        }

    # ================================================================ stops
    @contextmanager
    def _signals(self):
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum, frame):  # noqa: ARG001
            self._stop_signal = signum

        old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, h in old.items():
                signal.signal(s, h)

    @contextmanager
    def _closing_tensorboard(self):
        """On a stop or crash, flush the events written so far; a finished run closes with its hparams."""
        try:
            yield
        except BaseException:
            if self.tb is not None:
                self.tb.close()
            raise

    def _interrupt(self) -> None:
        self._save_last()
        name = signal.Signals(self._stop_signal).name
        if self.is_main:
            write_status(self.run_dir, "interrupted", f"{name} at step {self.step}")
        raise TrainingInterrupted(
            f"{name} received: saved a resumable checkpoint at step {self.step} of {self.total_steps}. "
            f"Resume with: classbench train --resume {self.run_dir}"
            + (f" --nproc {self.dist.world_size}" if self.dist.world_size > 1 else "")
        )

    def _nonfinite(self, what: str) -> None:
        diag = {"step": self.step, "lr": self.schedule.lr, "last_finite_loss": self.last_finite_loss,
                "detail": what, "skipped": self.skipped}
        if self.is_main:
            atomic_write_json(self.run_dir / "nonfinite.json", diag)
            write_status(self.run_dir, "nonfinite", what)
        raise NonFiniteLossError(
            f"Training stopped: {what} (lr {diag['lr']:.3g}, last finite loss {diag['last_finite_loss']}). "
            f"best.pt and last.pt hold the last good weights; details in {self.run_dir / 'nonfinite.json'}. "
            "Lower optim.lr, set train.grad_clip, or use train.on_nonfinite=skip."
        )

    # attributes that __init__ leaves for fit()
    wall_offset = 0.0
    _last_eval_step: int | None = None
    _segment_images = 0
    _window_time = 0.0
    _window_images = 0.0
    _last_segment = 0.0


def keep_freed_memory() -> None:
    """CPU training: let glibc malloc keep freed memory instead of unmapping it.

    Activations above malloc's mmap threshold (32 MiB at most) are otherwise mmapped and unmapped every
    step, and every fresh page costs a page fault plus zeroing (~0.4 ms/MiB on a 2-core VM): ResNet-18 at
    batch 256 trained 11-28 % faster with this (docs/perf-measurements.md).  The process keeps its peak
    heap.  No-op without glibc; ``CLASSBENCH_MALLOC_TUNING=0`` turns it off.
    """
    import ctypes
    import os

    if os.environ.get("CLASSBENCH_MALLOC_TUNING", "1") == "0":
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-4, 0)  # M_MMAP_MAX=0: serve large blocks from the heap too
        libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD: keep up to 1 GiB free at the top of the heap
    except (OSError, AttributeError):
        pass


def _is_tty() -> bool:
    import sys

    return sys.stderr.isatty()


def _json_line(rec: dict) -> str:
    import json

    return json.dumps(rec) + "\n"


def _hparams(cfg: Config) -> dict:
    from ..config import to_dict

    flat: dict = {}

    def walk(d, prefix=""):
        for k, v in d.items():
            if isinstance(v, dict):
                walk(v, f"{prefix}{k}.")
            else:
                flat[f"{prefix}{k}"] = v if isinstance(v, (int, float, str, bool)) else str(v)

    walk(to_dict(cfg))
    return flat


def train(cfg: Config) -> Path:
    """Train one run from a config; returns its run folder."""
    with distributed.explain_errors():  # DDP: a dead or hung rank becomes a clear error here
        return Trainer(cfg).fit()


def resume(run_dir: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Path:
    """Continue a run from its checkpoints/last.pt, with its own stored config."""
    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.yaml"
    if not cfg_path.exists():
        raise ClassbenchError(f"{run_dir} is not a run folder (no config.yaml); give the folder that `train` created.")
    cfg = from_yaml_text(cfg_path.read_text())
    if overrides:
        cfg = apply_overrides(cfg, overrides)
    with distributed.explain_errors():
        return Trainer(cfg, resume_dir=run_dir).fit()
