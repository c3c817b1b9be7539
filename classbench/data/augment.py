"""Batched data augmentation on the training device: policies, random-resized crop, rotation, Cutout.

Every operation here works on a whole batch at once with tensor operations (one
``grid_sample`` for all geometry of a batch, one scatter for all histograms of
Equalize, ...), never with a Python loop over images.  A policy layer groups the
batch's images by the operation they drew (on the host, from the per-epoch plan: no
device sync) and runs each operation once on its group, so a layer costs about one
pass over the batch.  Augmentation stays a small fraction of a training step
(``benchmarks/augment_throughput.py``, docs/perf-measurements.md section 6).

Randomness: :meth:`AugmentPipeline.draw` draws every image's parameters for a whole
epoch from the :class:`~classbench.data.loader.DeviceLoader`'s own generator, right
after the loader's permutation, crop offsets and flips.  The loader indexes them by
image, like its crop offsets, so a resumed epoch redraws the same parameters and DDP
ranks agree.

Pixel semantics follow torchvision's tensor implementations on uint8 images: the
policy operations work on integer-valued floats in [0, 255] and truncate after each
operation, as a uint8 tensor would, and the pipeline hands uint8 back to the loader,
which then converts and normalises exactly as without augmentation.  Cutout comes
last, on the normalised batch, and fills with 0: the mean colour when the loader
normalises (``data.normalize=true``, as in DeVries & Taylor's code), black otherwise.

The order for one image: crop (the loader's pad-crop, or a random-resized crop) and
flip -> rotation (``data.rotate``) -> the policy (``data.augment``) -> normalise ->
Cutout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..config import CHOICES
from ..errors import ConfigError

POLICIES = CHOICES["data.augment"]  # none | randaugment | trivialaugment | autoaugment
CROPS = CHOICES["data.crop"]  # pad | resized

# One index per operation; a policy uses a subset.  "invert" only occurs in the AutoAugment policy.
OPS = ("identity", "shear_x", "shear_y", "translate_x", "translate_y", "rotate",
       "brightness", "color", "contrast", "sharpness", "posterize", "solarize",
       "autocontrast", "equalize", "invert")
OP = {name: i for i, name in enumerate(OPS)}
GEOMETRIC = ("shear_x", "shear_y", "translate_x", "translate_y", "rotate")  # consecutive in OPS
BLENDS = ("brightness", "color", "contrast", "sharpness")  # consecutive in OPS
SIGNED = GEOMETRIC + BLENDS  # their magnitude gets a random sign
WIDE_OPS = OP["equalize"] + 1  # RandAugment and TrivialAugment draw from OPS[:WIDE_OPS]: all but invert
RANDAUGMENT_BINS = 31  # torchvision's num_magnitude_bins: data.randaugment_m is a bin in 0..30

# The AutoAugment CIFAR-10 policy (Cubuk et al., 2019), as torchvision lists it: 25 sub-policies of
# two (operation, probability, magnitude bin of 10) each.
CIFAR10_POLICY = (
    (("invert", 0.1, 0), ("contrast", 0.2, 6)), (("rotate", 0.7, 2), ("translate_x", 0.3, 9)),
    (("sharpness", 0.8, 1), ("sharpness", 0.9, 3)), (("shear_y", 0.5, 8), ("translate_y", 0.7, 9)),
    (("autocontrast", 0.5, 0), ("equalize", 0.9, 0)), (("shear_y", 0.2, 7), ("posterize", 0.3, 7)),
    (("color", 0.4, 3), ("brightness", 0.6, 7)), (("sharpness", 0.3, 9), ("brightness", 0.7, 9)),
    (("equalize", 0.6, 0), ("equalize", 0.5, 0)), (("contrast", 0.6, 7), ("sharpness", 0.6, 5)),
    (("color", 0.7, 7), ("translate_x", 0.5, 8)), (("equalize", 0.3, 0), ("autocontrast", 0.4, 0)),
    (("translate_y", 0.4, 3), ("sharpness", 0.2, 6)), (("brightness", 0.9, 6), ("color", 0.2, 8)),
    (("solarize", 0.5, 2), ("invert", 0.0, 0)), (("equalize", 0.2, 0), ("autocontrast", 0.6, 0)),
    (("equalize", 0.2, 0), ("equalize", 0.6, 0)), (("color", 0.9, 9), ("equalize", 0.6, 0)),
    (("autocontrast", 0.8, 0), ("solarize", 0.2, 8)), (("brightness", 0.1, 3), ("color", 0.7, 0)),
    (("solarize", 0.4, 5), ("autocontrast", 0.9, 0)), (("translate_y", 0.9, 9), ("translate_y", 0.7, 9)),
    (("autocontrast", 0.9, 0), ("solarize", 0.8, 3)), (("equalize", 0.8, 0), ("invert", 0.1, 0)),
    (("translate_y", 0.7, 9), ("autocontrast", 0.9, 0)),
)


def magnitude_table(policy: str, height: int, width: int) -> torch.Tensor:
    """``(len(OPS), bins)`` unsigned magnitudes per operation and bin, in each operation's own units.

    Shear: the shear factor; translate: whole pixels (truncated, as torchvision does); rotate: degrees;
    blends: the factor minus 1; posterize: bits kept; solarize: the threshold.  torchvision's spaces:
    RandAugment and AutoAugment share one (31 and 10 bins), TrivialAugment has its "wide" one.
    """
    wide = policy == "trivialaugment"
    bins = 10 if policy == "autoaugment" else RANDAUGMENT_BINS
    lin = lambda top: torch.linspace(0.0, top, bins, dtype=torch.float64)  # noqa: E731
    table = torch.zeros(len(OPS), bins, dtype=torch.float64)
    table[OP["shear_x"]] = table[OP["shear_y"]] = lin(0.99 if wide else 0.3)
    table[OP["translate_x"]] = lin(32.0 if wide else 150.0 / 331.0 * width).trunc()
    table[OP["translate_y"]] = lin(32.0 if wide else 150.0 / 331.0 * height).trunc()
    table[OP["rotate"]] = lin(135.0 if wide else 30.0)
    for name in BLENDS:
        table[OP[name]] = lin(0.99 if wide else 0.9)
    table[OP["posterize"]] = 8 - (torch.arange(bins, dtype=torch.float64) / ((bins - 1) / (6 if wide else 4))).round()
    table[OP["solarize"]] = torch.linspace(255.0, 0.0, bins, dtype=torch.float64)
    return table.float()


# ---------------------------------------------------------------- the operations, batched
# x: float (B, C, H, W) holding integer pixel values in [0, 255]; value: (B,) signed magnitudes in the
# operation's units (see magnitude_table).  Each returns the new batch; truncation to integers follows
# torchvision's uint8 arithmetic.

def _among(op: torch.Tensor, names: tuple[str, ...]) -> torch.Tensor:
    """``op`` is one of `names`, which are consecutive in OPS (a range test: no index tensor to copy)."""
    return (op >= OP[names[0]]) & (op <= OP[names[-1]])


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma, truncated like a uint8 image: ``(B, 1, H, W)``."""
    r, g, b = x.unbind(1)
    return (0.2989 * r + 0.587 * g + 0.114 * b).floor().unsqueeze(1)


