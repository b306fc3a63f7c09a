"""Refresh the dashboard's third-party files from the npm registry (``make dashboard-vendor``).

Only this refresh needs Node's ``npm``; running the dashboard does not. Each package is
fetched at the pinned version with ``npm pack``, the listed files are copied, and a
manifest records name, version, licence and the SHA-256 of every copied file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

log = logging.getLogger("dashboard_vendor")

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "api" / "dashboard" / "static" / "vendor"
TEST_ONLY = ROOT / "tests" / "browser" / "vendor"

#: (package, pinned version, files of the package to copy, destination directory)
PACKAGES: list[tuple[str, str, list[str], Path]] = [
    ("uplot", "1.6.32", ["dist/uPlot.iife.min.js", "dist/uPlot.min.css", "LICENSE"],
     SHIPPED / "uplot"),
    ("leaflet", "1.9.4", ["dist/leaflet.js", "dist/leaflet.css", "LICENSE"],
     SHIPPED / "leaflet"),
    ("axe-core", "4.11.4", ["axe.min.js", "LICENSE"], TEST_ONLY / "axe-core"),
]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch(name: str, version: str, files: list[str], dest: Path) -> dict[str, object]:
    """Copy ``files`` of ``name@version`` into ``dest``; return its manifest entry."""
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(["npm", "pack", f"{name}@{version}", "--json", "--silent"],
                             cwd=tmp, check=True, capture_output=True, text=True).stdout
        tgz = Path(tmp) / json.loads(out)[0]["filename"]
        with tarfile.open(tgz) as tar:
            # Only the listed regular files are read, so no archive path is ever written
            # (Debian 12's Python has no extraction filter).
            def read(rel: str) -> bytes:
                member = tar.getmember(f"package/{rel}")
                stream = tar.extractfile(member) if member.isfile() else None
                if stream is None:
                    raise SystemExit(f"{name}: {rel} is not a regular file")
                return stream.read()

            meta = json.loads(read("package.json"))
            if meta["version"] != version:
                raise SystemExit(f"{name}: got {meta['version']}, wanted {version}")
            contents = {rel: read(rel) for rel in files}
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        shipped = {}
        for rel in files:
            target = dest / Path(rel).name
            target.write_bytes(contents[rel])
            shipped[target.relative_to(ROOT).as_posix()] = _sha256(target)
    log.info("%s %s: %d files", name, version, len(shipped))
    return {"name": name, "version": version, "license": meta.get("license"),
            "homepage": meta.get("homepage"), "files": shipped}


def main() -> int:
    """Fetch every package and write one manifest per destination root."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    manifests: dict[Path, list[dict[str, object]]] = {}
    for name, version, files, dest in PACKAGES:
        manifests.setdefault(dest.parent, []).append(fetch(name, version, files, dest))
    for root, entries in manifests.items():
        (root / "MANIFEST.json").write_text(
            json.dumps({"packages": entries}, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
