"""The modules of the per-message path that the build compiles to C, and whether they are.

``setup.py`` compiles ``COMPILED_MODULES`` with mypyc: the same typed sources, about a third
less CPU per message (docs/ingest.md, "Compiled hot path"). A package built with
``BEFFROI_PURE_PYTHON=1`` runs them as plain Python. This module imports nothing of Beffroi
at import time, so that ``setup.py`` can read the list before anything is installed.
"""

from __future__ import annotations

import importlib
import importlib.machinery
from pathlib import Path
from typing import Final

#: The modules a message goes through between the socket and the COPY, compiled. Not here:
#: the asyncio parts (ingest.service, ingest.mqtt), where compiling gave no gain measurable
#: beyond run-to-run spread (docs/ingest.md) and costs what they rely on (a dataclass's
#: ``__dict__``, exceptions derived from built-in ones other than ``Exception``); and
#: devices.decoders.declarations, whose msgspec ``Struct`` classes msgspec must make itself.
COMPILED_MODULES: Final = (
    "devices.errors",
    "devices.readings",
    "devices.families",
    "devices.privacy",
    "devices.mqttwire",
    "devices.decoders.common",
    "devices.decoders.native",
    "devices.decoders.senml",
    "devices.decoders.tic",
    "devices.decoders.chirpstack",
    "ingest.router",
    "ingest.batch",
    "ingest.lastseen",
    "ingest.writer",
)

_SUFFIXES: Final = tuple(importlib.machinery.EXTENSION_SUFFIXES)


def compiled() -> list[str]:
    """The modules of ``COMPILED_MODULES`` loaded from a C extension."""
    out = []
    for name in COMPILED_MODULES:
        path = importlib.import_module(name).__file__ or ""
        if path.endswith(_SUFFIXES):
            out.append(name)
    return out


def stale() -> list[str]:
    """Compiled modules whose source beside them changed after the build (an editable
    install runs the extension, not the edited source, until ``make venv`` rebuilds it)."""
    out = []
    for name in compiled():
        ext = Path(importlib.import_module(name).__file__ or "")
        source = ext.parent / (ext.name.split(".", 1)[0] + ".py")
        if source.exists() and source.stat().st_mtime > ext.stat().st_mtime:
            out.append(name)
    return out


def describe() -> str:
    """One line for the ingestor's start-up log."""
    done = compiled()
    if not done:
        return ("per-message path: pure Python (built with BEFFROI_PURE_PYTHON; about a "
                "third more CPU per message)")
    if len(done) < len(COMPILED_MODULES):
        missing = sorted(set(COMPILED_MODULES) - set(done))
        return f"per-message path: compiled, except {', '.join(missing)}"
    return f"per-message path: compiled ({len(done)} modules, mypyc)"