def smoothed(x: torch.Tensor) -> torch.Tensor:
    """PIL's SMOOTH filter (3x3, centre weight 5 of 13), rounded; the 1-pixel border keeps the original."""
    kernel = torch.ones(3, 3, dtype=x.dtype, device=x.device)
    kernel[1, 1] = 5.0
    kernel = (kernel / kernel.sum()).expand(x.shape[1], 1, 3, 3)
    inner = F.pad(F.conv2d(x, kernel, groups=x.shape[1]).round(), (1, 1, 1, 1))
    border = torch.ones(x.shape[-2:], dtype=torch.bool, device=x.device)
    border[1:-1, 1:-1] = False
    return torch.where(border, x, inner)


def blend(x: torch.Tensor, degenerate: torch.Tensor | float, factor: torch.Tensor) -> torch.Tensor:
    """PIL's ImageEnhance: ``factor * x + (1 - factor) * degenerate`` per image, clamped and truncated."""
    f = factor.view(-1, 1, 1, 1)
    return (f * x + (1.0 - f) * degenerate).clamp(0, 255).floor()


def posterize(x: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    """Keep the `bits` high bits of each 8-bit value."""
    q = torch.exp2(8.0 - bits.float()).view(-1, 1, 1, 1)
    return (x / q).floor() * q


def solarize(x: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """Invert the values at or above `threshold` (a threshold of 0 inverts everything)."""
    return torch.where(x >= threshold.float().view(-1, 1, 1, 1), 255.0 - x, x)


def autocontrast(x: torch.Tensor) -> torch.Tensor:
    """Stretch each channel of each image to the full [0, 255] range; flat channels stay as they are."""
    lo = x.amin(dim=(2, 3), keepdim=True)
    hi = x.amax(dim=(2, 3), keepdim=True)
    flat = hi == lo
    scale = torch.where(flat, 1.0, 255.0 / (hi - lo))
    lo = torch.where(flat, 0.0, lo)
    return ((x - lo) * scale).clamp(0, 255).floor()


def equalize(x: torch.Tensor) -> torch.Tensor:
    """Histogram equalisation of each channel of each image (PIL's algorithm, as torchvision implements it)."""
    b, c, h, w = x.shape
    pix = x.reshape(b * c, h * w).long().clamp(0, 255)
    hist = torch.zeros(b * c, 256, dtype=torch.float32, device=x.device)
    hist.scatter_add_(1, pix, torch.ones_like(pix, dtype=torch.float32))
    last = hist.gather(1, pix.amax(1, keepdim=True))  # count of the highest value present
    step = ((h * w - last) / 255).floor()
    lut = ((hist.cumsum(1) + (step / 2).floor()) / step.clamp(min=1)).floor()
    lut = F.pad(lut, (1, 0))[:, :-1].clamp(0, 255)
    out = lut.gather(1, pix).view(b, c, h, w)
    return torch.where((step == 0).view(b, c, 1, 1), x, out)


def affine_op_theta(op: torch.Tensor, value: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``(B, 2, 3)`` sampling matrices (output -> input, ``affine_grid`` units) of the geometric operations.

    Shear is about the top-left corner and translation moves the content by ``value`` pixels, as in
    torchvision; rotation is about the centre, counter-clockwise for a positive angle.  Identity for
    every other operation.
    """
    b = op.shape[0]
    m = torch.zeros(b, 2, 3, dtype=torch.float32, device=value.device)
    v = value.float()
    shx, shy, rot = op == OP["shear_x"], op == OP["shear_y"], op == OP["rotate"]
    angle = torch.where(rot, v, 0.0) * (math.pi / 180)
    cos, sin = angle.cos(), angle.sin()  # 1 and 0 for the other operations
    m[:, 0, 0] = m[:, 1, 1] = cos
    m[:, 0, 1] = torch.where(shx, -v, -sin)
    m[:, 1, 0] = torch.where(shy, -v, sin)
    m[:, 0, 2] = torch.where(shx, -v * height / 2, 0.0) - torch.where(op == OP["translate_x"], v, 0.0)
    m[:, 1, 2] = torch.where(shy, -v * width / 2, 0.0) - torch.where(op == OP["translate_y"], v, 0.0)
    return pixel_to_grid_units(m, height, width)


def pixel_to_grid_units(m: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Convert maps in centred pixel coordinates into ``affine_grid``'s [-1, 1] units (align_corners=False)."""
    hw, hh = width / 2, height / 2
    out = m.clone()
    out[:, 0, 1] *= hh / hw
    out[:, 1, 0] *= hw / hh
    out[:, 0, 2] /= hw
    out[:, 1, 2] /= hh
    return out


def warp(x: torch.Tensor, theta: torch.Tensor, mode: str, padding: str) -> torch.Tensor:
    """Resample each image through its own affine map: ``F.affine_grid`` + ``F.grid_sample``.

    The grid is built with broadcast arithmetic: the same numbers as ``affine_grid`` (to rounding) in
    about half its time on CPU, where ``affine_grid`` runs a batched matmul.
    """
    h, w = x.shape[-2:]
    u = (torch.arange(w, dtype=theta.dtype, device=x.device) * 2 + 1) / w - 1
    v = ((torch.arange(h, dtype=theta.dtype, device=x.device) * 2 + 1) / h - 1).view(-1, 1)
    t = theta.reshape(-1, 6, 1, 1)
    grid = torch.stack([t[:, 0] * u + t[:, 1] * v + t[:, 2], t[:, 3] * u + t[:, 4] * v + t[:, 5]], -1)
    return F.grid_sample(x, grid, mode=mode, padding_mode=padding, align_corners=False)


def _geometric(x: torch.Tensor, op: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    return warp(x, affine_op_theta(op, value, *x.shape[-2:]), "nearest", "zeros")


# The operation of each OPS index on the images that drew it: (x, op, value) -> x.  All geometric
# operations share one resampling.
_APPLY = {
    OP["brightness"]: lambda x, op, v: blend(x, 0.0, 1.0 + v),
    OP["color"]: lambda x, op, v: blend(x, grayscale(x), 1.0 + v),
    OP["contrast"]: lambda x, op, v: blend(x, grayscale(x).mean(dim=(2, 3), keepdim=True), 1.0 + v),
    OP["sharpness"]: lambda x, op, v: blend(x, smoothed(x), 1.0 + v),
    OP["posterize"]: lambda x, op, v: posterize(x, v),
    OP["solarize"]: lambda x, op, v: solarize(x, v),
    OP["invert"]: lambda x, op, v: 255.0 - x,
    OP["autocontrast"]: lambda x, op, v: autocontrast(x),
    OP["equalize"]: lambda x, op, v: equalize(x),
    **{OP[name]: _geometric for name in GEOMETRIC},
}


def apply_ops(x: torch.Tensor, op: torch.Tensor, value: torch.Tensor, op_host: torch.Tensor | None = None
              ) -> torch.Tensor:
    """Apply to each image its own operation ``OPS[op[i]]`` with magnitude ``value[i]``, in place in `x`.

    Images are grouped by operation and each group is processed as one batch (all geometric operations
    together), so the work is about one pass over the batch, not one per operation.  The grouping needs
    the operations on the host: `op_host` (the loader keeps its plan there too); without it, ``op`` is
    copied, a device sync on a GPU.
    """
    op_host = op.cpu() if op_host is None else op_host
    kind = torch.where(_among(op_host, GEOMETRIC), OP[GEOMETRIC[0]], op_host)
    for k in kind.unique().tolist():
        if k == OP["identity"]:
            continue
        rows = (kind == k).nonzero().squeeze(1).to(x.device, non_blocking=True)
        sub = _APPLY[k](x.index_select(0, rows), op.index_select(0, rows), value.index_select(0, rows))
        x.index_copy_(0, rows, sub)
    return x


def cutout_mask(top: torch.Tensor, left: torch.Tensor, side: int, height: int, width: int) -> torch.Tensor:
    """``(B, 1, H, W)`` bool, True inside each image's ``side`` x ``side`` square at (top, left)."""
    rows = torch.arange(height, device=top.device).view(1, 1, -1, 1)
    cols = torch.arange(width, device=top.device).view(1, 1, 1, -1)
    t, l_ = top.view(-1, 1, 1, 1), left.view(-1, 1, 1, 1)
    return (rows >= t) & (rows < t + side) & (cols >= l_) & (cols < l_ + side)


def resized_crop_boxes(n: int, scale: tuple[float, float], ratio: tuple[float, float], height: int, width: int,
                       generator: torch.Generator, attempts: int = 10) -> torch.Tensor:
    """``(n, 4)`` crop boxes (top, left, box height, box width) in pixels, as torchvision samples them.

    Each image tries `attempts` (area fraction, log aspect ratio) pairs and keeps the first that fits in
    the image; if none fits, the whole image cropped to the nearest allowed aspect ratio.  Sizes and
    positions are continuous (the crop is resampled bilinearly anyway).
    """
    area = height * width
    frac = torch.empty(n, attempts).uniform_(scale[0], scale[1], generator=generator)
    log_r = torch.empty(n, attempts).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=generator)
    bw = (area * frac * log_r.exp()).sqrt()
    bh = (area * frac / log_r.exp()).sqrt()
    fits = (bw <= width) & (bh <= height)
    first = fits.float().argmax(1, keepdim=True)  # the first fitting attempt (0 if none fits)
    bw, bh = bw.gather(1, first).squeeze(1), bh.gather(1, first).squeeze(1)
    in_ratio = width / height
    if in_ratio < ratio[0]:
        fb_w, fb_h = float(width), width / ratio[0]
    elif in_ratio > ratio[1]:
        fb_w, fb_h = height * ratio[1], float(height)
    else:
        fb_w, fb_h = float(width), float(height)
    none_fits = ~fits.any(1)
    bw = torch.where(none_fits, fb_w, bw)
    bh = torch.where(none_fits, fb_h, bh)
    pos = torch.rand(n, 2, generator=generator)
    top = pos[:, 0] * (height - bh)
    left = pos[:, 1] * (width - bw)
    return torch.stack([top, left, bh, bw], 1)


def geometry_theta(height: int, width: int, boxes: torch.Tensor | None, flips: torch.Tensor | None,
                   angles: torch.Tensor | None, batch: int, device: torch.device) -> torch.Tensor:
    """``(B, 2, 3)`` sampling matrices for crop box + flip + rotation of the output, in one map.

    For an output point p (centred pixels): rotate it, mirror it, then scale it into the box.
    """
    m = torch.zeros(batch, 2, 3, device=device)
    m[:, 0, 0] = m[:, 1, 1] = 1.0
    if angles is not None:
        a = angles.float() * (math.pi / 180)
        m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1] = a.cos(), -a.sin(), a.sin(), a.cos()
    if flips is not None:
        m[:, 0, :2] = torch.where(flips.view(-1, 1), -m[:, 0, :2], m[:, 0, :2])
    if boxes is not None:
        top, left, bh, bw = boxes.float().unbind(1)
        m[:, 0, :2] *= (bw / width).view(-1, 1)
        m[:, 1, :2] *= (bh / height).view(-1, 1)
        m[:, 0, 2] = left + bw / 2 - width / 2
        m[:, 1, 2] = top + bh / 2 - height / 2
    return pixel_to_grid_units(m, height, width)


# ---------------------------------------------------------------- the pipeline
@dataclass(frozen=True)
class Augment:
    """What to do to training images (from ``cfg.data``); :meth:`build` binds it to an image size."""

    policy: str = "none"
    randaugment_n: int = 2
    randaugment_m: int = 9
    crop: str = "pad"
    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    cutout: int = 0
    rotate: float = 0.0

    @property
    def is_identity(self) -> bool:
        """Nothing beyond the loader's own pad-crop and flip."""
        return self.policy == "none" and self.crop == "pad" and not self.cutout and not self.rotate

    def build(self, height: int, width: int) -> AugmentPipeline:
        return AugmentPipeline(self, height, width)


def build_augment(data_cfg) -> Augment | None:
    """The :class:`Augment` of a ``DataConfig``; None when it adds nothing to pad-crop + flip."""
    aug = Augment(
        policy=data_cfg.augment, randaugment_n=data_cfg.randaugment_n, randaugment_m=data_cfg.randaugment_m,
        crop=data_cfg.crop, crop_scale=tuple(data_cfg.crop_scale), crop_ratio=tuple(data_cfg.crop_ratio),
        cutout=data_cfg.cutout, rotate=float(data_cfg.rotate))
    return None if aug.is_identity else aug


@dataclass
class AugmentPipeline:
    """An :class:`Augment` for images of one size: draws an epoch's parameters and applies them to batches."""

    spec: Augment
    height: int
    width: int

    def __post_init__(self) -> None:
        s = self.spec
        if s.policy not in POLICIES:
            raise ConfigError(f"data.augment={s.policy!r} is not valid; choose one of: {', '.join(POLICIES)}.")
        if s.crop not in CROPS:
            raise ConfigError(f"data.crop={s.crop!r} is not valid; choose one of: {', '.join(CROPS)}.")
        if s.cutout > min(self.height, self.width):
            raise ConfigError(f"data.cutout={s.cutout} is larger than the {self.height}x{self.width} images; "
                              f"use at most {min(self.height, self.width)} (0 turns Cutout off).")
        self.table = magnitude_table(s.policy, self.height, self.width) if s.policy != "none" else None
        if s.policy == "autoaugment":
            self._sub_ops = torch.tensor([[OP[name] for name, _, _ in sub] for sub in CIFAR10_POLICY])
            self._sub_prob = torch.tensor([[p for _, p, _ in sub] for sub in CIFAR10_POLICY])
            self._sub_bin = torch.tensor([[b for _, _, b in sub] for sub in CIFAR10_POLICY])
        self._signed = torch.tensor([name in SIGNED for name in OPS])

    @property
    def resized(self) -> bool:
        return self.spec.crop == "resized"

    @property
    def warps(self) -> bool:
        return self.resized or bool(self.spec.rotate)

    # ------------------------------------------------------------ per-epoch parameters
    def draw(self, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Every image's parameters for one epoch (CPU tensors indexed by image), in a fixed order."""
        s, g = self.spec, generator
        out: dict[str, torch.Tensor] = {}
        if self.resized:
            out["box"] = resized_crop_boxes(n, s.crop_scale, s.crop_ratio, self.height, self.width, g)
        if s.rotate:
            out["angle"] = torch.empty(n).uniform_(-s.rotate, s.rotate, generator=g)
        if s.policy != "none":
            out["op"], out["value"] = self._draw_policy(n, g)
        if s.cutout:
            out["cutout"] = torch.stack([torch.randint(0, self.height - s.cutout + 1, (n,), generator=g),
                                         torch.randint(0, self.width - s.cutout + 1, (n,), generator=g)], 1)
        return out

    def _draw_policy(self, n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``(n, layers)`` operation indices and signed magnitudes."""
        s = self.spec
        if s.policy == "randaugment":
            op = torch.randint(0, WIDE_OPS, (n, s.randaugment_n), generator=g)
            bins = torch.full_like(op, s.randaugment_m)
        elif s.policy == "trivialaugment":
            op = torch.randint(0, WIDE_OPS, (n, 1), generator=g)
            bins = torch.randint(0, RANDAUGMENT_BINS, (n, 1), generator=g)
        else:  # autoaugment: a sub-policy per image, each of its two operations applied with its probability
            sub = torch.randint(0, len(CIFAR10_POLICY), (n,), generator=g)
            applied = torch.rand(n, 2, generator=g) < self._sub_prob[sub]
            op = torch.where(applied, self._sub_ops[sub], OP["identity"])
            bins = self._sub_bin[sub]
        negative = torch.randint(0, 2, op.shape, generator=g, dtype=torch.bool) & self._signed[op]
        value = self.table[op, bins]
        return op, torch.where(negative, -value, value)

    # ------------------------------------------------------------ batches
    def pixels(self, images: torch.Tensor, p: dict[str, torch.Tensor], flips: torch.Tensor | None,
               op_host: torch.Tensor | None = None) -> torch.Tensor:
        """uint8 batch -> uint8 batch: crop box / flip / rotation (one resampling), then the policy.

        `p`: this batch's rows of :meth:`draw`, on the device; `op_host`: the rows of ``draw()["op"]`` on
        the host, to group the images by operation without a device sync.  `flips` is given only with the
        resized crop (the pad-crop gather flips by itself).
        """
        if not self.warps and self.spec.policy == "none":
            return images
        x = images.float()
        if self.warps:
            theta = geometry_theta(self.height, self.width, p.get("box"), flips, p.get("angle"), len(x), x.device)
            # The crop box lies inside the image: "border" only fills its half-pixel margin.  A rotation
            # uncovers corners, which stay black as in torchvision's RandomRotation.
            padding = "zeros" if self.spec.rotate else "border"
            x = warp(x, theta, "bilinear", padding).round_().clamp_(0, 255)
        if "op" in p:
            op_host = p["op"].cpu() if op_host is None else op_host
            for layer in range(p["op"].shape[1]):
                x = apply_ops(x, p["op"][:, layer], p["value"][:, layer], op_host[:, layer])
        return x.to(torch.uint8)

    def erase(self, x: torch.Tensor, p: dict[str, torch.Tensor]) -> torch.Tensor:
        """Cutout on the normalised float batch: each image loses one ``cutout`` x ``cutout`` square (set to 0)."""
        if not self.spec.cutout:
            return x
        pos = p["cutout"]
        return x.masked_fill_(cutout_mask(pos[:, 0], pos[:, 1], self.spec.cutout, self.height, self.width), 0.0)
