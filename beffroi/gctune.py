"""Garbage-collector tuning for the long-running processes (ingestor, API)."""

from __future__ import annotations

import gc


def tune_gc(threshold: int) -> None:
    """Run Python's cyclic garbage collector every ``threshold`` allocations instead of 700.

    The hot paths allocate many short-lived objects without reference cycles (rows, payload
    bytes, futures, response dicts); at the default threshold the collector keeps walking
    what is alive for nothing, which costs CPU and adds pauses to the latency tail. What
    exists at start-up is frozen out of its sight. ``0`` keeps Python's defaults.
    """
    if threshold <= 0:
        return
    gc.collect()
    gc.freeze()
    gc.set_threshold(threshold, 20, 50)
