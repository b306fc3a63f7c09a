"""The ingest benchmark's streams: what the generator writes, the real decoders accept."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from bench.ingestlib.decode import make_router
from bench.ingestlib.stream import (
    BATCH_KINDS,
    BATCH_READINGS,
    PLACEHOLDER,
    demo_devices,
    ensure_stream,
    iter_filled,
    publisher_files,
    read_records,
)
from devices.decoders.senml import looks_like_senml
from devices.readings import KEY_COLUMNS, TABLE_OF

MESSAGES = 400
PUBLISHERS = 2


@pytest.fixture(scope="module")
def batched(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    d, manifest = ensure_stream(tmp_path_factory.mktemp("work"), messages=MESSAGES, seed=3,
                                publishers=PUBLISHERS, batched=True)
    return d, manifest.readings


def test_every_batched_message_decodes_to_ten_readings(batched: tuple[Path, int]) -> None:
    d, readings = batched
    router = make_router(demo_devices())
    start_us = int((datetime.now(UTC).timestamp() - 3600) * 1e6)
    now = datetime.now(UTC)
    kinds: Counter[str] = Counter()
    keys: set[tuple[object, ...]] = set()
    total = 0
    for i, f in enumerate(publisher_files(d, PUBLISHERS)):
        records = read_records(f)
        for rec, (topic, payload) in zip(records, iter_filled(records, start_us + i),
                                         strict=True):
            name, fmt, _, _ = BATCH_KINDS[rec.kind]
            kinds[name] += 1
            assert rec.readings == BATCH_READINGS
            doc = orjson.loads(payload)
            assert isinstance(doc, list)
            if fmt == "native":
                assert len(doc) == BATCH_READINGS and rec.slots == BATCH_READINGS
                assert not looks_like_senml(doc)
            else:
                assert looks_like_senml(doc) and rec.slots == 0
            routed = router.route(topic.decode(), payload, now)
            assert routed.rejection is None, (name, routed.rejection)
            assert len(routed.readings) == BATCH_READINGS, name
            for r in routed.readings:
                table = TABLE_OF[type(r)]
                key = (table, *(getattr(r, c) for c in KEY_COLUMNS[table]))
                assert key not in keys, f"{name}: two readings with the key {key}"
                keys.add(key)
            total += len(routed.readings)
    assert total == readings == MESSAGES * BATCH_READINGS
    assert set(kinds) == {k[0] for k in BATCH_KINDS}  # every kind of the mix is there
    assert kinds.most_common(1)[0][0] == "native grid/reading"


def test_the_single_stream_is_not_batched(tmp_path: Path) -> None:
    d, manifest = ensure_stream(tmp_path, messages=300, seed=3, publishers=1)
    records = read_records(publisher_files(d, 1)[0])
    assert manifest.readings_per_message == 0
    assert sum(r.readings for r in records) == manifest.readings < 2 * len(records)
    assert all(r.parts[0].count(PLACEHOLDER) == 0 for r in records)
