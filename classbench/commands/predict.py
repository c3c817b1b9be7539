"""`classbench predict`: class names and probabilities for image files."""

from __future__ import annotations

import argparse
import json
import sys

HELP = "Classify PNG/JPEG images with a run's best checkpoint (or a checkpoint file)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", metavar="RUN_DIR_OR_CHECKPOINT", help="a run folder (uses checkpoints/best.pt) or a .pt file")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="PNG or JPEG files")
    parser.add_argument("--topk", type=int, default=5, help="number of classes to show per image (default: 5)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument("--device", default="cpu", help="device (default: cpu)")


def run(args: argparse.Namespace) -> int:
    from ..inference.predict import format_predictions, load_predictor, predict_files

    predictor = load_predictor(args.checkpoint, device=args.device)
    results = predict_files(predictor, args.images, topk=args.topk)
    if args.json:
        out = [{"path": r["path"], "predictions": [{"class": c, "probability": p} for c, p in r["predictions"]]} for r in results]
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
    else:
        sys.stdout.write(format_predictions(results))
    return 0
