"""Keeping the benchmark's own objects out of the timed code's garbage collections."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["frozen_heap"]


@contextmanager
def frozen_heap() -> Iterator[None]:
    """Move every object alive now out of the collector's reach while the block runs.

    The throughput scenario holds each pipeline's messages (100,000 at ``full``) and their
    tallies while it times a relay in-process; every full collection the timed code triggers
    would walk them too, a cost a relay's own process does not have (measured: about 6 us of
    a relay's 36 us CPU per message). Baseline, floor and relay are timed alike under it.
    """
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
