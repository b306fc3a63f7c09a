"""Recorded streams: JSON Lines files, and ``mosquitto_sub -v`` captures.

One message per line::

    {"offset": 12.0, "topic": "city/wifi/ap-1/stats", "qos": 1, "payload": "{\\"ts\\": ...}"}

``offset`` is seconds after the start of the recording; ``payload`` is the payload as UTF-8
text, or ``payload_b64`` (standard base64) when it is not valid UTF-8; ``content_type`` is
present when the message carries an MQTT 5 content type (SenML). Writing is deterministic:
the same stream gives the same bytes.

Replay also reads captures of real traffic taken with ``mosquitto_sub -v`` (``topic payload``
per line) and with ``mosquitto_sub -F '%U %t %p'`` (Unix time with fraction, topic, payload;
the times give the offsets). Payloads there must be on one line.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from simulators.model import SimMessage

_UNIX_RE = re.compile(r"^\d{9,11}(\.\d+)?$")


class RecordingError(ValueError):
    """A line of a recording cannot be read; the message gives the line number."""


def message_line(m: SimMessage) -> str:
    """The JSON Lines form of one message (without the newline)."""
    obj: dict[str, object] = {"offset": round(m.offset, 3), "topic": m.topic, "qos": m.qos}
    try:
        obj["payload"] = m.payload.decode("utf-8")
    except UnicodeDecodeError:
        obj["payload_b64"] = base64.b64encode(m.payload).decode("ascii")
    if m.content_type:
        obj["content_type"] = m.content_type
    return json.dumps(obj, ensure_ascii=False, separators=(", ", ": "))


def write_jsonl(messages: Iterable[SimMessage], out: IO[str]) -> int:
    """Write messages as JSON Lines; return how many."""
    n = 0
    for m in messages:
        out.write(message_line(m))
        out.write("\n")
        n += 1
    return n


def _jsonl(line: str, lineno: int) -> SimMessage:
    try:
        obj = json.loads(line)
        topic = obj["topic"]
        if "payload_b64" in obj:
            payload = base64.b64decode(obj["payload_b64"], validate=True)
        else:
            payload = str(obj["payload"]).encode("utf-8")
        qos = int(obj.get("qos", 1))
        offset = float(obj.get("offset", 0.0))
    except (ValueError, KeyError, TypeError) as exc:
        raise RecordingError(f"line {lineno}: not a recorded message ({exc})") from None
    if not isinstance(topic, str) or not topic or qos not in (0, 1, 2) or offset < 0:
        raise RecordingError(f"line {lineno}: bad topic, qos or offset")
    ctype = obj.get("content_type")
    return SimMessage(offset, topic, qos, payload, ctype if isinstance(ctype, str) else None)


def read_recording(path: Path, *, qos: int = 1, rate: float = 100.0) -> Iterator[SimMessage]:
    """Messages of a JSON Lines recording or a ``mosquitto_sub`` capture, in file order.

    Capture lines without times are spaced ``1 / rate`` seconds apart and sent with ``qos``.
    """
    first_unix: float | None = None
    n = 0
    with path.open(encoding="utf-8", errors="surrogateescape") as fh:
        for lineno, raw in enumerate(fh, 1):
            line = raw.rstrip("\r\n")
            if not line.strip():
                continue
            if line.startswith("{"):
                yield _jsonl(line, lineno)
                n += 1
                continue
            head, _, rest = line.partition(" ")
            offset = n / rate
            if _UNIX_RE.match(head) and rest:
                unix = float(head)
                first_unix = unix if first_unix is None else first_unix
                offset = max(0.0, unix - first_unix)
                head, _, rest = rest.partition(" ")
            if not head or ("/" not in head and "+" in head):
                raise RecordingError(f"line {lineno}: expected 'topic payload'")
            payload = rest.encode("utf-8", errors="surrogateescape")
            yield SimMessage(offset, head, qos, payload)
            n += 1


__all__ = ["RecordingError", "message_line", "read_recording", "write_jsonl"]
