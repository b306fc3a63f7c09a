"""Run an ingestor inside the test process, with its own share group and session."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from typing import Any

from beffroi.settings import Settings
from beffroi.stack import Stack
from ingest.service import BrokerConfig, Ingestor
from tests.integration.mqtt_helpers import purge_session


def ingest_settings(settings: Settings, **overrides: Any) -> Settings:
    """Settings for a test ingestor: unique client id and share group, no metrics port."""
    tag = secrets.token_hex(3)
    values: dict[str, Any] = {
        "ingest_client_id": f"test-ingest-{tag}",
        "ingest_share_group": f"test{tag}",
        "ingest_metrics_port": 0,
        "ingest_batch_max_age_ms": 50,
        # A topic prefix of its own, so traffic of other tests or tools is not seen.
        "topic_prefix": f"t{tag}",
    }
    values.update(overrides)
    return settings.model_copy(update=values)


def broker_config(stack: Stack) -> BrokerConfig:
    """A broker account for test ingestors: the admin one, which may read any test prefix."""
    host, port = stack.settings.broker_address()
    user, password = stack.mqtt_credentials("admin")
    return BrokerConfig(host, port, user, password)


@contextlib.asynccontextmanager
async def running_ingestor(stack: Stack, settings: Settings, db_url: str, *,
                           worker: int = 0, purge: bool = True) -> AsyncIterator[Ingestor]:
    """Start an ingestor, yield it once subscribed, stop it gracefully afterwards."""
    ing = Ingestor(settings, db_url=db_url, broker=broker_config(stack), worker=worker,
                   progress=False)
    stop = asyncio.Event()
    task = asyncio.create_task(ing.run(stop))
    started = asyncio.create_task(ing.wait_started())
    done, _ = await asyncio.wait({task, started}, timeout=30,
                                 return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()  # raises the start-up error
    if started not in done:
        raise TimeoutError("ingestor did not subscribe within 30s")
    try:
        yield ing
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=60)
        if purge:
            await asyncio.to_thread(purge_session, stack,
                                    f"{settings.ingest_client_id}-{worker}")
