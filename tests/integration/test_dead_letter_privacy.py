"""Refused messages carrying MACs and plates, through the broker and the ingestor: neither the
dead_letters table nor the ingestor's logs keep any of them, in any spelling."""

from __future__ import annotations

import asyncio
import json
import logging
import re

import psycopg
import pytest

from beffroi.settings import Settings
from beffroi.stack import Stack
from tests.integration.ingest_helpers import await_committed, ingest_settings, running_ingestor
from tests.integration.mqtt_helpers import Publisher, register

pytestmark = pytest.mark.stack

MACS = [
    "a4:c3:f0:85:1b:2e", "a4-c3-f0-85-1b-2e", "a4c3.f085.1b2e", "a4c3f0851b2e",
    "A4:C3:F0:85:1B:2E", "A4-C3-F0-85-1B-2E", "A4C3.F085.1B2E", "A4C3F0851B2E",
]  # fmt: skip
PLATES = ["AB-123-CD", "AB123CD", "ab-123-cd", "1234 AB 62", "1234-AB-62", "1234AB62"]


def _squeeze(text: str) -> str:
    return re.sub(r"[^0-9a-z]", "", text.lower())


def _messages(prefix: str, ap: str, pm: str, spot: str, linky: str,
              secret: str) -> list[tuple[str, bytes]]:
    """Messages that are all refused, each carrying ``secret`` somewhere."""
    s = json.dumps(secret)
    wifi, pay = f"{prefix}/wifi/{ap}", f"{prefix}/parking/{pm}/transaction"
    docs = [
        (f"{wifi}/sessions", f'{{"client_mac": {s}, "event": "roaming"}}'),
        (f"{wifi}/sessions", f'{{"station": {s}, "event": "associated"}}'),
        (f"{wifi}/sessions", f'{{"client_mac": {s}, "event": "associated", "rssi": 5}}'),
        (f"{wifi}/stats", f'[{{"clients": -1, "seen": [[{{"id": {s}}}, {s}]]}}]'),
        (f"{wifi}/stats", f'[{{"bn": {s}, "n": "clients", "v": -1}}]'),
        (pay, f'{{"transaction_id": "T1", "plate": {s}, "amount_cents": -1, "duration_s": 60, '
              '"payment_method": "card"}'),
        (pay, f'{{"transaction_id": {s}, "amount_cents": 100, "duration_s": 60, '
              f'"payment_method": {s}}}'),
        (pay, f'{{{s}: 1}}'),
        (pay, f'{{"transaction_id": "T1", "plate": {s}'),  # truncated
        (pay, f'{{"plate": {s[:-2]}'),  # truncated inside the value
        (f"{prefix}/parking/{spot}/state", f'{{"state": "parked", "plate": {s}}}'),
        (f"{prefix}/grid/{linky}/reading", f'{{"power_w": "high", "note": {s}}}'),
        (f"{prefix}/parking/{secret}/transaction", '{"amount_cents": 1}'),
        (f"{prefix}/wifi/{secret}/sessions", '{"event": "associated"}'),
    ]
    out = [(t, d.encode()) for t, d in docs]
    out.append((pay, f'{{"plate": {s}, "x": "'.encode() + b"\xff\xfe" + b'"}'))  # not UTF-8
    out.append((f"{wifi}/sessions", secret.encode() + b"\xc3"))
    return out


async def test_dead_letters_and_logs_keep_no_mac_nor_plate(
        stack: Stack, settings: Settings, db_url: str, uid: str,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    s = ingest_settings(settings)
    ap, pm, spot, linky = f"{uid}-ap", f"{uid}-pm", f"{uid}-spot", f"{uid}-linky"
    register(db_url, uid, {ap: "wifi_ap", pm: "parking_meter", spot: "parking_spot",
                           linky: "grid_meter"})
    secrets = MACS + PLATES
    messages = [m for secret in secrets
                for m in _messages(s.topic_prefix, ap, pm, spot, linky, secret)]
    pub = Publisher.as_role(stack, "admin")
    try:
        async with running_ingestor(stack, s, db_url) as ing:
            await asyncio.to_thread(pub.publish_many, messages)
            await await_committed(ing, len(messages), timeout=60, what="every message committed")
            assert ing.rejected == len(messages)
    finally:
        pub.close()
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT topic, coalesce(device_id, ''), reason, detail, payload FROM dead_letters "
            "WHERE topic LIKE %s", (f"{s.topic_prefix}/%",)).fetchall()
    assert len(rows) == len(messages)
    stored = "\n".join(f"{t} {d} {r} {det} {bytes(p).decode('utf-8', 'replace')}"
                       for t, d, r, det, p in rows)
    logs = caplog.text
    assert f"{s.ingest_client_id}-0" in logs  # the ingestor's own records were captured
    for secret in secrets:
        for where, text in (("dead_letters", stored), ("logs", logs)):
            assert secret.lower() not in text.lower(), f"{secret!r} kept in {where}"
            assert _squeeze(secret) not in _squeeze(text), f"{secret!r} kept in {where}"
    # What is kept still explains the refusal: documented values and placeholders.
    assert '"event":"<str len=7 class=alpha>"' in stored  # "roaming"
    assert '"amount_cents":-1' in stored and '"payment_method":"card"' in stored
    assert "<payload not kept: " in stored
