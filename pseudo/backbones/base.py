"""The backbone interface and its settings."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol, TypeVar

import numpy as np
import torch
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

Device = Literal["auto", "cpu", "cuda"]
Precision = Literal["auto", "fp32", "fp16", "bf16"]
T = TypeVar("T")
R = TypeVar("R")


class BackboneConfig(BaseModel):
    """Which encoder to build and how to run it.

    ``name`` is a registry name (``hf_clip``, ``open_clip``); ``model`` a Hugging Face id or local
    directory (``hf_clip``) or an open_clip model name (``open_clip``); ``pretrained`` an open_clip
    tag or checkpoint file.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "hf_clip"
    model: str = "openai/clip-vit-base-patch32"
    pretrained: str | None = None
    device: Device = "auto"
    precision: Precision = "auto"
    batch_size: Annotated[int, Field(ge=1)] = 64

    def identity(self) -> dict[str, str | None]:
        """What determines the embeddings (not how fast they are computed). A local model directory or
        checkpoint counts by its contents, not by how its path is spelt (``./m``, ``/abs/m``, ``m/``)."""
        return {"name": self.name, "model": model_identity(self.model), "pretrained": model_identity(self.pretrained)}


#: bytes read from each end of a weights file for its fingerprint
FINGERPRINT_EDGE = 1 << 20


def _file_fingerprint(path: Path, h: Any) -> None:
    size = path.stat().st_size
    h.update(f"{size}:".encode())
    with path.open("rb") as fh:
        h.update(fh.read(FINGERPRINT_EDGE))
        if size > 2 * FINGERPRINT_EDGE:
            fh.seek(size - FINGERPRINT_EDGE)
            h.update(fh.read(FINGERPRINT_EDGE))


def model_identity(model: str | None) -> str | None:
    """A hub id or open_clip tag as it is; a local directory or file as ``local:<fingerprint>`` of its
    files (names, sizes, and the first and last MiB of each), so the same model found through another
    path is the same model, and a changed one is not."""
    if model is None:
        return None
    p = Path(model).expanduser()
    if not p.exists():
        return model
    h = hashlib.sha256()
    files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith("."))
    for f in files:
        h.update(str(f.relative_to(p) if f != p else f.name).encode())
        _file_fingerprint(f, h)
    return f"local:{h.hexdigest()[:16]}"


class Backbone(Protocol):
    """Embeds frames and/or texts into one space; rows are L2-normalised float32."""

    @property
    def dim(self) -> int: ...

    def encode_images(self, frames: NDArray[np.uint8]) -> NDArray[np.float32]: ...

    def encode_texts(self, texts: Sequence[str]) -> NDArray[np.float32]: ...


def quiet_hub() -> None:
    """Keep transformers' and huggingface_hub's per-load progress bars ("Loading weights") and
    chatter away from the user; pseudo reports its own progress. Called before every model load."""
    from huggingface_hub.utils import logging as hub_logging
    from transformers.utils import logging as tf_logging

    tf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    tf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    import huggingface_hub.utils as hub_utils

    hub_utils.disable_progress_bars()  # type: ignore[attr-defined]
    hub_logging.set_verbosity_error()  # type: ignore[no-untyped-call]


def busy_cores(sample_seconds: float = 0.1) -> float:
    """How many cores other work keeps busy right now (Linux ``/proc/stat``; 0 where it cannot tell)."""
    import os
    import time

    def snapshot() -> tuple[int, int]:
        with open("/proc/stat") as fh:
            parts = [int(x) for x in fh.readline().split()[1:]]
        idle = parts[3] + (parts[4] if len(parts) > 4 else 0)
        return sum(parts), idle

    try:
        total0, idle0 = snapshot()
        time.sleep(sample_seconds)
        total1, idle1 = snapshot()
    except (OSError, ValueError, IndexError):
        return 0.0
    span = total1 - total0
    return 0.0 if span <= 0 else (os.cpu_count() or 1) * (1.0 - (idle1 - idle0) / span)


def set_threads(threads: int | Literal["auto"] = "auto") -> int:
    """Set torch's intra-op threads: a number, or ``auto``: one per core that other work leaves free
    (at least one). On a 2-core machine with another busy process, torch's default (one per core)
    trains 2x slower than one thread, while on an idle one two threads are 1.6x faster than one
    (bench/results/train.md). Returns the number set."""
    import os

    n = threads if isinstance(threads, int) else max(1, round((os.cpu_count() or 1) - busy_cores()))
    torch.set_num_threads(max(1, n))
    return torch.get_num_threads()


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch's intra-op threads set to ``n`` inside the block, and put back as they were after it
    (also when the block raises)."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def map_in_lanes(fn: Callable[[T], R], items: Sequence[T], device: torch.device) -> list[R]:
    """``[fn(x) for x in items]``, on a CPU as independent lanes: Python threads that each run whole
    model calls on one torch thread (torch releases the GIL in its kernels), one lane more than
    torch's intra-op threads so that a core is not idle while a lane runs Python between kernels.
    A small model's batch splits poorly across cores; whole batches side by side do not: MiniLM over
    QVHighlights captions on 2 cores ran about 1.2x faster as 3 lanes of 1 thread than as 1 call of
    2 threads (bench/results/caption_features.md). torch's thread count is restored after. ``fn``
    must set its own thread-local modes (``torch.inference_mode``, autocast). On a GPU, with one
    thread (the user's choice on a busy machine) or with one item, it is the plain loop."""
    threads = torch.get_num_threads()
    lanes = threads + 1
    if device.type != "cpu" or threads < 2 or len(items) < 2:
        return [fn(x) for x in items]
    from concurrent.futures import ThreadPoolExecutor

    with torch_threads(1), ThreadPoolExecutor(lanes, thread_name_prefix="pseudo-lane") as pool:
        return list(pool.map(fn, items))


def resolve_device(device: Device) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        from pseudo.errors import PseudoError

        raise PseudoError("device 'cuda' was asked for but no CUDA GPU is available; use --device cpu or auto")
    return torch.device(device)


def resolve_dtype(precision: Precision, device: torch.device) -> torch.dtype:
    """fp32 on CPU; bf16 on a GPU that has it (else fp16) unless told otherwise."""
    if precision == "fp32" or (precision == "auto" and device.type == "cpu"):
        return torch.float32
    if precision == "fp16":
        return torch.float16
    if precision == "bf16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def l2_normalise(x: torch.Tensor) -> NDArray[np.float32]:
    x = x.float()
    out: NDArray[np.float32] = torch.nn.functional.normalize(x, dim=-1).cpu().numpy().astype(np.float32)
    return out
