"""The log filter that keeps MAC addresses out of the ingestor's logs."""

from __future__ import annotations

import logging

import pytest

from ingest.logsafe import guard_loggers


def test_guarded_loggers_scrub_macs(caplog: pytest.LogCaptureFixture) -> None:
    guard_loggers()
    caplog.set_level(logging.DEBUG)
    logging.getLogger("ingest.mqtt.connection").warning("bad packet %s",
                                                        b"mac=AA:BB:CC:DD:EE:FF")
    logging.getLogger("ingest.writer").error("refused: %s", "client 02-11-22-33-44-55")
    logging.getLogger("ingest.mqtt").debug("message on city/wifi/aa:bb:cc:dd:ee:01/stats")
    text = caplog.text.lower()
    assert "aa:bb:cc:dd:ee:ff" not in text and "02-11-22-33-44-55" not in text
    assert "ee:01" not in text
    assert text.count("<mac>") == 3


@pytest.mark.parametrize(
    "secret",
    ["a4c3f0851b2e", "A4C3F0851B2E", "a4c3.f085.1b2e", "A4-C3-F0-85-1B-2E", "AB-123-CD",
     "AB123CD", "ab-123-cd", "1234 AB 62", "1234AB62"],
)  # fmt: skip
def test_guarded_loggers_scrub_bare_macs_and_plates_under_any_key(
        caplog: pytest.LogCaptureFixture, secret: str) -> None:
    guard_loggers()
    caplog.set_level(logging.DEBUG)
    logging.getLogger("ingest.writer").error("refused row: %s", {"sta": secret, "x": [secret]})
    logging.getLogger("ingest.mqtt").warning("bad packet %r", f"id={secret}".encode())
    assert secret.lower() not in caplog.text.lower()
    assert caplog.text.count("<mac>") + caplog.text.count("<plate>") == 3
