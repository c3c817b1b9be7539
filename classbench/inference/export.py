"""Export a trained model to ONNX or TorchScript, normalisation included.

The exported graph takes float NCHW images in [0, 1] (any batch size) and
returns logits: the checkpoint's ``input.mean``/``input.std`` are baked in, so
a consumer needs nothing but the file.  Class names travel with it (ONNX
metadata ``classes``; TorchScript extra file ``classes.json``).

Both writers go to a temporary file in the target folder, verify it (ONNX:
onnxruntime against torch; TorchScript: reload and compare), and only then
rename it over the target, so a failed export never leaves a broken file.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import ClassbenchError
from ..io import atomic_write_bytes
from .predict import Predictor, load_predictor

FORMATS = ("onnx", "torchscript")

#: Exported and reference outputs must agree to this (max abs difference of logits).
TOLERANCE = 1e-4


@dataclass
class ExportResult:
    path: Path
    format: str
    max_abs_diff: float | None
    input_size: tuple[int, int, int]
    classes: list[str]


def _metadata(p: Predictor) -> dict[str, str]:
    inp = p.ckpt.get("input") or {}
    return {
        "classes": json.dumps(p.classes),
        "input": json.dumps({"layout": "NCHW", "dtype": "float32", "range": [0, 1], "size": list(p.input_size)}),
        "normalization": json.dumps({"mean": inp.get("mean"), "std": inp.get("std"), "baked_in": True}),
        "model_name": str(p.ckpt.get("model_name", "")),
        "step": str(p.ckpt.get("step", "")),
        "producer": "classbench",
    }


@contextlib.contextmanager
def _quiet():
    """Silence deprecation chatter and exporter logging; real errors still raise."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "torch.fx")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, lv in zip(loggers, levels):
            lg.setLevel(lv)


def _tmp_path(target: Path) -> Path:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    return Path(tmp)


def _check(diff: float, fmt: str, tolerance: float) -> None:
    if not diff <= tolerance:  # also catches NaN
        raise ClassbenchError(
            f"The {fmt} export does not reproduce the PyTorch model: logits differ by up to {diff:.3g} "
            f"(tolerance {tolerance:g}). The file was not written. Try the other format or report the model."
        )


def export_torchscript(p: Predictor, out: Path, *, verify: bool = True, tolerance: float = TOLERANCE) -> float | None:
    model = p.model.cpu().eval()
    example = torch.rand(2, *p.input_size)
    extra = {f"{k}.json" if k in ("classes", "input", "normalization") else k: v for k, v in _metadata(p).items()}
    try:
        with _quiet(), torch.inference_mode(False), torch.no_grad():
            traced = torch.jit.trace(model, example, check_trace=False)
            buf = io.BytesIO()
            torch.jit.save(traced, buf, _extra_files=extra)
    except Exception as e:
        raise ClassbenchError(f"TorchScript export of {p.ckpt.get('model_name')} failed: {type(e).__name__}: {e}") from e
    data = buf.getvalue()
    diff = None
    if verify:
        with _quiet(), torch.no_grad():
            loaded = torch.jit.load(io.BytesIO(data), map_location="cpu")
            x = torch.rand(3, *p.input_size, generator=torch.Generator().manual_seed(0))
            diff = float((loaded(x).float() - model(x).float()).abs().max())
        _check(diff, "TorchScript", tolerance)
    atomic_write_bytes(out, data)
    return diff


def _require_onnx():
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as e:
        raise ClassbenchError(
            f"ONNX export needs the onnx extra ({e.name} is missing). Install it with "
            "`pip install classbench[onnx]` (onnx, onnxruntime, onnxscript), or use --format torchscript."
        ) from None


def export_onnx(p: Predictor, out: Path, *, verify: bool = True, tolerance: float = TOLERANCE, opset: int = 18) -> float | None:
    _require_onnx()
    import onnx

    model = p.model.cpu().eval()
    example = torch.rand(2, *p.input_size)
    tmp = _tmp_path(out)
    try:
        errors = []
        for dynamo in (True, False):  # the torch.export-based exporter first, the legacy one as fallback
            try:
                with _quiet(), torch.no_grad():
                    if dynamo:
                        torch.onnx.export(
                            model, (example,), str(tmp), input_names=["input"], output_names=["logits"],
                            opset_version=opset, dynamo=True, external_data=False, verbose=False,
                            dynamic_shapes=({0: torch.export.Dim("batch")},),
                        )
                    else:
                        torch.onnx.export(
                            model, (example,), str(tmp), input_names=["input"], output_names=["logits"],
                            opset_version=opset, dynamo=False,
                            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                        )
                break
            except Exception as e:  # noqa: PERF203 - try the other exporter
                errors.append(f"{'dynamo' if dynamo else 'legacy'} exporter: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
        else:
            raise ClassbenchError(
                f"ONNX export of {p.ckpt.get('model_name')} failed. " + " / ".join(errors) + " Try --format torchscript."
            )
        proto = onnx.load(str(tmp))
        for k, v in _metadata(p).items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = k, v
        onnx.checker.check_model(proto)
        data = proto.SerializeToString()
        diff = None
        if verify:
            diff = _onnx_max_diff(data, model, p.input_size)
            _check(diff, "ONNX", tolerance)
        atomic_write_bytes(out, data)
        return diff
    finally:
        for leftover in (tmp, Path(str(tmp) + ".data")):
            with contextlib.suppress(OSError):
                leftover.unlink()


def _onnx_max_diff(data: bytes, model: torch.nn.Module, size: tuple[int, int, int]) -> float:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])
    x = torch.rand(3, *size, generator=torch.Generator().manual_seed(0))
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        ref = model(x).float()
    return float((torch.from_numpy(got).float() - ref).abs().max())


def export_model(
    src: str | os.PathLike, fmt: str, out: str | os.PathLike, *, verify: bool = True, tolerance: float = TOLERANCE
) -> ExportResult:
    """Export a run folder's best.pt (or a checkpoint file) to ``out`` in ``fmt`` (onnx | torchscript)."""
    if fmt not in FORMATS:
        raise ClassbenchError(f"Unknown export format {fmt!r}; choose one of: {', '.join(FORMATS)}.")
    out = Path(out)
    if out.is_dir():
        raise ClassbenchError(f"-o {out} is a folder; give a file name such as model.{'onnx' if fmt == 'onnx' else 'pt'}.")
    if not out.parent.exists():
        raise ClassbenchError(f"The folder of -o {out} does not exist; create {out.parent} first.")
    if fmt == "onnx":
        _require_onnx()
    p = load_predictor(src, device="cpu")
    if fmt == "onnx":
        diff = export_onnx(p, out, verify=verify, tolerance=tolerance)
    else:
        diff = export_torchscript(p, out, verify=verify, tolerance=tolerance)
    return ExportResult(out, fmt, diff, p.input_size, p.classes)
