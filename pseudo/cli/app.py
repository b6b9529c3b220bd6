"""The typer app and what every command shares: error display, JSON output, option types."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
from pydantic import BaseModel

from pseudo.console import print_error, print_warning, stderr_console
from pseudo.errors import PseudoError

app = typer.Typer(
    name="pseudo",
    help="Video moment retrieval without human timestamps.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

#: failures listed one per line in a summary before the rest are only counted
SHOWN_FAILURES = 5


def _version(value: bool) -> None:
    if value:
        from pseudo import __version__
        from pseudo.settings import code_version

        sys.stdout.write(f"pseudo {__version__} ({code_version()})\n")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
    threads: Annotated[
        str,
        typer.Option(
            "--threads",
            envvar="PSEUDO_THREADS",
            help="Torch CPU threads: a number, or auto (one per core that other work leaves free).",
        ),
    ] = "auto",
) -> None:
    """Video moment retrieval without human timestamps."""
    from pseudo.backbones.base import set_threads
    from pseudo.settings import ConfigError

    if threads != "auto" and not (threads.isdigit() and int(threads) >= 1):
        print_error(str(ConfigError(f"--threads must be auto or a whole number of at least 1, got {threads!r}")))
        raise typer.Exit(2)
    set_threads("auto" if threads == "auto" else int(threads))


JsonFlag = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]
DataRoot = Annotated[
    Path | None,
    typer.Option("--data-root", help="Benchmark data directory (default: $PSEUDO_DATA_ROOT or ../shared/data)."),
]


P = ParamSpec("P")
M = TypeVar("M", bound=BaseModel)


def friendly(fn: Callable[P, None]) -> Callable[P, None]:
    """Show user errors (bad files, unknown names) as one line on stderr and exit 2.

    File-system errors that no check caught (a disk that fills up, a file removed mid-run) are shown
    the same way, with the path the system names, instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            fn(*args, **kwargs)
        except PseudoError as exc:
            print_error(str(exc))
            raise typer.Exit(2) from None
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename else ""
            print_error(f"{where}{exc.strerror or exc}; check the path and its permissions")
            raise typer.Exit(2) from None

    return wrapper


def emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2) + "\n")


def print_summary(title: str, summary: Any, as_json: bool, extra: dict[str, Any] | None = None) -> None:
    """A stage's counts, its first failures (the rest counted), and the JSON on stdout when asked.

    A stage that produced nothing although it had work is an error (exit 2), not a quiet success."""
    con = stderr_console()
    con.print(
        f"{title}: {len(summary.done)} done, {len(summary.skipped)} skipped (cached), "
        f"{len(summary.failed)} failed in {summary.seconds:.1f}s"
    )
    failed = list(summary.failed.items())
    for vid, err in failed[:SHOWN_FAILURES]:
        print_warning(f"{vid} failed: {err}", con)
    if len(failed) > SHOWN_FAILURES:
        con.print(f"... and {len(failed) - SHOWN_FAILURES} more failures (all listed in the JSON summary)")
    if as_json:
        emit_json({**summary.to_json(), **(extra or {})})
    if failed and not summary.done and not summary.skipped:
        raise PseudoError(f"{title}: every one of the {len(failed)} inputs failed; nothing was produced (see above)")


def overrides(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def merge_section(base: dict[str, Any], section: str, values: dict[str, Any]) -> None:
    if values:
        base.setdefault(section, {}).update(values)


ConfigOpt = Annotated[Path | None, typer.Option("--config", help="YAML with the stage settings; flags override it.")]
FpsOpt = Annotated[float | None, typer.Option("--fps", help="Frames sampled per second (default 1).")]
NumFramesOpt = Annotated[int | None, typer.Option("--num-frames", help="Sample this many frames per video instead.")]
MaxSideOpt = Annotated[int | None, typer.Option("--max-side", help="Resize while decoding to this longer side.")]
BackboneOpt = Annotated[str | None, typer.Option("--backbone", help="Backbone registry name: hf_clip, open_clip.")]
ModelOpt = Annotated[str | None, typer.Option("--model", help="HF id or local dir (hf_clip); model name (open_clip).")]
PretrainedOpt = Annotated[str | None, typer.Option("--pretrained", help="open_clip pretrained tag or checkpoint.")]
DeviceOpt = Annotated[str | None, typer.Option("--device", help="auto, cpu or cuda.")]
PrecisionOpt = Annotated[str | None, typer.Option("--precision", help="auto, fp32, fp16 or bf16.")]
BatchOpt = Annotated[int | None, typer.Option("--batch-size", help="Frames per forward pass.")]


def features_section(
    fps: float | None,
    num_frames: int | None,
    max_side: int | None,
    backbone: str | None,
    model: str | None,
    pretrained: str | None,
    device: str | None,
    precision: str | None,
    batch_size: int | None,
) -> dict[str, Any]:
    section: dict[str, Any] = {}
    sampling = overrides(fps=fps, num_frames=num_frames, max_side=max_side)
    if num_frames is not None and fps is None:
        sampling["fps"] = None
    merge_section(section, "sampling", sampling)
    merge_section(
        section,
        "backbone",
        overrides(
            name=backbone, model=model, pretrained=pretrained, device=device, precision=precision, batch_size=batch_size
        ),
    )
    return section


def section_config(model: type[M], section: str, data: dict[str, Any], config: Path | None) -> M:
    """Validate one section of a stage's settings; an error names the file (or "options") and the
    section's key (``c.yaml: proposals.temprature: unknown key``)."""
    from pydantic import ConfigDict, create_model

    from pseudo.settings import validate

    fields: dict[str, Any] = {section: (model, ...)}
    wrapper = create_model(f"{model.__name__}Section", __config__=ConfigDict(extra="forbid"), **fields)
    validated = validate(wrapper, {section: data}, str(config or "options"))
    out: M = getattr(validated, section)
    return out


def stage_sections(path: Path | None, *sections: str) -> dict[str, Any]:
    """The named sections of a YAML file (a recipe, with its bases, or any file with those sections)."""
    if path is None:
        return {}
    from pseudo.settings import load_layers

    data = load_layers(path).data
    return {k: data[k] for k in sections if k in data}
