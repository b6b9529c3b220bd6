"""What every bench result records: the machine it ran on and the code version."""

from __future__ import annotations

import argparse
import os
import platform
from collections.abc import Callable, Sequence
from pathlib import Path

from pseudo.console import print_error
from pseudo.errors import PseudoError
from pseudo.io import check_writable
from pseudo.settings import code_version


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = ""
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        kb = int(meminfo.read_text().split()[1])
        mem = f", {kb / 2**20:.0f} GiB RAM"
    return f"{cpu}, {os.cpu_count()} cores{mem}, Python {platform.python_version()}, no GPU"


def header(title: str, command: str, version: str) -> str:
    """The md's first lines; ``version``: ``args.code_version``, read by :func:`parse_args` at the start."""
    return f"# {title}\n\nMachine: {machine()}  \nCode: {version}  \nCommand: `{command}`\n\n"


def parse_args(ap: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The parsed arguments, once ``--out`` is known to be writable: a bench that can't save its table
    fails at once with one line and exit status 2, not with a traceback after the whole run.

    ``args.code_version`` is the code that runs, read here at the start: read at the end, a run that
    takes most of an hour records whatever the checkout moved on to meanwhile (a run of clean 69a787e
    once recorded the next commit, ``-dirty``), and a read after its own output is written reads ``-dirty``."""
    args = ap.parse_args(argv)
    try:
        check_writable(args.out, "file")
    except PseudoError as exc:
        print_error(str(exc))
        raise SystemExit(2) from None
    args.code_version = code_version()
    return args


def run_bench(main: Callable[[], None]) -> None:
    """Run a bench's ``main``: an error that pseudo reports (a missing recipe, an unreadable input) ends
    it with one line and exit status 2, as the ``pseudo`` commands do, not with a traceback."""
    try:
        main()
    except PseudoError as exc:
        print_error(str(exc))
        raise SystemExit(2) from None
