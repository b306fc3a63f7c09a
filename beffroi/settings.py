"""One settings object per process, read from ``BEFFROI_*`` environment variables and ``.env``.

Part of Beffroi's core with :mod:`beffroi.endpoints`: it imports nothing else of the project,
and nothing here knows of the development stack (``beffroi stack``) beyond the fields it reads.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything configurable in Beffroi. Built once in ``main`` and passed down."""

    model_config = SettingsConfigDict(
        env_prefix="BEFFROI_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    # Where the database and the broker are. Required, except with dev_stack.
    database_url: SecretStr | None = Field(
        None, description="postgresql://user:password@host:port/db of the TimescaleDB database."
    )
    database_read_url: SecretStr | None = Field(
        None, description="postgresql://... of a hot standby the API reads from (streaming "
        "replica of database_url); unset: the API reads from database_url."
    )
    broker_url: str | None = Field(
        None, description="mqtt://host:port of the MQTT broker (credentials apart)."
    )
    # The development stack of a checkout (`beffroi stack`): with dev_stack, the commands take
    # the database and broker settings left unset from the stack under state_dir.
    dev_stack: bool = Field(
        False, description="Use the development stack under state_dir for every endpoint "
        "setting left unset (`make demo`, the tests, the benchmarks).")
    state_dir: Path = Field(
        Path(".beffroi"), description="Where the development stack keeps its data, logs "
        "and secrets."
    )
    # Unless set, a port the stack found taken by another program (another checkout's stack)
    # is replaced by a free one, recorded in ``<state_dir>/ports.json``.
    pg_port: int = Field(55432, ge=1024, le=65535)
    mqtt_port: int = Field(51883, ge=1024, le=65535)
    db_name: str = Field("beffroi", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    startup_timeout_s: float = Field(60.0, gt=0)
    # Broker accounts of Beffroi's own processes (generated for the local stack). One account
    # per connection, each bound to one client id: `{n}` in a user name is the connection
    # number (ingestor worker n, simulator connection n); see docs/registry.md.
    ingest_mqtt_username: str = Field(
        "beffroi-ingest-{n}",
        description="Broker user of ingestor worker n ({n} replaced by n; without {n}, every "
        "worker uses the same account, which an external broker then cannot bind).")
    ingest_mqtt_password: SecretStr | None = None
    sim_mqtt_username: str = Field(
        "beffroi-sim-{n}",
        description="Broker user (and client id) of simulator connection n.")
    sim_mqtt_password: SecretStr | None = None
    ingest_max_workers: int = Field(
        16, ge=1, le=256, description="Ingestor worker accounts on the local broker.")
    sim_max_connections: int = Field(
        16, ge=1, le=256, description="Simulator connection accounts on the local broker.")
    # Ingestor (defaults chosen by `make bench-ingest`, see docs/ingest.md).
    ingest_batch_size: int = Field(
        5000, ge=1, le=65535, description="Readings per COPY batch (flush on size)."
    )
    ingest_batch_max_age_ms: int = Field(
        200, ge=1, le=60000, description="Flush a batch at the latest this long after it opened."
    )
    ingest_queue_batches: int = Field(
        2, ge=1, le=64, description="Sealed batches waiting for the writer (backpressure)."
    )
    ingest_receive_maximum: int = Field(
        20000, ge=1, le=65535,
        description="Unacknowledged QoS 1 messages the broker may send us (MQTT 5); the "
        "ingestor also stops reading the socket at this many (docs/ingest.md, Memory)."
    )
    ingest_gc_threshold: int = Field(
        50_000, ge=0,
        description="Allocations between two runs of Python's cyclic garbage collector in "
        "an ingestor process (0: Python's default, 700); see docs/ingest.md, CPU."
    )
    api_statement_timeout_s: float = Field(
        10.0, ge=0, le=3600,
        description="Longest a statement of an API request may run (PostgreSQL "
        "statement_timeout; 0: no limit): past it the query is cancelled and the request "
        "answered 503, so a few heavy requests cannot hold the connection pool."
    )
    api_workers: int = Field(
        1, ge=1, le=64,
        description="Processes of `beffroi api`. One by default: dashboard sign-in codes "
        "and operator runs live in one process's memory, and on 2 cores shared with "
        "PostgreSQL a second process measured no faster (docs/api.md, Performance)."
    )
    api_access_log: bool = Field(
        True,
        description="uvicorn's access log of `beffroi api` (a line per request on stdout; "
        "about 0.2 ms of CPU per request measured: a proxy in front can log instead)."
    )
    api_maintenance_interval_s: float = Field(
        60.0, ge=0,
        description="How often `beffroi api` runs the maintenance job (rollups, "
        "retention) in the background; 0: never (`--maintenance-interval`)."
    )
    api_token_cache_s: float = Field(
        5.0, ge=0, le=300,
        description="How long an API process trusts a token it verified without asking the "
        "database again: a revoked token keeps working this long at most (0: every request "
        "asks)."
    )
    api_jit: bool = Field(
        False,
        description="PostgreSQL JIT compilation for the API's queries (jit on its pooled "
        "connections): off by default, its compilation cost more than it saved on the "
        "routes measured (docs/api.md, Performance)."
    )
    api_gc_threshold: int = Field(
        20_000, ge=0,
        description="Allocations between two runs of Python's cyclic garbage collector in "
        "the API process (0: Python's default, 700)."
    )
    ingest_read_pause_ms: float = Field(
        5.0, ge=0, le=100,
        description="After a read that emptied the socket, wait this long before reading "
        "again, so that one system call takes what arrived meanwhile (0: read at once; "
        "docs/ingest.md, Reading in bursts)."
    )
    ingest_max_inflight_bytes: int = Field(
        32 * 1024 * 1024, ge=0,
        description="Stop reading the socket while unacknowledged messages hold this many "
        "payload and topic bytes (0: no byte limit)."
    )
    ingest_max_payload_bytes: int = Field(65536, ge=64, description="Larger messages are rejected.")
    ingest_max_packet_bytes: int = Field(
        1 << 20, ge=1024, le=268_435_460,
        description="Maximum Packet Size the ingestor announces to the broker (MQTT 5): the "
        "broker drops larger messages instead of sending them. Above "
        "ingest_max_payload_bytes, so that messages between the two are dead-lettered."
    )
    ingest_future_skew_s: float = Field(
        300.0, ge=0, description="Readings further in the future are rejected."
    )
    ingest_max_age_days: float = Field(
        400.0, gt=0, description="Readings older than this (retention window) are rejected."
    )
    ingest_dead_letter_max_bytes: int = Field(
        4096, ge=0, description="Payload bytes kept per dead letter."
    )
    ingest_client_id: str = Field("beffroi-ingest", pattern=r"^[A-Za-z0-9_-]{1,48}$")
    ingest_share_group: str = Field("beffroi", pattern=r"^[A-Za-z0-9_-]{1,32}$")
    ingest_shared_subscription: bool = Field(
        False, description="Subscribe through $share/<group>/ (each message to one worker). "
        "Off: with --workers N the workers split the topics between their own plain "
        "subscriptions, so that a Mosquitto restart loses nothing (docs/scale.md)."
    )
    ingest_session_expiry_s: int = Field(
        7 * 86400, ge=0, description="How long the broker keeps an offline ingestor's session."
    )
    ingest_metrics_port: int = Field(
        9108, ge=0, le=65535, description="Prometheus endpoint (0: off); worker i uses port+i."
    )
    ingest_metrics_host: str = Field(
        "127.0.0.1", min_length=1,
        description="Address the Prometheus endpoints listen on (0.0.0.0 in a container, "
        "for a Prometheus in another one).")
    ingest_registry_refresh_s: float = Field(30.0, gt=0)
    ingest_stop_timeout_s: float = Field(
        10.0, gt=0, le=600,
        description="On SIGTERM, wait at most this long for the last commits; messages not "
        "committed by then stay unacknowledged and the broker delivers them again."
    )
    # Retention (run by the maintenance job, `beffroi maintain`; see docs/rollups.md).
    retention_raw_days: int = Field(
        400, ge=1, le=36500, description="Raw readings are dropped (whole chunks) past this age."
    )
    retention_grid_days: int | None = Field(
        None, ge=1, le=36500, description="grid_readings; default retention_raw_days."
    )
    retention_parking_days: int | None = Field(
        None, ge=1, le=36500,
        description="parking_spot_state, parking_transactions, parking_meter_status; "
        "default retention_raw_days.",
    )
    retention_wifi_stats_days: int | None = Field(
        None, ge=1, le=36500, description="wifi_ap_stats; default retention_raw_days."
    )
    retention_dead_letters_days: int = Field(30, ge=1, le=36500)
    retention_wifi_sessions_hours: int = Field(
        24, ge=1, le=24, description="Raw wifi sessions (personal data): at most 24 h (CNIL)."
    )
    retention_rollup_days: int = Field(
        0, ge=0, le=36500, description="Rollups and wifi aggregates; 0 keeps them forever."
    )
    # Domain.
    topic_prefix: str = Field("city", pattern=r"^[A-Za-z0-9_-]{1,32}$")
    bridge_prefix: str = Field(
        "", pattern=r"^([A-Za-z0-9_-]{1,32})?$",
        description="Topic level under which the ChirpStack and Linky bridges publish "
        "(`<bridge_prefix>/application/...`, `<bridge_prefix>/teleinfo/...`); empty: at the "
        "root, as they do by default. Must differ from topic_prefix.")
    timezone: str = "Europe/Paris"
    dashboard_tile_url: str = Field(
        "", pattern=r"^(https?://[^\s'\"]+)?$",
        description="Map tiles of the dashboard (`https://tiles.example/{z}/{x}/{y}.png`); "
        "empty: the sites are drawn over a plain background (no tile server needed).")
    # Open data (docs/opendata.md).
    opendata_enabled: bool = Field(
        True, description="Serve /opendata and /ngsi-ld without a token (false: 404).")
    opendata_dir: Path | None = Field(
        None, description="Where `beffroi opendata publish` writes the package and the API "
        "reads it; default <state_dir>/opendata.")
    opendata_days: int = Field(
        31, ge=1, le=3700, description="Local days a publication covers by default, ending "
        "at the last local midnight.")
    opendata_publish_daily: bool = Field(
        False, description="`beffroi maintain` publishes the package once a day.")
    opendata_wifi_min_count: int = Field(
        10, ge=1, description="Wifi visitors, associations or sessions below this in a cell "
        "are not published (statistical secrecy).")
    opendata_energy_min_points: int = Field(
        10, ge=1, description="An electricity aggregate over fewer delivery points is not "
        "published (decree 2020-196 of 4 March 2020: 10).")
    opendata_rate_per_minute: int = Field(
        120, ge=1, description="Open-data requests per client address and minute.")
    opendata_producer: str = Field(
        "Ville d'Arras", min_length=1, max_length=200,
        description="Producer named in the Data Package and the NGSI-LD entities.")
    opendata_producer_url: str = Field("https://www.arras.fr", max_length=500)

    def opendata_path(self) -> Path:
        """The directory of the published open-data package."""
        return self.opendata_dir or self.state_dir / "opendata"

    @model_validator(mode="after")
    def _check_packet_size(self) -> Settings:
        if self.ingest_max_packet_bytes <= self.ingest_max_payload_bytes:
            raise ValueError("ingest_max_packet_bytes must exceed ingest_max_payload_bytes "
                             "(the broker would drop oversized messages without a dead letter)")
        return self

    @model_validator(mode="after")
    def _check_prefixes(self) -> Settings:
        if self.bridge_prefix and self.bridge_prefix == self.topic_prefix:
            raise ValueError("bridge_prefix must differ from topic_prefix (the device topics "
                             "would overlap the bridges' ones)")
        return self

    @field_validator("broker_url")
    @classmethod
    def _check_broker_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("mqtt", "tcp") or not parts.hostname:
            raise ValueError("broker_url must look like mqtt://host:port")
        return value

    def retention_days(self, table: str) -> int:
        """Retention of a raw reading table (days)."""
        by_table = {"grid_readings": self.retention_grid_days,
                    "parking_spot_state": self.retention_parking_days,
                    "parking_transactions": self.retention_parking_days,
                    "parking_meter_status": self.retention_parking_days,
                    "wifi_ap_stats": self.retention_wifi_stats_days,
                    "dead_letters": self.retention_dead_letters_days}
        value = by_table.get(table)
        return value if value is not None else self.retention_raw_days

    @property
    def external_database(self) -> bool:
        """True when the database is given (the development stack does not start its own)."""
        return self.database_url is not None

    @property
    def external_broker(self) -> bool:
        """True when the broker is given (the development stack does not start its own)."""
        return self.broker_url is not None
