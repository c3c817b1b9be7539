"""`classbench predict`: class names and probabilities for image files or folders of images."""

from __future__ import annotations

import argparse
import json

from ..runfolder import checkpoint_rel

HELP = "Classify PNG/JPEG images (files or folders) with a run's best checkpoint (or a checkpoint file)."

FORMATS = ("text", "json", "csv")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", metavar="RUN_DIR_OR_CHECKPOINT", help=f"a run folder (uses {checkpoint_rel('best')}) or a .pt file")
    parser.add_argument("images", nargs="+", metavar="IMAGE_OR_FOLDER",
                        help="image files, or folders whose image files (searched recursively) are all classified")
    parser.add_argument("--topk", type=int, default=5, help="number of classes to show per image (default: 5)")
    parser.add_argument("--format", choices=FORMATS, default="text",
                        help="text (default), json, or csv (one row per image and rank: path,rank,class,probability)")
    parser.add_argument("--json", action="store_const", const="json", dest="format", help="same as --format json")
    parser.add_argument("-o", "--output", metavar="FILE", help="write to FILE (atomically) instead of stdout")
    parser.add_argument("--device", default="cpu", help="device (default: cpu)")


def run(args: argparse.Namespace) -> int:
    from ..inference.predict import format_predictions, image_paths, load_predictor, predict_files, predictions_csv

    paths = image_paths(args.images)  # before loading the model: a bad folder fails fast
    predictor = load_predictor(args.checkpoint, device=args.device)
    results = predict_files(predictor, paths, topk=args.topk)
    if args.format == "json":
        out = [{"path": r["path"], "predictions": [{"class": c, "probability": p} for c, p in r["predictions"]]} for r in results]
        text = json.dumps(out, indent=2) + "\n"
    elif args.format == "csv":
        text = predictions_csv(results)
    else:
        text = format_predictions(results)
    from ..io import write_output

    write_output(args.output, text, f"{len(results)} image(s)")
    return 0
