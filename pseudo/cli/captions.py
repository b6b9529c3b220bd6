"""Commands of the caption stage: ``captions`` (pseudo-queries) and ``weak`` (weak labels)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from pseudo.cli.app import (
    ConfigOpt,
    DataRoot,
    JsonFlag,
    app,
    friendly,
    merge_section,
    overrides,
    print_summary,
    yaml_dict,
)
from pseudo.console import stderr_console


@app.command("captions")
@friendly
def captions_cmd(
    proposals: Annotated[Path, typer.Option("--proposals", help="Proposals JSONL from `pseudo proposals`.")],
    out: Annotated[Path, typer.Option("--out", help="Pseudo-annotation JSONL to write.")] = Path("pseudo_train.jsonl"),
    features_dir: Annotated[
        Path | None, typer.Option("--features-dir", help="The feature store the proposals came from.")
    ] = None,
    captioner: Annotated[str | None, typer.Option("--captioner", help="external or blip.")] = None,
    captions: Annotated[Path | None, typer.Option("--captions", help="Folder/zip of captions (external).")] = None,
    clip_seconds: Annotated[float | None, typer.Option("--clip-seconds", help="Seconds per caption clip.")] = None,
    video_dir: Annotated[Path | None, typer.Option("--video-dir", help="Videos to caption (blip).")] = None,
    blip_model: Annotated[str | None, typer.Option("--blip-model", help="BLIP HF id or local directory.")] = None,
    cache: Annotated[Path | None, typer.Option("--cache", help="Frame-caption cache directory (blip).")] = None,
    query_type: Annotated[str | None, typer.Option("--query-type", help="natural or simple (nouns+verbs).")] = None,
    selection: Annotated[str | None, typer.Option("--selection", help="contrastive or centre.")] = None,
    frames: Annotated[
        str | None, typer.Option("--frames", help="Frames captioned per proposal: even or centre.")
    ] = None,
    num_frames: Annotated[int | None, typer.Option("--num-frames", help="Frames per proposal (even).")] = None,
    join_long: Annotated[
        bool | None, typer.Option("--join-long/--no-join-long", help="Join captions of long ones.")
    ] = None,
    compare: Annotated[
        str | None, typer.Option("--compare", help="DATASET:SPLIT whose real annotations the summary shows beside.")
    ] = None,
    config: ConfigOpt = None,
    data_root: DataRoot = None,
    as_json: JsonFlag = False,
) -> None:
    """Caption proposals and write pseudo-queries as QVHighlights-style JSONL (source: pseudo)."""
    from pseudo.caption_stage import CaptionsRunConfig, label_stats, run_captions
    from pseudo.data import load_dataset
    from pseudo.features import open_features
    from pseudo.progress import progress_bar
    from pseudo.settings import validate

    data = yaml_dict(config)
    blip = {"model": blip_model} if blip_model else {}
    merge_section(
        data,
        "captioner",
        overrides(
            name=captioner,
            captions=str(captions) if captions else None,
            clip_seconds=clip_seconds,
            video_dir=str(video_dir) if video_dir else None,
            cache=str(cache) if cache else None,
            blip=blip or None,
        ),
    )
    merge_section(
        data,
        "queries",
        overrides(
            query_type=query_type, selection=selection, frames=frames, num_frames=num_frames, join_long=join_long
        ),
    )
    cfg = validate(CaptionsRunConfig, data, str(config or "options"))
    reference = None
    if compare:  # loaded first, so a bad name fails before any work
        name, _, split = compare.partition(":")
        reference = load_dataset(name, split or "train", data_root=data_root)
    features = open_features(features_dir) if features_dir is not None else None
    with progress_bar("captions") as bar:
        summary, queries = run_captions(proposals, out, cfg, features, on_start=bar.start, on_video=bar.advance)
    stats = label_stats(queries, reference)
    _print_stats(stats)
    print_summary("captions", summary, as_json, {"out": str(out), "stats": stats})


def _print_stats(stats: dict[str, Any]) -> None:
    con = stderr_console()
    con.print(
        f"{stats['queries']} pseudo-queries over {stats['videos']} videos; mean {stats['mean_query_words']} words, "
        f"mean moment {stats['mean_moment_seconds']} s; {stats['queries_shared_across_videos_pct']}% of queries "
        "also appear for another video"
    )
    ref = stats.get("reference", {})
    for key, title in (("query_words_hist", "query length (words)"), ("moment_seconds_hist", "moment length (s)")):
        con.print(f"{title:>22}: " + "  ".join(f"{k}: {v}%" for k, v in stats[key].items()))
        if ref:
            con.print(f"{'real split':>22}: " + "  ".join(f"{k}: {v}%" for k, v in ref[key].items()))


@app.command("weak")
@friendly
def weak_cmd(
    proposals: Annotated[Path, typer.Option("--proposals", help="Proposals JSONL from `pseudo proposals`.")],
    features_dir: Annotated[Path, typer.Option("--features-dir", help="The feature store the proposals came from.")],
    out: Annotated[Path, typer.Option("--out", help="Weak-label JSONL to write.")] = Path("weak_train.jsonl"),
    dataset: Annotated[str | None, typer.Option("--dataset", help="Take sentences from this benchmark split.")] = None,
    split: Annotated[str, typer.Option("--split", help="Split of --dataset.")] = "train",
    sentences: Annotated[
        Path | None, typer.Option("--sentences", help="QVHighlights-style JSONL of sentences (windows ignored).")
    ] = None,
    data_root: DataRoot = None,
    as_json: JsonFlag = False,
) -> None:
    """Assign real sentences without timestamps to their best-matching proposal (weak supervision)."""
    from pseudo.caption_stage import run_weak
    from pseudo.data import load_dataset
    from pseudo.data.benchmarks import load_qvh_jsonl
    from pseudo.features import open_features
    from pseudo.settings import ConfigError

    if (dataset is None) == (sentences is None):
        raise ConfigError("give exactly one of --dataset (with --split) or --sentences")
    sents = load_dataset(dataset, split, data_root=data_root) if dataset else load_qvh_jsonl([sentences])  # type: ignore[list-item]
    summary, labels = run_weak(sents, proposals, open_features(features_dir), out)
    conf = [q.meta["confidence"] for q in labels]
    mean_conf = round(sum(conf) / len(conf), 4) if conf else 0.0
    stderr_console().print(f"{len(labels)} weak labels, mean confidence {mean_conf}")
    print_summary("weak", summary, as_json, {"out": str(out), "labels": len(labels), "mean_confidence": mean_conf})
