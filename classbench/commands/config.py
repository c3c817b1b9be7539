HELP = "Print the resolved config: defaults, then the YAML file, then key=value overrides."


def add_arguments(p) -> None:
    p.add_argument("config", nargs="?", help="configs/<dataset>/<name>.yaml (omit to see the defaults)")
    p.add_argument("overrides", nargs="*", metavar="key=value")


def run(args) -> int:
    from ..config import load_config, to_yaml

    overrides = list(args.overrides)
    if args.config and "=" in args.config and not args.config.endswith((".yaml", ".yml")):
        overrides.insert(0, args.config)
        args.config = None
    if args.config is None and not any(o.startswith(("train.epochs=", "train.steps=")) for o in overrides):
        overrides.insert(0, "train.epochs=1")  # the bare defaults have no budget
    cfg = load_config(args.config, overrides)
    from ..models import get_entry

    get_entry(cfg.model.name)  # an unknown model.name: a ConfigError naming the closest models
    print(to_yaml(cfg), end="")
    return 0
