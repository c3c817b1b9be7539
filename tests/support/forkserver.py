"""The fork server: one Python process that imports torch and classbench once, then forks a child per command.

Start-up is the cost of process tests (python + torch take seconds).  Each child runs
``classbench.cli.main(argv)`` -- what ``python -m classbench`` runs -- as a real process that
receives real signals.  Reach it through the ``forkserver`` fixture (tests/conftest.py).
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
from pathlib import Path

from .configs import REPO

ZYGOTE = r'''
import json, os, sys, traceback
import torch  # noqa: F401  -- imported once here; every child inherits it
import torch._dynamo  # noqa: F401  -- torch.optim imports it on first use (seconds)
import classbench.cli, classbench.commands.train, classbench.train.trainer, classbench.models, classbench.data.synthetic
out = sys.stdout
for line in sys.stdin:
    req = json.loads(line)
    if req["op"] == "wait":
        _, status = os.waitpid(req["pid"], 0)
        out.write(json.dumps({"signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0,
                              "code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None}) + "\n")
        out.flush()
        continue
    pid = os.fork()
    if pid:
        out.write(json.dumps({"pid": pid}) + "\n")
        out.flush()
        continue
    code = 1
    try:
        fd = os.open(req["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        os.environ.update(req.get("env") or {})
        if req.get("hook"):
            exec(req["hook"], {})
        if req.get("argv") is not None:
            sys.argv = ["classbench", *req["argv"]]
            code = classbench.cli.main(req["argv"])
        else:
            exec(req["code"], {})
            code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
'''

# In a child: make the fsync of a last.pt temp file announce itself and stall, so the
# test can SIGKILL the child exactly between writing the new checkpoint and renaming it.
STALL_IN_CHECKPOINT_WRITE = r'''
import os, time
_fsync = os.fsync
def fsync(fd):
    target = os.readlink(f"/proc/self/fd/{fd}")
    if "/.last.pt." in target and target.endswith(".tmp"):
        open(os.environ["MIDWRITE_MARKER"], "w").close()
        time.sleep(30)
    _fsync(fd)
os.fsync = fsync
'''


class ForkServer:
    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", ZYGOTE], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, cwd=REPO)

    def _ask(self, req: dict, timeout: float = 120.0) -> dict:
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            raise TimeoutError(f"fork server: no answer to {req['op']} within {timeout} s")
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the fork server died")
        return json.loads(line)

    def spawn(self, log: Path, argv: list[str] | None = None, *, code: str | None = None,
              hook: str | None = None, env: dict | None = None) -> int:
        return self._ask({"op": "spawn", "argv": argv, "code": code, "hook": hook, "env": env, "log": str(log)})["pid"]

    def wait(self, pid: int, timeout: float = 120.0) -> dict:
        try:
            return self._ask({"op": "wait", "pid": pid}, timeout)
        except TimeoutError:
            os.kill(pid, signal.SIGKILL)
            raise

    def run(self, log: Path, argv: list[str], timeout: float = 120.0) -> None:
        res = self.wait(self.spawn(log, argv), timeout)
        assert res == {"signal": 0, "code": 0}, f"{argv} ended with {res}:\n{log.read_text()}"

    def close(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


