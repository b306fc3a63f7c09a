"""Keep MAC addresses and licence plates out of the ingestor's logs, its MQTT client's included."""

from __future__ import annotations

import logging

from devices.privacy import scrub_personal

# Loggers whose records may carry payload bytes: the MQTT client (``ingest.mqtt``) names
# topics, our modules log database errors that may quote values.
GUARDED_PREFIXES = ("ingest", "devices", "psycopg")
# Loggers guarded even before their module is imported (a logger created later would not be).
KNOWN_LOGGERS = (
    "ingest.service", "ingest.writer", "ingest.mqtt", "ingest.mqtt.connection",
    "ingest.router", "ingest.runner", "ingest.keys", "ingest.registry_cache",
)


class MacScrubFilter(logging.Filter):
    """Rewrites a record's message with MACs replaced by ``<mac>``, plates by ``<plate>``."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Scrub the formatted message (and the exception text) in place; keep the record."""
        message = record.getMessage()
        scrubbed = scrub_personal(message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        if record.exc_info and not record.exc_text:
            record.exc_text = scrub_personal(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


_FILTER = MacScrubFilter()


def guard_loggers() -> None:
    """Install the filter on every logger that may see payloads."""
    names = [n for n in logging.root.manager.loggerDict if n.split(".")[0] in GUARDED_PREFIXES]
    for name in {*names, *GUARDED_PREFIXES, *KNOWN_LOGGERS}:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
