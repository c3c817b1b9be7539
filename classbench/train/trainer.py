"""The training loop.

Read it top to bottom: `Trainer.__init__` builds everything from the config
(or from a run folder's last checkpoint), `fit` runs steps until the budget is
spent, evaluating, logging and checkpointing on the way, and `_finish` writes
the summary.  The parts live next door: the step (`step.py`), the clocks
(`meter.py`), the run-folder records (`recorder.py`) and the checkpoint schema
(`checkpoint.py`).

The hot path never waits for the device: losses and accuracy counts add up in
device tensors and are read once per `log.every` steps.  The clock that
measures training img/s stops for evaluation, checkpoints and compilation.

Tests stop a run after step N as a signal would: `Trainer(cfg, stop_after=N)`
(last.pt at step N, status "interrupted", `TrainingInterrupted`).
"""

from __future__ import annotations

import copy
import math
import signal
import sys
from functools import cached_property
from pathlib import Path
from typing import Callable, NoReturn

import torch
from tqdm import tqdm

from .. import runfolder
from ..config import Config, apply_overrides, from_yaml_text, load_run_config, to_yaml
from ..data import build_data
from ..data.augment import build_augment
from ..data.loader import DeviceLoader, Normalize, to_float
from ..errors import ClassbenchError, NonFiniteLossError, TrainingInterrupted
from ..models import create_model
from ..models.registry import uses_channels_last
from . import compile_choice, distributed, hostload, resume_plan, step
from .checkpoint import (GlobalRNG, lacking_train_state, load_checkpoint, load_model_state, load_train_state,
                         model_record, train_state)
from .evaluate import evaluate
from .meter import Meter, Window
from .optim import Schedule, build_optimizer
from .precision import keep_freed_memory, resolve_device, resolve_precision, setup_device, setup_threads
from .recipe import EMA_SUFFIX, Recipe, accumulated_forward_backward
from .recorder import Recorder


