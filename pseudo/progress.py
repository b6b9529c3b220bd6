"""Progress on stderr for long per-video work: a live bar on a terminal, plain lines in logs.

When stderr is not a terminal (a log file, CI, ``nohup``), a line such as
``features: 300/1519 (20%), 61 s elapsed, about 248 s left`` is printed every tenth of the work
or every 30 seconds, whichever comes first, so a long run is never silent. The time left is estimated
from the items after the first, which carries the warm-up (models loaded, texts encoded): timed from the
start, one slow first item of 1,542 once read "about 67747 s left" for a pass that took 4 minutes.
Work done in batches reports its items in bursts, so the items after the first must span a second or more
before the time left is estimated: a burst right after the first item once read "about 0 s left".
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from pseudo.console import stderr_console

#: a plain progress line at least this often (seconds) when stderr is not a terminal
PLAIN_EVERY_SECONDS = 30.0
#: ... and after every this fraction of the items
PLAIN_EVERY_FRACTION = 0.1
#: the time left is estimated once the items after the first span at least this many seconds
RATE_MIN_SECONDS = 1.0


class Bar(Protocol):
    def start(self, total: int) -> None: ...

    def advance(self, label: str) -> None: ...


@dataclass
class LiveBar:
    progress: Progress
    task: TaskID

    def start(self, total: int) -> None:
        self.progress.update(self.task, total=total)

    def advance(self, label: str) -> None:
        self.progress.update(self.task, advance=1, description=label)


@dataclass
class PlainBar:
    """Counts items and prints a line now and then (see the module docstring)."""

    title: str
    console: Console
    total: int | None = None
    every_seconds: float = PLAIN_EVERY_SECONDS
    done: int = 0
    t0: float = field(default_factory=time.perf_counter)
    last_print: float = field(default_factory=time.perf_counter)
    last_count: int = 0
    first_done: float | None = None  # when the first item finished: the rate is measured from here

    def start(self, total: int) -> None:
        self.total = total
        self.console.print(f"{self.title}: {total} to do")

    def _step(self) -> int:
        return max(1, math.ceil((self.total or 0) * PLAIN_EVERY_FRACTION)) if self.total else 50

    def advance(self, label: str) -> None:
        self.done += 1
        now = time.perf_counter()
        if self.first_done is None:
            self.first_done = now
        finished = self.total is not None and self.done >= self.total
        if finished or self.done - self.last_count >= self._step() or now - self.last_print >= self.every_seconds:
            self.console.print(self.line(now))
            self.last_print, self.last_count = now, self.done

    def line(self, now: float) -> str:
        elapsed = now - self.t0
        if not self.total:
            return f"{self.title}: {self.done} done, {elapsed:.0f} s elapsed"
        pct = 100.0 * self.done / self.total
        head = f"{self.title}: {self.done}/{self.total} ({pct:.0f}%), {elapsed:.0f} s elapsed"
        if self.done >= self.total:
            return head
        since_first = now - self.first_done if self.first_done is not None else 0.0
        if self.done < 2 or since_first < RATE_MIN_SECONDS:
            return f"{head}, time left not known yet"
        left = since_first / (self.done - 1) * (self.total - self.done)
        return f"{head}, about {left:.0f} s left"


@contextmanager
def progress_bar(title: str, total: int | None = None, console: Console | None = None) -> Iterator[Bar]:
    con = console or stderr_console()
    if not con.is_terminal:
        bar = PlainBar(title, con)
        if total is not None:
            bar.start(total)
        yield bar
        return
    progress = Progress(
        TextColumn(title, markup=False),
        TextColumn("{task.description}", markup=False, style="dim"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=con,
        transient=False,
    )
    with progress:
        yield LiveBar(progress, progress.add_task("", total=total))
