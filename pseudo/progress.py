"""Progress bars on stderr for long per-video work."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from pseudo.console import stderr_console


@dataclass
class Bar:
    progress: Progress
    task: TaskID

    def start(self, total: int) -> None:
        self.progress.update(self.task, total=total)

    def advance(self, label: str) -> None:
        self.progress.update(self.task, advance=1, description=label)


@contextmanager
def progress_bar(title: str, total: int | None = None) -> Iterator[Bar]:
    progress = Progress(
        TextColumn(f"{title} [dim]{{task.description}}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=stderr_console(),
        transient=False,
    )
    with progress:
        yield Bar(progress, progress.add_task("", total=total))
