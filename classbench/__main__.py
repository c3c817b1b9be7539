try:
    from .cli import main
except KeyboardInterrupt:  # Ctrl-C before the command line loaded: the same quiet stop as later
    import sys

    print("interrupted", file=sys.stderr)
    raise SystemExit(130) from None

raise SystemExit(main())
