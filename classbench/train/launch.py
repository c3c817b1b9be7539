"""`classbench train --nproc N ...`: DDP on N local processes through torchrun.

:func:`launch_torchrun` runs, as a subprocess, the equivalent of::

    python -m torch.distributed.run --standalone --nproc_per_node N -m classbench train ARGS...

through this module's ``__main__``, which calls ``torch.distributed.run`` itself
and only changes how a failure ends: torchrun exits with status 1 and a
"ChildFailedError" traceback whatever went wrong, while here the exit status
is the one of the first worker that failed (2 for a user error, as in one
process; 128+N for a worker killed by signal N) and the message is one line.

Threads: N processes share the machine's cores, so each gets
``max(1, physical cores // N)`` (``OMP_NUM_THREADS``, and the trainer's
``torch.set_num_threads``), unless ``train.threads`` or ``OMP_NUM_THREADS`` is set.

Signals: Ctrl-C reaches every process of the terminal; SIGTERM sent to this
launcher is passed on to torchrun, which passes it to the workers.  Either way
the workers agree on a step, save ``last.pt`` and exit as interrupted.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from ..errors import ConfigError


def strip_nproc(argv: list[str]) -> list[str]:
    """``argv`` without ``--nproc N`` / ``--nproc=N`` (the workers must not launch again)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            out.append(a)
    return out


def torchrun_command(nproc: int, argv: list[str]) -> list[str]:
    return [sys.executable, "-m", "classbench.train.launch", "--standalone", f"--nproc_per_node={nproc}",
            "-m", "classbench", "train", *strip_nproc(argv)]


def launch_torchrun(nproc: int, argv: list[str]) -> int:
    """Run `classbench train ARGV` on ``nproc`` local processes; returns the exit status."""
    if nproc < 1:
        raise ConfigError(f"--nproc must be at least 1, got {nproc}.")
    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        raise ConfigError("--nproc inside a torchrun launch: give either --nproc N or torchrun, not both.")
    cmd = torchrun_command(nproc, argv)
    env = dict(os.environ)
    threads = next((a.split("=", 1)[1] for a in argv if a.startswith("train.threads=")), None)
    if threads and threads.strip() not in ("", "0"):
        env.setdefault("OMP_NUM_THREADS", threads.strip())
    print(f"classbench: torchrun --standalone --nproc_per_node={nproc} -m classbench train "
          + " ".join(strip_nproc(argv)), file=sys.stderr, flush=True)
    proc = subprocess.Popen(cmd, env=env)
    # The terminal's Ctrl-C already reaches torchrun and the workers: let them save and exit.
    old_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
    old_term = signal.signal(signal.SIGTERM, lambda signum, frame: proc.send_signal(signum))
    try:
        return proc.wait()
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)


def _torchrun_main(argv: list[str]) -> int:
    """torchrun with the first failed worker's exit status and a one-line message."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    from .precision import default_threads

    args = parse_args(argv)
    try:
        nproc = int(args.nproc_per_node)
    except ValueError:
        nproc = 1
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, default_threads() // max(1, nproc))))
    try:
        run(args)
    except ChildFailedError as e:
        rank, failure = e.get_first_failure()
        code = failure.exitcode
        how = f"exited with status {code}"
        if code < 0:
            try:
                how = f"was killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"was killed by signal {-code}"
            code = 128 - code
        print(f"error: distributed training failed: rank {rank} {how} first (its own messages are above); "
              "torchrun stopped the other processes.", file=sys.stderr)
        return code or 1
    except SignalException as e:
        print(f"classbench: torchrun received {signal.Signals(e.sigval).name}; the workers were stopped.",
              file=sys.stderr)
        return 128 + int(e.sigval)
    return 0


if __name__ == "__main__":
    raise SystemExit(_torchrun_main(sys.argv[1:]))
