"""``beffroi ingest`` with candidate hot-path fixes applied from outside, for A/B runs.

Not part of Beffroi: the benchmark runs it instead of ``beffroi.cli`` when given
``--ingest-module bench.ingestlib.experiment``; ``BENCH_EXPERIMENT`` (comma-separated) picks
the changes, so their effect is measured with the same harness before the ingestor changes
(the former ``flow`` experiment, a bound on messages in flight, is now the ingestor's own
in-flight gate, ``ingest.mqtt.InflightGate``):

- ``uvloop``: install uvloop also for ``--workers 1`` (the runner only does it for N > 1).
- ``gc``: freeze the start-up heap and collect the young generation less often.
"""

from __future__ import annotations

import gc
import os
import sys

from beffroi import cli


def _apply() -> None:
    """Apply the changes named in ``BENCH_EXPERIMENT`` (at import: spawned workers too)."""
    chosen = {x.strip() for x in os.environ.get("BENCH_EXPERIMENT", "").split(",") if x}
    if "uvloop" in chosen:
        import uvloop

        uvloop.install()
    if "gc" in chosen:
        gc.collect()
        gc.freeze()
        gc.set_threshold(50_000, 20, 100)


_apply()


def main() -> None:
    """Run ``beffroi`` with the given arguments."""
    sys.argv[0] = "beffroi"
    sys.exit(cli.main())


if __name__ == "__main__":
    main()
