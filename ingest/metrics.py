"""Prometheus metrics of the ingestor (one registry per process)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclass
class Metrics:
    """The ingestor's counters, gauges and histograms."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.messages = Counter("beffroi_ingest_messages_total",
                                "MQTT messages received, by result", ["result"], registry=r)
        self.readings = Counter("beffroi_ingest_readings_written_total",
                                "Readings committed to the database, by table", ["table"],
                                registry=r)
        self.rejected = Counter("beffroi_ingest_rejected_total",
                                "Messages sent to the dead-letter table, by reason", ["reason"],
                                registry=r)
        self.duplicates = Counter("beffroi_ingest_duplicate_batches_total",
                                  "Batches that hit a unique key (redelivery) and were rewritten "
                                  "with ON CONFLICT DO NOTHING", registry=r)
        self.conflicts = Counter("beffroi_ingest_conflicts_total",
                                 "Readings whose key was already stored with other values (their "
                                 "message is dead-lettered as conflict), by table", ["table"],
                                 registry=r)
        self.batch_size = Histogram("beffroi_ingest_batch_messages",
                                    "Messages per committed batch",
                                    buckets=(1, 10, 100, 500, 1000, 2000, 5000, 10000, 20000),
                                    registry=r)
        self.flush_seconds = Histogram("beffroi_ingest_flush_seconds",
                                       "Time to write and commit one batch",
                                       buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10),
                                       registry=r)
        self.queue_depth = Gauge("beffroi_ingest_queue_batches",
                                 "Sealed batches waiting for the writer", registry=r)
        self.unacked = Gauge("beffroi_ingest_unacknowledged_messages",
                             "Messages received but not yet acknowledged to the broker",
                             registry=r)
        self.db_retries = Counter("beffroi_ingest_db_retries_total",
                                  "Batch writes retried after a database error", registry=r)
        self.connected = Gauge("beffroi_ingest_broker_connected",
                               "1 while connected to the broker", registry=r)
