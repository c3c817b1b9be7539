"""The trainer's clocks: wall time, and training time that stops for everything that is not training.

Training img/s counts only the time of training steps: the meter is paused for
evaluation, logging, checkpoints and compilation (``with meter.paused(): ...``).
Time comes in segments between pauses; each closed segment adds to the run's
total (``train_time``/``train_images``, for summary.json) and to the log window
(for the img/s of the next train line of metrics.jsonl).
"""

from __future__ import annotations

import time
from contextlib import contextmanager

import torch


class Meter:
    def __init__(self, device: torch.device, world_size: int = 1) -> None:
        self.device = device
        self.world_size = world_size  # every rank trains the same number of images: count them all
        self.train_time = 0.0  # seconds of training steps only, over the whole run
        self.train_images = 0  # images behind train_time
        self.compile_time = 0.0  # the first compiled step of each attempt
        self.warmup_time = 0.0  # the first CUDA step of each attempt without compile (CUDA/cuDNN start-up)
        self.excluded_images = 0  # images of those excluded steps: trained, but not in train_images
        self.checkpoint_time = 0.0  # seconds spent writing checkpoints (fsync'd): not in the accuracy clock
        self.window_time = 0.0  # the part of train_time since the last train line
        self.window_images = 0.0
        self.wall_offset = 0.0  # wall seconds of the attempts before a resume
        self.wall_start = 0.0
        self.segment_start = 0.0
        self.segment_images = 0  # a host-side count: no device sync per step
        self.last_segment = 0.0

    def start(self) -> None:
        """Start the wall clock (continuing a resumed run's) and the first training segment."""
        self.wall_start = time.perf_counter() - self.wall_offset
        self.segment_start = time.perf_counter()

    def count(self, images: int) -> None:
        """One training step of ``images`` images (this rank's) is done."""
        self.segment_images += images

    def wall(self) -> float:
        return time.perf_counter() - self.wall_start

    def pause(self, count: bool = True) -> float:
        """Close the current training segment and return its length.  ``count=False``: the segment was not
        training (the first compiled step).  The sync makes GPU time land in the right segment."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seg = time.perf_counter() - self.segment_start
        images = self.segment_images * self.world_size
        self.last_segment, self.segment_images = seg, 0
        if count:
            self.train_time += seg
            self.train_images += images
            self.window_time += seg
            self.window_images += images
        else:
            self.excluded_images += images
        return seg

    def resume(self) -> None:
        self.segment_start = time.perf_counter()

    @contextmanager
    def paused(self):
        """Not training inside: evaluation, logging, checkpoints."""
        self.pause()
        yield
        self.resume()

    def exclude_first_step(self, compiled: bool) -> None:
        """The step just done was the first of this attempt on CUDA or with compile: book it as compilation
        (``compiled``) or warm-up (CUDA context, cuDNN autotuning, allocator), not as training.  The rule is
        the same for every run, so train img/s compare between runs."""
        seg = self.pause(count=False)
        if compiled:
            self.compile_time += seg
        else:
            self.warmup_time += seg
        self.resume()

    @contextmanager
    def checkpointing(self):
        """Inside: a checkpoint write (within a paused block), counted apart so the accuracy clock
        (:meth:`accuracy_clock`) can leave it out."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.checkpoint_time += time.perf_counter() - t0

    def accuracy_clock(self) -> float:
        """Wall seconds of the run without checkpoint writes: the clock of time-to-accuracy figures
        (an fsync'd checkpoint per epoch is storage speed, not training speed)."""
        return self.wall() - self.checkpoint_time

    def wall_img_per_s(self) -> float:
        """Images trained per wall second over the whole run: compilation, warm-up, evaluation and
        checkpoints included (``img_per_s`` leaves them out)."""
        return (self.train_images + self.excluded_images) / max(self.wall(), 1e-9)

    def window_img_per_s(self) -> float:
        """img/s since the last call (the log window); starts the next window."""
        rate = self.window_images / max(self.window_time, 1e-9)
        self.window_images = self.window_time = 0.0
        return rate

    def img_per_s(self) -> float:
        return self.train_images / max(self.train_time, 1e-9)

    # last.pt's "trainer" entry holds these keys (a format: keep the names)
    def state_dict(self) -> dict:
        return {"train_time": self.train_time, "train_images": self.train_images, "compile_time": self.compile_time,
                "wall": self.wall(), "window_time": self.window_time, "window_images": self.window_images,
                "warmup_time": self.warmup_time, "excluded_images": self.excluded_images,
                "checkpoint_time": self.checkpoint_time}

    def load_state_dict(self, state: dict) -> None:
        self.train_time, self.train_images = float(state["train_time"]), int(state["train_images"])
        self.compile_time = float(state["compile_time"])
        self.window_time, self.window_images = float(state["window_time"]), float(state["window_images"])
        self.wall_offset = float(state["wall"])
        # absent from checkpoints written before these clocks existed
        self.warmup_time = float(state.get("warmup_time", 0.0))
        self.excluded_images = int(state.get("excluded_images", 0))
        self.checkpoint_time = float(state.get("checkpoint_time", 0.0))


class Window:
    """Sums over the training steps since the last train line of metrics.jsonl, kept on the device.

    Adding never waits for the device; the trainer reads the sums once per log interval.  Keys:
    ``loss`` (main head), ``nonfinite`` (steps whose total loss was not finite), ``correct``, ``steps``,
    ``images``, and ``loss_<head>`` for each auxiliary head.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.zero()

    def zero(self) -> None:
        z = lambda: torch.zeros((), device=self.device)  # noqa: E731
        self.sums = {"loss": z(), "nonfinite": z(), "correct": z(), "steps": z(), "images": z()}

    def add_aux(self, aux_losses: dict[str, torch.Tensor]) -> None:
        for key, aux_loss in aux_losses.items():
            if key in self.sums:
                self.sums[key] += aux_loss.detach().float()
            else:
                self.sums[key] = aux_loss.detach().float().clone()  # owned, since later steps add in place

    def add(self, loss: torch.Tensor, total: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> None:
        w = self.sums
        w["loss"] += loss.detach().float()
        w["nonfinite"] += (~torch.isfinite(total.detach())).float()
        w["correct"] += (logits.detach().argmax(1) == y).sum()
        w["steps"] += 1
        w["images"] += len(y)

    def saw_nonfinite(self) -> bool:
        return self.sums["nonfinite"].item() > 0  # a host sync

    def read(self) -> dict[str, float]:
        return {k: v.item() for k, v in self.sums.items()}  # the one host sync per log interval

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu() for k, v in self.sums.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.sums = {k: v.to(self.device) for k, v in state.items()}