class Trainer:
    def __init__(self, cfg: Config, *, resume_dir: str | Path | None = None, stop_after: int | None = None,
                 after_step: Callable[["Trainer"], None] | None = None) -> None:
        """``stop_after=N``: stop after step N as SIGTERM would.  ``after_step(trainer)``: called after each
        training step, once ``trainer.step`` counts it and before that step's log, evaluation and checkpoint
        (tests inject faults there)."""
        self.cfg = cfg
        self.stop_after, self.after_step = stop_after, after_step
        self.dist = distributed.setup(cfg.train.device)
        self.is_main = self.dist.rank == 0
        self.threads = setup_threads(cfg.train.threads or distributed.local_threads(self.dist))  # DDP: cores // procs
        self.device = self.dist.device or resolve_device(cfg.train.device)
        self.precision = resolve_precision(cfg.train.precision, self.device)
        # set_device, cudnn.benchmark, TF32 policy, deterministic kernels (summary.json records them)
        self.backend = setup_device(self.device, deterministic=cfg.train.deterministic, tf32=cfg.train.tf32)
        distributed.check_batch(cfg.train.batch_size, self.dist)  # before the loader: say what would divide
        if self.device.type == "cpu":
            keep_freed_memory()
        torch.manual_seed(cfg.train.seed)

        self.channels_last = uses_channels_last(cfg.model.name, cfg.model.channels_last)  # an unknown name fails here

        # ---- data: every split in memory, batches made on the device
        self.data = build_data(cfg.data)
        self.normalize = Normalize(self.data.mean, self.data.std) if cfg.data.normalize else Normalize(None, None)
        common = dict(device=self.device, normalize=self.normalize, channels_last=self.channels_last,
                      rank=self.dist.rank, world_size=self.dist.world_size)
        try:
            self.train_loader = DeviceLoader(
                self.data.splits["train"], cfg.train.batch_size, train=True, pad=cfg.data.pad,
                flip=cfg.data.flip, seed=cfg.train.seed, augment=build_augment(cfg.data), **common)
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
            raise ClassbenchError(f"eval.splits must include 'val' or 'test' to choose {runfolder.BEST_PT}.")

        # ---- model, optimizer, schedule, the step
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
        if cfg.model.sync_bn and self.dist.world_size > 1:  # refused where it would do nothing or cannot run
            self.model = distributed.convert_sync_bn(self.model, self.device, cfg.model.name)
        self.recipe = Recipe(cfg, self.model, self.data.num_classes, self.dist)  # mixing, EMA, early stop, accumulation
        self.optimizer = build_optimizer(self.model, cfg.optim, self.device)
        self.schedule = Schedule(self.optimizer, cfg.sched, base_lr=cfg.optim.lr, total_steps=self.total_steps,
                                 steps_per_epoch=self.steps_per_epoch, epoch_budget=cfg.train.steps == 0)
        train_model = distributed.wrap(self.model, self.dist, sync_bn=cfg.model.sync_bn)
        if self.dist.world_size > 1:  # the init above is shared; dropout, MixStyle & co draw per-rank streams
            torch.manual_seed(distributed.rank_seed(cfg.train.seed, self.dist.rank))
        self.compile, self.compile_choice = compile_choice.decide(
            cfg.train.compile, model=cfg.model.name, kind=compile_choice.hardware(self.device.type, self.precision),
            precision=self.precision, steps=self.total_steps, batch_size=cfg.train.batch_size)
        if self.compile:
            compile_choice.use_shared_inductor_cache(cfg.train.runs_dir)
            train_model = torch.compile(train_model, mode=None if cfg.train.compile_mode == "default" else cfg.train.compile_mode)
        self.parts = step.StepParts.build(self.model, self.optimizer, precision=self.precision, device=self.device,
                                          label_smoothing=cfg.train.label_smoothing, grad_clip=cfg.train.grad_clip,
                                          run_model=train_model)

        # ---- state that a checkpoint carries (with the meter's clocks)
        self.step = 0
        self.best = {"top1": -1.0, "step": 0}
        self.skipped = 0
        self.last_finite_loss: float | None = None
        self.meter = Meter(self.device, self.dist.world_size)
        self.window = Window(self.device)
        self._last_eval_step: int | None = None
        self._stop_signal: int | None = None
        # How busy other processes kept the cores: this attempt's from host_start (set in fit), and a
        # resumed run's earlier attempts from last.pt (None: not measured), so the figure spans the run.
        self.host_start: hostload.CpuSample | None = None
        self.host_earlier: dict | None = hostload.NOTHING_EARLIER

        # ---- run folder
        self.resumed = resume_dir is not None
        self.recorder = Recorder.reopen(resume_dir, self.dist) if self.resumed else Recorder.create(cfg, self.dist)
        self.run_dir = self.recorder.run_dir
        if self.resumed:
            try:
                self._load_last()
            except BaseException:
                self.recorder.release()  # a refused resume leaves the run free for the next writer
                raise

    def _data_init(self, max_images: int = 10000) -> None:
        """Call ``model.data_init(x)`` once before training: ``x`` is the first ``max_images`` training
        images as float on the device, normalised and laid out as training batches, not augmented."""
        images = self.data.splits["train"].images[:max_images].to(self.device)
        scale, shift = self.normalize.affine(self.device)
        with torch.no_grad():
            self.model.data_init(to_float(images, scale, shift, self.channels_last))

    # ================================================================ loop
    def fit(self) -> Path:
        # Stop signals are caught for the whole attempt, not only the loop: one that lands while the run
        # starts (status "running" already written) stops it at step 0 with a last.pt, and one that lands
        # after the last step waits for the summary (seconds) instead of killing a run that is done.
        try:
            with distributed.catch_stop_signals(self.request_stop):
                return self._fit()
        except (TrainingInterrupted, NonFiniteLossError):
            raise  # these wrote their own status
        except Exception as e:
            self.recorder.failed(e)
            raise
        finally:
            self.recorder.release()

    def _fit(self) -> Path:
        cfg = self.cfg
        self.host_start = hostload.sample()  # what other processes use is measured from here
        self.recorder.start(cfg, self.device, self.step)
        show = cfg.log.progress == "always" or (cfg.log.progress == "auto" and sys.stderr.isatty())
        bar = tqdm(total=self.total_steps, initial=self.step, disable=not (show and self.is_main),
                   unit="step", dynamic_ncols=True, desc=cfg.name)
        batches = self.train_loader.batches()
        first_step = self.step + 1  # of this attempt: a resume compiles and warms up again
        with self.recorder.closing():
            self.meter.start()
            stop_poll = distributed.StopPoll(self.dist)  # DDP: all ranks agree to stop at the same step
            while self.step < self.total_steps:
                signum = stop_poll(self._stop_signal or 0)
                if signum:
                    self._stop_signal = signum
                    self._raise_interrupted()
                x, y = next(batches)
                self._train_step(x, y)  # per-step extras that follow the update (an EMA) go right after
                self.step += 1
                bar.update(1)
                if self.step == first_step and (self.compile or self.device.type == "cuda"):
                    self.meter.exclude_first_step(self.compile)  # compilation / CUDA warm-up, not training
                if self.after_step is not None:
                    self.after_step(self)
                if self.step == self.stop_after:
                    self.request_stop()
                last = self.step == self.total_steps
                if self.step % cfg.log.every == 0 or last:
                    self._log_train(bar)
                if self.step % self.eval_every == 0 or last:
                    self._evaluate()
                if self.step % self.checkpoint_every == 0 or last or self.recipe.stop_reason:
                    self._save_last()
                if self.recipe.stop_reason:  # early stop: the run finishes here, as if its budget ended
                    break
            if self._last_eval_step != self.step:
                # A resumed run whose budget was cut to where it stopped: evaluate the final weights.
                self._evaluate()
                self._save_last()
            stop_poll.close()
        bar.close()
        return self._finish()

    def _train_step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        x, target, y_top1 = self.recipe.mix(x, y)  # Mixup/CutMix: soft targets; top-1 against the dominant label
        accumulate = self.recipe.accumulate > 1
        if accumulate:  # backward per micro-batch already done; the optimizer step follows the skip check
            out = accumulated_forward_backward(self.parts, x, target, self.recipe.accumulate)
        else:
            out = step.forward(self.parts, x, target)
        self.window.add_aux(out.aux_losses)
        if self.cfg.train.on_nonfinite == "skip" and not distributed.all_ranks(bool(torch.isfinite(out.total)), self.dist):
            # a host sync, only for `skip`; under DDP all ranks skip together (a lone backward would hang)
            self.optimizer.zero_grad(set_to_none=True)
            self._skip_step()
            return
        if accumulate:
            step.optimizer_step(self.parts)
        else:
            step.update(self.parts, out.total)
        self.schedule.step()
        self.recipe.after_update(self.model)  # the EMA of the weights
        self.window.add(out.loss, out.total, out.logits, y_top1)
        self.meter.count(len(y))

    def _skip_step(self) -> None:
        """train.on_nonfinite=skip: no update for this batch; the schedule moves on."""
        self.skipped += 1
        if self.skipped > self.cfg.train.max_nonfinite_skips:
            self._raise_nonfinite(f"more than train.max_nonfinite_skips={self.cfg.train.max_nonfinite_skips} "
                                  "steps had a non-finite loss")
        if not all(bool(torch.isfinite(b).all()) for b in self.model.buffers() if b.is_floating_point()):
            # the forward already wrote them (BatchNorm statistics): skipping the update cannot undo that
            self._raise_nonfinite("a non-finite forward pass left non-finite values in the model's buffers "
                                  "(e.g. BatchNorm running statistics), so the step cannot be skipped")
        self.schedule.step()

    # ================================================================ logs
    def _log_train(self, bar) -> None:
        with self.meter.paused():
            w = distributed.average_window(self.window.read(), self.dist)
            steps = max(w.pop("steps"), 1.0)
            if w.pop("nonfinite") > 0 or not math.isfinite(w["loss"]):
                self._raise_nonfinite(f"the loss became non-finite between steps {self.step - int(steps) + 1} and {self.step}")
            images = w.pop("images")
            loss = w.pop("loss") / steps
            rec = {"step": self.step, "epoch": self._epoch(), "split": "train",
                   "loss": loss, "top1": w.pop("correct") / max(images, 1.0), "lr": self.schedule.lr,
                   "time": round(self.meter.wall(), 3), "img_per_s": round(self.meter.window_img_per_s(), 2)}
            rec.update({k: v / steps for k, v in w.items()})  # auxiliary losses
            rec.update(self.recipe.train_line_fields())  # "mixed": top-1 counts the dominant label
            extra = getattr(self.model, "extra_metrics", None)
            if extra is not None:
                rec.update({k: float(v) for k, v in extra().items()})
            self.last_finite_loss = loss
            self.recorder.record(rec)
            bar.set_postfix(loss=f"{loss:.3f}", acc=f"{rec['top1']:.3f}", img_s=f"{rec['img_per_s']:.0f}")
            self.window.zero()

    def _epoch(self) -> float:
        return round(self.step / self.steps_per_epoch, 4)

    # ================================================================ evaluation and checkpoints
    def _evaluate(self) -> None:
        self._last_eval_step = self.step
        with self.meter.paused():
            self._check_window_finite()  # best.pt must never hold weights that saw a non-finite loss
            results = {}
            weights = {"model": self.model} if self.recipe.ema is None else {"model": self.model,
                                                                              "ema": self.recipe.ema.module}
            for which, model in weights.items():  # the EMA weights are a selection of their own
                suffix = EMA_SUFFIX if which == "ema" else ""
                for split, loader in self.eval_loaders.items():
                    m = evaluate(model, loader, precision=self.precision, tta=self.cfg.eval.tta)
                    results[split + suffix] = m
                    self.recorder.record({"step": self.step, "epoch": self._epoch(), "split": split + suffix,
                                          "loss": m["loss"], "top1": m["top1"], "top5": m["top5"],
                                          "time": round(self.meter.wall(), 3),
                                          "time_no_ckpt": round(self.meter.accuracy_clock(), 3)})
            if "val" in results:
                self.schedule.on_eval(results["val"]["loss"])
            sel_split = self.selection_split
            ema_top1 = results[sel_split + EMA_SUFFIX]["top1"] if self.recipe.ema is not None else None
            which = self.recipe.observe(self.step, results[sel_split]["top1"], ema_top1)
            sel = results[sel_split + (EMA_SUFFIX if which == "ema" else "")]
            if sel["top1"] > self.best["top1"]:
                self.best = {"top1": sel["top1"], "step": self.step, "weights": which}
                if self.is_main:
                    with self.meter.checkpointing():
                        record = self._model_record("best", results, weights[which])
                        record["weights"] = which  # best.pt says whether it holds the EMA or the trained weights
                        self.recorder.save_checkpoint("best", record)

    @cached_property
    def _config_yaml(self) -> str:  # to_yaml takes ~50 ms; checkpoints may be written every step
        return to_yaml(self.cfg)

    def _model_record(self, kind: str, metrics: dict | None = None, model: torch.nn.Module | None = None) -> dict:
        return model_record(kind, self.model if model is None else model, self.cfg, self.data, self.normalize,
                            self.step, metrics, config_yaml=self._config_yaml)

    def _state_parts(self) -> dict:
        """The objects behind checkpoint.TRAIN_STATE_KEYS."""
        return {"optimizer": self.optimizer, "scheduler": self.schedule, "scaler": self.parts.scaler,
                "rng": GlobalRNG(self.device), "loader": self.train_loader, "trainer": self}

    def state_dict(self) -> dict:  # last.pt's "trainer" entry: the loop's counters and the clocks
        return {"step": self.step, "best": self.best, "skipped": self.skipped, "precision": self.precision,
                "window": self.window.state_dict(), "recipe": self.recipe.state_dict(), **self.meter.state_dict(),
                "host_load": hostload.carried(self.host_start, hostload.sample(), self.dist.local_world_size,
                                              self.host_earlier)}

    def load_state_dict(self, t: dict) -> None:
        self.step, self.best, self.skipped = int(t["step"]), dict(t["best"]), int(t["skipped"])
        self.window.load_state_dict(t["window"])
        if "recipe" in t:  # checkpoints from before the recipes have none (and no recipe was on)
            self.recipe.load_state_dict(t["recipe"])
        self.meter.load_state_dict(t)
        # A checkpoint from before host_load was kept: its earlier attempts count as nothing, as they used
        # to (the figure then covers this attempt only).
        self.host_earlier = t.get("host_load", hostload.NOTHING_EARLIER)

    def _save_last(self) -> None:
        with self.meter.paused():
            self._check_window_finite()
            ranks = distributed.gather_objects(  # DDP: every rank's own RNG streams and log-window sums
                {"rng": GlobalRNG(self.device).state_dict(), "window": self.window.state_dict()},
                self.dist) if self.dist.world_size > 1 else None
            if self.is_main:
                state = {**self._model_record("last"), **train_state(self._state_parts()),
                         "world_size": self.dist.world_size}
                if ranks is not None:
                    state["ranks"] = ranks
                with self.meter.checkpointing():
                    self.recorder.save_checkpoint("last", state)

    def _check_window_finite(self) -> None:
        # `stop` detects non-finite losses lazily; never checkpoint weights that saw one.
        if distributed.any_rank(self.window.saw_nonfinite(), self.dist):  # DDP: all ranks stop together
            self._raise_nonfinite(f"the loss became non-finite before step {self.step}")

    def _load_last(self) -> None:
        path = self.recorder.folder.last_pt
        if not path.exists():
            raise ClassbenchError(f"Cannot resume {self.run_dir}: it has no {runfolder.checkpoint_rel('last')}.")
        ckpt = load_checkpoint(path, map_location=self.device)
        lacking = lacking_train_state(ckpt)
        if lacking:
            raise ClassbenchError(f"Cannot resume from {path}: it is not a full training checkpoint (no "
                                  f"{', '.join(lacking)}; kind {ckpt.get('kind')!r}). Was a {runfolder.BEST_PT} copied over it?")
        saved_world = ckpt.get("world_size", 1)
        if saved_world != self.dist.world_size:
            raise ClassbenchError(
                f"{path} was saved by a run on {saved_world} process(es), but this run has "
                f"{self.dist.world_size}. Resume with the same number of processes (the data order of "
                "each rank depends on it)."
            )
        load_model_state(self.model, ckpt["model"], str(path))
        self._keep_precision(ckpt, path)
        load_train_state(ckpt, self._state_parts())
        self._plan_schedule(ckpt)
        if ckpt.get("ranks"):  # DDP: this rank's own RNG streams and log-window sums
            own = ckpt["ranks"][self.dist.rank]
            self.window.load_state_dict(own["window"])
            GlobalRNG(self.device).load_state_dict(own["rng"])
        self._last_eval_step = max(self.recorder.evaluated_steps(self.step), default=None)

    def _keep_precision(self, ckpt: dict, path: Path) -> None:
        """A resume continues in the precision the run was trained in (last.pt's trainer entry; checkpoints
        without it: fp16 if their GradScaler state is non-empty).  train.precision=auto keeps it even where
        auto would now pick another (another GPU); an explicit other precision is refused."""
        saved = ckpt["trainer"].get("precision") or ("fp16" if ckpt["scaler"] else None)
        if saved is None or saved == self.precision:
            return
        if self.cfg.train.precision != "auto":
            raise ClassbenchError(
                f"{path} was trained in {saved}, but this resume asks for train.precision={self.cfg.train.precision}: "
                f"resume with train.precision={saved} or auto (which keeps {saved}), or start a new run.")
        self.precision = self.parts.precision = saved
        self.parts.scaler = torch.amp.GradScaler(self.device.type, enabled=saved == "fp16")

    def _plan_schedule(self, ckpt: dict) -> None:
        """A new budget on resume: keep or re-plan the lr schedule as train.resume_schedule says, and say so."""
        planned = self.schedule.saved_total
        if planned is None and ckpt.get("config"):  # a checkpoint from before the plan was saved: its config's budget
            saved = from_yaml_text(ckpt["config"], f"The config stored in {self.recorder.folder.last_pt}").train
            planned = saved.steps or saved.epochs * self.steps_per_epoch
        line = resume_plan.plan(self.schedule, self.step, planned, self.total_steps,
                                self.cfg.train.resume_schedule, self.run_dir)
        if line and self.is_main:
            print(line, file=sys.stderr, flush=True)

    # ================================================================ the end
    def _finish(self) -> Path:
        wall = self.meter.wall()
        test = self._test_of_best()  # every rank: under DDP each evaluates its test shard
        self._write_test_outcomes(test)
        if self.is_main:
            self.recorder.finish(self._summary(wall, test), self.recipe.stop_reason or "")
        distributed.barrier(self.dist)
        return self.run_dir

    def _test_of_best(self) -> dict:
        """Test metrics of best.pt. Under DDP rank 0 reads it and sends the weights to the others."""
        if "test" not in self.data.splits:
            return {}
        model = copy.deepcopy(self.model)
        if self.is_main:
            best = load_checkpoint(self.recorder.folder.best_pt, map_location=self.device)
            load_model_state(model, best["model"], runfolder.BEST_PT)
        distributed.broadcast_module(model, self.dist)
        loader = self.eval_loaders.get("test") or DeviceLoader(
            self.data.splits["test"], self.cfg.eval.batch_size, train=False, device=self.device,
            normalize=self.normalize, channels_last=self.channels_last)
        return evaluate(model, loader, precision=self.precision, tta=self.cfg.eval.tta, with_predictions=True)

    def _write_test_outcomes(self, test: dict) -> None:
        """Store best.pt's test outcomes (McNemar's test, per-class counts and calibration in compare and report)."""
        if "pred" not in test:
            return
        import numpy as np

        shards = distributed.gather_objects({k: test[k].numpy() for k in ("pred", "target", "confidence")}, self.dist)
        if not self.is_main:
            return
        n, world = sum(len(s["pred"]) for s in shards), len(shards)
        full = {k: np.empty(n, dtype=v.dtype) for k, v in shards[0].items()}
        for rank, shard in enumerate(shards):  # rank r evaluated images r, r + W, r + 2W, ... (DeviceLoader's eval shard)
            for k, v in shard.items():
                full[k][rank::world] = v
        self.recorder.test_outcomes(**full, num_classes=self.data.num_classes)

    def _summary(self, wall: float, test: dict) -> dict:
        """summary.json.  A new field goes here (and into docs/design.md's summary.json)."""
        from ..models.profile import count_flops, count_params

        flops_model = create_model(self.cfg.model.name, num_classes=self.data.num_classes, **self.model_args)
        m = self.meter
        return {
            "name": self.cfg.name, "model": self.cfg.model.name, "dataset": self.cfg.data.name,
            "num_classes": self.data.num_classes, "classes": list(self.data.classes),  # names for records without best.pt
            "params": count_params(self.model),
            "flops": count_flops(flops_model, (3, *self.data.image_size)), "status": runfolder.FINISHED,
            "selection_split": self.selection_split,
            "data_warnings": list(self.data.warnings),  # splits missing classes or unbalanced, constant channels
            "best_val_top1": self.best["top1"] if self.selection_split == "val" else None,
            "best_val_step": self.best["step"] if self.selection_split == "val" else None,
            "best_step": self.best["step"],
            "test_top1": test.get("top1"), "test_top5": test.get("top5"), "test_loss": test.get("loss"),
            "steps": self.step, "epochs": self._epoch(),
            "batch_size": self.cfg.train.batch_size, "world_size": self.dist.world_size,
            "device": str(self.device), "precision": self.precision, "threads": self.threads,
            "channels_last": self.channels_last, "compile": self.compile, "compile_choice": self.compile_choice,
            "compile_mode": self.cfg.train.compile_mode if self.compile else None, **self.backend,
            "wall_time_s": round(wall, 2), "train_time_s": round(m.train_time, 2),
            "compile_time_s": round(m.compile_time, 2), "warmup_time_s": round(m.warmup_time, 2),
            "checkpoint_time_s": round(m.checkpoint_time, 2), "train_img_per_s": round(m.img_per_s(), 2),
            "wall_img_per_s": round(m.wall_img_per_s(), 2),
            "nonfinite_skipped": self.skipped, "best_weights": self.best.get("weights", "model"),
            **self.recipe.summary_fields(self.selection_split),  # EMA: both selections; early stop: why it ended
            **hostload.summary_fields(self.host_start, self.threads, self.dist.local_world_size,  # a busy host?
                                      self.host_earlier),
        }

    # ================================================================ stops (both raise)
    def request_stop(self, signum: int = signal.SIGTERM) -> None:
        """Stop before the next step, as a signal does: last.pt, status "interrupted", TrainingInterrupted."""
        self._stop_signal = signum

    def _raise_interrupted(self) -> NoReturn:
        self._save_last()
        name = signal.Signals(self._stop_signal).name
        self.recorder.status(runfolder.INTERRUPTED, f"{name} at step {self.step}")
        raise TrainingInterrupted(
            f"{name} received: saved a resumable checkpoint at step {self.step} of {self.total_steps}. "
            f"Resume with: classbench train --resume {self.run_dir}"
            + (f" --nproc {self.dist.world_size}" if self.dist.world_size > 1 else "")
        )

    def _raise_nonfinite(self, what: str) -> NoReturn:
        diag = {"step": self.step, "lr": self.schedule.lr, "last_finite_loss": self.last_finite_loss,
                "detail": what, "skipped": self.skipped}
        self.recorder.nonfinite(diag, what)
        raise NonFiniteLossError(
            f"Training stopped: {what} (lr {diag['lr']:.3g}, last finite loss {diag['last_finite_loss']}). "
            f"{runfolder.BEST_PT} and {runfolder.LAST_PT} hold the last good weights; details in {self.recorder.folder.nonfinite_json}. "
            + (" ".join(self.data.warnings) + " " if self.data.warnings else "")  # e.g. all-black images, not the lr
            + "Lower optim.lr, set train.grad_clip, or use train.on_nonfinite=skip."
        )


def train(cfg: Config) -> Path:
    """Train one run from a config; returns its run folder."""
    with distributed.explain_errors():  # DDP: a dead or hung rank becomes a clear error here
        return Trainer(cfg).fit()


def resume(run_dir: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Path:
    """Continue a run from its checkpoints/last.pt, with its own stored config."""
    cfg = load_run_config(run_dir, check=not overrides)  # untrusted: missing/empty/bad config.yaml is one line
    if overrides:
        cfg = apply_overrides(cfg, overrides)
    with distributed.explain_errors():
        return Trainer(cfg, resume_dir=run_dir).fit()
