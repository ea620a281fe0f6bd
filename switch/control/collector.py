"""The core process's garbage collector, tuned once the node is up.

A loaded core allocates and frees objects at a high rate (each request's box, task, step and
transfers), and keeps a large, slowly changing heap (its modules, its open calls' rows and price
totals). With CPython's defaults a young collection runs every 700 net allocations and a full one
walks that whole heap every few seconds: a third of a loaded core's CPU (bench/core.py). So, once
started: what exists then (modules, classes, settings) is frozen out of every later collection,
and the young generation is allowed to grow larger before it is collected. Cycles are still
collected; only how often and over what changes. Called by `ics serve` and bench/core.py, never by
library code (a test process that starts many nodes would keep their cycles forever).
"""
from __future__ import annotations

import gc

__all__ = ["tune", "YOUNG_OBJECTS"]

# Net new objects between young collections (CPython: 700). A loaded core's requests free
# almost all they make, so the young generation rarely grows this much: a collection every few
# seconds (a pause of tens of ms then) instead of hundreds a second (bench/core.py).
YOUNG_OBJECTS = 50_000


def tune(young: int = YOUNG_OBJECTS) -> None:
    gc.collect()                # what is garbage now is not frozen with the rest
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(young, middle, old)
