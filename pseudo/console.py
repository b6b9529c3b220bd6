"""Human-facing output: logs, tables and progress go to stderr; data goes to stdout.

The console never interprets markup: queries, file names and error messages are printed exactly
as they are (``[draft].mp4`` stays ``[draft].mp4``); our own colour comes from styles, not tags.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rich.console import Console
from rich.table import Table
from rich.text import Text


def stderr_console() -> Console:
    con = Console(stderr=True, highlight=False, markup=False)
    if not con.is_terminal:  # logs and CI: wide enough that tables do not wrap
        con = Console(stderr=True, highlight=False, markup=False, width=140)
    return con


def labelled(label: str, style: str, message: str) -> Text:
    """``label: message`` with only the label styled; the message is shown verbatim."""
    return Text.assemble((f"{label}: ", style), message)


def print_error(message: str, con: Console | None = None) -> None:
    (con or stderr_console()).print(labelled("error", "bold red", message), soft_wrap=True)


def print_warning(message: str, con: Console | None = None) -> None:
    (con or stderr_console()).print(labelled("warning", "yellow", message), soft_wrap=True)


def metrics_table(title: str, rows: Mapping[str, Mapping[str, float]], columns: Sequence[str] | None = None) -> Table:
    """One row per method/run, one column per metric, two decimals."""
    cols = list(columns) if columns else list(dict.fromkeys(k for r in rows.values() for k in r))
    table = Table(title=Text(title))
    table.add_column("")
    for c in cols:
        table.add_column(c, justify="right")
    for name, vals in rows.items():
        table.add_row(Text(name), *(f"{vals[c]:.2f}" if c in vals else "-" for c in cols))
    return table


def markdown_table(rows: Sequence[Mapping[str, float | str]], columns: Sequence[str]) -> str:
    """Rows as a GitHub markdown table (floats with two decimals), for bench/results."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [f"{v:.2f}" if isinstance(v, float) else str(v) for v in (row.get(c, "-") for c in columns)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
