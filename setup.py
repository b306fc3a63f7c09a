"""Build of Beffroi's package: the ingestor's per-message path compiled to C by mypyc.

Everything else is in pyproject.toml. The modules of ``ingest.hotpath.COMPILED_MODULES`` are
plain typed Python (mypy strict); mypyc turns each into a C extension, which spends about a
third less CPU per message than the interpreter (docs/ingest.md, "Compiled hot path"). The
same sources run unchanged without it: ``BEFFROI_PURE_PYTHON=1`` builds a pure-Python
package (no C compiler needed, slower).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from setuptools import setup

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the build runs setup.py as a script
from ingest.hotpath import COMPILED_MODULES  # stdlib only: nothing is installed yet


def _ext_modules() -> list[object]:
    if os.environ.get("BEFFROI_PURE_PYTHON", "0") != "0":
        return []
    from mypyc.build import mypycify  # the build backend's requirement (pyproject.toml)

    paths = [name.replace(".", "/") + ".py" for name in COMPILED_MODULES]
    return list(mypycify(paths, opt_level="3", group_name="beffroi_compiled"))


setup(ext_modules=_ext_modules())
