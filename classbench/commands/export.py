"""`classbench export`: ONNX or TorchScript with the normalisation baked in."""

from __future__ import annotations

import argparse
import sys

from ..runfolder import checkpoint_rel

HELP = "Export a run's best model to ONNX or TorchScript (input: float NCHW in [0, 1]; normalisation included)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", metavar="RUN_DIR_OR_CHECKPOINT", help=f"a run folder (uses {checkpoint_rel('best')}) or a .pt file")
    parser.add_argument("--format", choices=("onnx", "torchscript"), required=True, help="output format")
    parser.add_argument("-o", "--output", required=True, metavar="FILE", help="file to write (atomically)")
    parser.add_argument("--no-verify", action="store_true", help="skip checking the exported model against PyTorch")


def run(args: argparse.Namespace) -> int:
    from ..inference.export import export_model

    res = export_model(args.checkpoint, args.format, args.output, verify=not args.no_verify)
    c, h, w = res.input_size
    check = "" if res.max_abs_diff is None else f"; max |logit difference| vs PyTorch {res.max_abs_diff:.2e}"
    print(
        f"wrote {res.path} ({res.format}; input float32 [N, {c}, {h}, {w}] in [0, 1], output logits over "
        f"{len(res.classes)} classes{check})",
        file=sys.stderr,
    )
    return 0
