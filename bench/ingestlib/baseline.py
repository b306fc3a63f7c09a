"""The common approach, as most tutorials show it: a paho callback, one INSERT and one commit
per message (``python -m bench.ingestlib.baseline``).

It is given the ingestor's own decoders (so the payload formats are understood the same way);
what differs is the write path: a row at a time, a transaction per message, and the PUBACK
sent by paho when the callback returns.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import threading
import time
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from psycopg import sql

from bench.ingestlib.decode import make_router
from bench.ingestlib.stream import demo_devices
from devices.readings import READING_OF_TABLE, TABLE_OF


def _insert_sql(table: str) -> sql.Composed:
    cols = READING_OF_TABLE[table]._fields
    return sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, cols)),
        sql.SQL(", ").join(sql.Placeholder() * len(cols)))


def main() -> None:
    """Entry point."""
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--client-id", required=True)
    p.add_argument("--count", type=int, required=True, help="exit after this many messages")
    p.add_argument("--topic", action="append", required=True)
    a = p.parse_args()
    conn = psycopg.connect(os.environ["BENCH_DATABASE_URL"], application_name="bench-baseline")
    router = make_router(demo_devices())
    inserts = {t: _insert_sql(t) for t in READING_OF_TABLE}
    done = threading.Event()
    state: dict[str, Any] = {"messages": 0, "readings": 0, "rejected": 0}

    def on_message(client: Any, userdata: Any, msg: Any) -> None:
        routed = router.route(msg.topic, msg.payload, datetime.now(UTC))
        with conn.cursor() as cur:
            for r in routed.readings:
                cur.execute(inserts[TABLE_OF[type(r)]], r)
        conn.commit()
        state["messages"] += 1
        state["readings"] += len(routed.readings)
        state["rejected"] += routed.rejection is not None
        if state["messages"] >= a.count:
            done.set()

    subscribed = threading.Event()
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=a.client_id, protocol=mqtt.MQTTv311,
                    clean_session=True)
    c.username_pw_set(a.user, os.environ["BENCH_MQTT_PASSWORD"])
    c.on_message = on_message
    c.on_connect = lambda cl, *_: cl.subscribe([(t, 1) for t in a.topic])
    c.on_subscribe = lambda *_: subscribed.set()
    c.connect(a.host, a.port, keepalive=60)
    c.loop_start()
    if not subscribed.wait(30):
        sys.exit("no SUBACK")
    print("READY", flush=True)
    done.wait()
    end = time.time()
    c.disconnect()
    c.loop_stop()
    conn.close()
    ru = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps(state | {"end": end, "cpu_s": ru.ru_utime + ru.ru_stime}), flush=True)


if __name__ == "__main__":
    main()
