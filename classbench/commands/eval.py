from ..runfolder import BEST_PT

HELP = f"Evaluate a run's checkpoint ({BEST_PT} by default) on a split and print top-1/top-5."


def add_arguments(p) -> None:
    p.add_argument("target", metavar="RUN_DIR_OR_CHECKPOINT")
    p.add_argument("--split", default="test", choices=["test", "val", "train_subset"])
    p.add_argument("--checkpoint", default="best", choices=["best", "last"],
                   help="which checkpoint of a run folder (default best)")
    p.add_argument("--device", default="auto")
    p.add_argument("--format", default="text", choices=["text", "json"])


def run(args) -> int:
    import json

    from ..inference.evaluate import evaluate_checkpoint

    m = evaluate_checkpoint(args.target, split=args.split, kind=args.checkpoint, device=args.device)
    if args.format == "json":
        print(json.dumps(m))
    else:
        print(f"{m['checkpoint']}  step {m['step']}  {args.split}: top-1 {100 * m['top1']:.2f}%  "
              f"top-5 {100 * m['top5']:.2f}%  loss {m['loss']:.4f}  ({m['count']} images)")
    return 0
