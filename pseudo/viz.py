"""``pseudo show``: one PNG with the self-similarity matrix, atomic events, proposals and any
pseudo-queries, ground truth or predictions of the video on a shared timeline."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from proposals import ProposalSet

Span = tuple[float, float, str]


def render_summary(
    vid: str,
    duration: float,
    result: ProposalSet,
    out: str | Path,
    overlays: Mapping[str, Sequence[Span]] | None = None,
    max_proposals: int = 20,
) -> Path:
    """Draw the SSM (top), then one timeline row per atomic event track, proposal and overlay."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    overlays = dict(overlays or {})
    props = sorted(result.proposals, key=lambda p: -p.score)[:max_proposals]
    n_rows = 1 + len(props) + sum(max(1, len(v)) for v in overlays.values())
    fig = plt.figure(figsize=(10, 5 + 0.22 * n_rows))
    gs = fig.add_gridspec(2, 1, height_ratios=[5, 0.6 + 0.22 * n_rows], hspace=0.25)
    ax = fig.add_subplot(gs[0])
    ax.imshow(result.ssm, cmap="viridis", extent=(0, duration, duration, 0), aspect="auto")
    for a in result.atoms[1:]:
        ax.axvline(a.start, color="white", lw=0.6, alpha=0.7)
        ax.axhline(a.start, color="white", lw=0.6, alpha=0.7)
    ax.set_title(f"{vid}: self-similarity ({len(result.ssm)} steps), {len(result.atoms)} atomic events")
    ax.set_ylabel("time (s)")

    tl = fig.add_subplot(gs[1], sharex=ax)
    colours = plt.get_cmap("tab20")
    labels: list[str] = []
    y = 0
    for a in result.atoms:
        tl.barh(y, a.end - a.start, left=a.start, color=colours(a.cluster % 20), edgecolor="black", lw=0.3)
    labels.append("atomic events")
    for p in props:
        y += 1
        tl.barh(y, p.end - p.start, left=p.start, color="tab:blue", alpha=0.3 + 0.7 * float(np.clip(p.score, 0, 1)))
        labels.append(f"proposal {p.score:.2f}")
    palette = {"pseudo": "tab:orange", "gt": "tab:green", "pred": "tab:red"}
    for name, spans in overlays.items():
        colour = next((c for k, c in palette.items() if name.startswith(k)), "tab:purple")
        for s, e, text in spans or [(0.0, 0.0, "")]:
            y += 1
            tl.barh(y, e - s, left=s, color=colour)
            if text:
                tl.text(min(e, duration) + duration * 0.005, y, text[:70], va="center", fontsize=7)
            labels.append(name)
    tl.set_yticks(range(len(labels)))
    tl.set_yticklabels(labels, fontsize=7)
    tl.invert_yaxis()
    tl.set_xlim(0, duration)
    tl.set_xlabel("time (s)")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    tmp.replace(out)
    return out
