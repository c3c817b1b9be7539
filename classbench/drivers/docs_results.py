"""Rebuild the generated parts of markdown documents from the commands that made them (`make docs-results`).

A published table is the output of a classbench command over committed run records (``results/``).  The
document names that command, so the table can be rebuilt, and checked, by anyone:

    <!-- generated: classbench compare results/seed004 --format markdown -->

    ...exactly what the command prints...

    <!-- end generated -->

    <!-- generated-files: classbench plot results/seed004 --by arm --out docs/figures/seed004 -->

A ``generated:`` block holds the command's standard output; rebuilding replaces it, ``--check`` fails,
naming the block, when it differs from what the command prints now.  A ``generated-files:`` line stands
alone: its command writes files (figures, a report) that the document links to; rebuilding runs it, and
``--check`` leaves it out (figures and reports carry their own render date and fonts, so they are not
compared byte for byte; a file the command names that comes out equal but for its render stamp keeps
its old bytes, so rebuilding unchanged records changes nothing).  Commands run from the root folder
(``--root``, default: the current folder), in this process, and only read-only classbench sub-commands
are allowed: a document cannot start training or run a shell.

    python -m classbench.drivers.docs_results [--check] [--root DIR] [FILE.md ...]   (default: docs/**/*.md)
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import io
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from ..errors import ClassbenchError
from ..io import atomic_write_bytes, atomic_write_text

OPEN = re.compile(r"^<!-- generated(?P<files>-files)?: (?P<command>.+?) -->\s*$")
END = "<!-- end generated -->"
FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})(.*)$")
#: What a document may run: sub-commands that only read runs and print or draw them.
READ_ONLY = ("summary", "compare", "plot", "report", "models", "configs")


@dataclass
class Block:
    path: Path
    line: int  #: 1-based line of the opening comment
    command: str
    writes_files: bool  #: a ``generated-files:`` line (no body)
    body: str = ""  #: the text between the opening and the end comment
    end_line: int = 0  #: 1-based line of the end comment (text blocks)

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


def find_blocks(path: str | Path) -> list[Block]:
    """The generated blocks of one markdown file, in order; a ClassbenchError names a malformed one."""
    path = Path(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    open_block: Block | None = None
    fence = ""  # the fence of the code block we are in: an example of the syntax there is not a block
    for i, line in enumerate(lines, start=1):
        if open_block is None:
            m = FENCE.match(line)
            if m and (not fence or m[1][0] == fence[0] and len(m[1]) >= len(fence) and not m[2].strip()):
                fence = "" if fence else m[1]
                continue
            if fence:
                continue
        m = OPEN.match(line)
        if line.strip() == END:
            if open_block is None:
                raise ClassbenchError(f"{path}:{i}: '{END}' without a '<!-- generated: ... -->' before it.")
            open_block.body = "\n".join(lines[open_block.line:i - 1])
            open_block.end_line = i
            blocks.append(open_block)
            open_block = None
        elif m:
            if open_block is not None:
                raise ClassbenchError(f"{path}:{i}: a generated block opens inside the block of line "
                                      f"{open_block.line}; close that one first with '{END}'.")
            block = Block(path, i, m["command"].strip(), writes_files=bool(m["files"]))
            if block.writes_files:
                blocks.append(block)
            else:
                open_block = block
    if open_block is not None:
        raise ClassbenchError(f"{open_block.where}: the generated block is never closed; end it with '{END}'.")
    return blocks


def _argv(block: Block) -> list[str]:
    try:
        argv = shlex.split(block.command)
    except ValueError as e:
        raise ClassbenchError(f"{block.where}: cannot parse the command `{block.command}`: {e}.") from None
    if len(argv) < 2 or argv[0] != "classbench" or argv[1] not in READ_ONLY:
        raise ClassbenchError(f"{block.where}: `{block.command}` is not allowed here; a generated block runs "
                              f"`classbench {{{','.join(READ_ONLY)}}} ...`.")
    return argv[1:]


def run_command(block: Block, root: str | Path) -> str:
    """What the block's command prints now (run in this process, from ``root``); a ClassbenchError if it fails."""
    from ..cli import main

    argv = _argv(block)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.chdir(root), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as e:  # argparse rejects a bad option by exiting
            rc = e.code if isinstance(e.code, int) else 2
    if rc:
        last = (err.getvalue().strip().splitlines() or ["(no message)"])[-1]
        raise ClassbenchError(f"{block.where}: `{block.command}` failed (exit {rc}): {last}")
    return out.getvalue()


