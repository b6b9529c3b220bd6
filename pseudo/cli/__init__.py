"""The ``pseudo`` command: a thin layer over the library; data on stdout, logs on stderr."""

from pseudo.cli import evaluation, localizer, stages  # noqa: F401  (register the commands)
from pseudo.cli.app import app


def main() -> None:
    app()


__all__ = ["app", "main"]
