"""PostgreSQL binary COPY rows built with numpy, without a Python loop per row.

A binary COPY tuple is ``int16`` field count, then per field ``int32`` length (-1 for NULL)
and the value, big-endian. When every row of a block has the same field sizes (a text column
constant over the block, or fixed width), the block is one numpy structured array whose bytes
are exactly the COPY data. Timestamps are microseconds since 2000-01-01 UTC.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
TRAILER = (-1).to_bytes(2, "big", signed=True)
PG_EPOCH_US = 946_684_800 * 1_000_000  # 2000-01-01 in Unix microseconds

# COPY binary value types: numpy big-endian dtypes.
TYPES = {"timestamptz": ">i8", "bigint": ">i8", "integer": ">i4", "smallint": ">i2",
         "real": ">f4", "float8": ">f8", "boolean": "?"}


@dataclass(frozen=True)
class Col:
    """One column of a block: a type and an array (one value per row), a constant, or None
    (NULL in every row). ``text`` values are bytes of one length over the block."""

    type: str
    value: Any


def pg_time(unix_s: npt.NDArray[Any]) -> npt.NDArray[np.int64]:
    """Unix seconds (float or int) to PostgreSQL timestamp microseconds."""
    return (np.asarray(unix_s, dtype=np.float64) * 1e6).round().astype(np.int64) - PG_EPOCH_US


def encode(cols: Sequence[Col], n: int) -> bytes:
    """``n`` COPY tuples (no header) of the columns."""
    fields: list[tuple[str, str]] = [("nf", ">i2")]
    for i, c in enumerate(cols):
        fields.append((f"l{i}", ">i4"))
        if c.value is None:
            continue
        if c.type == "text":
            width = (len(c.value) if isinstance(c.value, bytes)
                     else np.asarray(c.value).dtype.itemsize)
            fields.append((f"v{i}", f"S{width}"))
        else:
            fields.append((f"v{i}", TYPES[c.type]))
    arr = np.empty(n, dtype=np.dtype(fields))
    arr["nf"] = len(cols)
    for i, c in enumerate(cols):
        if c.value is None:
            arr[f"l{i}"] = -1
            continue
        arr[f"l{i}"] = arr.dtype[f"v{i}"].itemsize
        arr[f"v{i}"] = c.value
    return arr.tobytes()