#: A render stamp ("generated 2026-12-03 14:56 UTC"): the one part of a report that changes on every rebuild.
STAMP = re.compile(rb"\b(generated|on) \d{4}-\d{2}-\d{2} \d{2}:\d{2}(:\d{2})? UTC")


@contextlib.contextmanager
def _kept_if_only_dated(block: Block, root: str | Path):
    """Around a files block's command: a file it names (``-o docs/reports/x.html``) that comes out equal but
    for its render stamp gets its old bytes back, so rebuilding unchanged records leaves the tree clean.
    Yields the list of the files so kept (filled once the command has run)."""
    before = {a: Path(root, a).read_bytes() for a in _argv(block)[1:] if Path(root, a).is_file()}
    kept: list[str] = []
    yield kept
    for name, old in before.items():
        path = Path(root, name)
        new = path.read_bytes() if path.is_file() else None
        if new is not None and new != old and STAMP.sub(b"", new) == STAMP.sub(b"", old):
            atomic_write_bytes(path, old)
            kept.append(name)


def body_lines(output: str) -> list[str]:
    """The lines a text block holds for ``output``: the output with one blank line either side (a markdown table
    next to an HTML comment line then renders in every flavour)."""
    return ["\n", *(f"{line}\n" for line in output.strip("\n").split("\n")), "\n"]


def default_files(root: str | Path) -> list[Path]:
    return sorted(Path(root, "docs").rglob("*.md"))


def rebuild(files: list[Path], root: str | Path, *, check: bool = False, log=print) -> list[Block]:
    """Rebuild (or with ``check`` only compare) every block in ``files``; returns the blocks that were out of date."""
    stale: list[Block] = []
    for path in files:
        lines = Path(path).read_text(encoding="utf-8").splitlines(keepends=True)
        changes: list[tuple[Block, list[str]]] = []
        for block in find_blocks(path):
            if block.writes_files:
                if check:
                    _argv(block)  # a forbidden or garbled command fails the check all the same
                    log(f"{block.where}: not compared (writes files): {block.command}")
                else:
                    with _kept_if_only_dated(block, root) as kept:
                        run_command(block, root)
                    log(f"{block.where}: ran {block.command}" + "".join(f"; {k} kept: only its date changed" for k in kept))
                continue
            now = run_command(block, root)
            if now.strip("\n") == block.body.strip("\n"):
                continue
            stale.append(block)
            if check:
                diff = difflib.unified_diff(block.body.strip("\n").split("\n"), now.strip("\n").split("\n"),
                                            "in the document", "printed now", lineterm="", n=0)
                log(f"{block.where}: out of date: {block.command}\n" + "\n".join(list(diff)[:20]))
            else:
                changes.append((block, body_lines(now)))
                log(f"{block.where}: updated {block.command}")
        if changes:
            for block, body in reversed(changes):  # from the end, so the earlier blocks' line numbers hold
                lines[block.line:block.end_line - 1] = body
            atomic_write_text(path, "".join(lines))
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m classbench.drivers.docs_results",
                                     description="Rebuild (or --check) the generated blocks of markdown documents.")
    parser.add_argument("files", nargs="*", type=Path, metavar="FILE.md", help="documents (default: docs/**/*.md)")
    parser.add_argument("--root", default=".", type=Path, help="the folder commands run from (default: .)")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a block is out of date")
    args = parser.parse_args(argv)
    try:
        files = args.files or default_files(args.root)
        stale = rebuild(files, args.root, check=args.check)
    except ClassbenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.check and stale:
        print(f"{len(stale)} generated block(s) out of date; run `make docs-results`.", file=sys.stderr)
        return 1
    print(f"{len(stale)} block(s) {'out of date' if args.check else 'updated'}.", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
