"""The per-message path runs compiled (mypyc, setup.py), and never from a stale build."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import pytest

from ingest import hotpath

PURE = os.environ.get("BEFFROI_PURE_PYTHON", "0") != "0"


@pytest.mark.skipif(PURE, reason="built with BEFFROI_PURE_PYTHON: nothing is compiled")
def test_the_per_message_path_is_compiled() -> None:
    assert hotpath.compiled() == list(hotpath.COMPILED_MODULES)
    assert hotpath.describe().startswith("per-message path: compiled (")


def test_no_compiled_module_is_older_than_its_source() -> None:
    assert hotpath.stale() == [], "run `make venv` to rebuild the C extensions"


@pytest.mark.skipif(PURE, reason="built with BEFFROI_PURE_PYTHON: nothing is compiled")
def test_an_edited_source_shows_as_stale() -> None:
    ext = Path(importlib.import_module("ingest.batch").__file__ or "")
    source = ext.parent / "batch.py"
    before = source.stat()
    try:
        os.utime(source, ns=(before.st_atime_ns, ext.stat().st_mtime_ns + 10**9))
        assert hotpath.stale() == ["ingest.batch"]
    finally:
        os.utime(source, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert hotpath.stale() == []
