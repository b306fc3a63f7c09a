"""The log filter that keeps MAC addresses out of the ingestor's logs."""

from __future__ import annotations

import logging

import pytest

from ingest.logsafe import guard_loggers


def test_guarded_loggers_scrub_macs(caplog: pytest.LogCaptureFixture) -> None:
    guard_loggers()
    caplog.set_level(logging.DEBUG)
    logging.getLogger("gmqtt.mqtt.handler").warning("bad packet %s", b"mac=AA:BB:CC:DD:EE:FF")
    logging.getLogger("ingest.writer").error("refused: %s", "client 02-11-22-33-44-55")
    logging.getLogger("gmqtt.mqtt.handler").debug("RECV aa:bb:cc:dd:ee:01")
    text = caplog.text.lower()
    assert "aa:bb:cc:dd:ee:ff" not in text and "02-11-22-33-44-55" not in text
    assert text.count("<mac>") == 2
    assert "ee:01" not in text  # per-packet DEBUG records of the MQTT client are not emitted
