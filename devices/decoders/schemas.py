"""The native messages' JSON Schemas as files: ``docs/schemas/<segment>-<name>.schema.json``.

They are generated from the declarations of ``devices.decoders.native`` (``json_schemas``);
a test checks that the committed files equal what the declarations give. After changing a
declaration, write them again with ``python -m devices.decoders.schemas [DIRECTORY]``
(default ``docs/schemas``).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import orjson

from devices.decoders.native import json_schemas

log = logging.getLogger(__name__)


def schema_files() -> dict[str, bytes]:
    """File name -> content (indented JSON, ending with a newline) of every native kind."""
    return {
        f"{kind.replace('/', '-')}.schema.json": orjson.dumps(schema, option=orjson.OPT_INDENT_2)
        + b"\n"
        for kind, schema in json_schemas().items()
    }


def write(directory: Path) -> list[Path]:
    """Write every schema file into ``directory`` (created if needed); the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in schema_files().items():
        path = directory / name
        path.write_bytes(content)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> None:
    """Write the schema files."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", nargs="?", type=Path, default=Path("docs/schemas"))
    args = parser.parse_args(argv)
    logging.basicConfig(level="INFO", format="%(message)s")
    for path in write(args.directory):
        log.info("wrote %s", path)


if __name__ == "__main__":
    main()
