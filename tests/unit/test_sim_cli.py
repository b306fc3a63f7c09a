"""``beffroi simulate`` commands that need no broker: list, record, truth."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from beffroi.cli import main

ARGS = ["--start", "2025-11-18 08:00", "--duration", "20m", "--seed", "3"]


def test_list_shows_the_shipped_scenarios(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "list"]) == 0
    out = capsys.readouterr().out
    for name in ("weekday", "saturday-market", "stress"):
        assert name in out


def test_record_is_byte_for_byte_deterministic(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "c.jsonl"
    truth = tmp_path / "truth.json"
    assert main(["simulate", "record", "weekday", *ARGS, "-o", str(a), "--truth", str(truth)]) == 0
    assert main(["simulate", "record", "weekday", *ARGS, "-o", str(b)]) == 0
    assert a.read_bytes() == b.read_bytes()
    lines = a.read_text().splitlines()
    assert len(lines) > 1000
    first = json.loads(lines[0])
    assert set(first) >= {"offset", "topic", "qos"}
    assert any('"content_type": "application/senml+json"' in line for line in lines)
    doc = json.loads(truth.read_text())
    assert doc["start"] == "2025-11-18T08:00:00+01:00"
    assert doc["messages"]["clean"] == sum(doc["messages"]["expected_rows"].values())
    other = [*ARGS[:-1], "4"]
    assert main(["simulate", "record", "weekday", *other, "-o", str(c)]) == 0
    assert c.read_bytes() != a.read_bytes()


def test_truth_command_and_bad_scenario(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                        ) -> None:
    out = tmp_path / "t.json"
    assert main(["simulate", "truth", "saturday-market", *ARGS, "-o", str(out)]) == 0
    assert json.loads(out.read_text())["scenario"] == "saturday-market"
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nspeed: -3\nfaults: {malformed: 3}\n")
    assert main(["simulate", "truth", str(bad), "-o", str(out)]) == 1
    assert main(["simulate", "truth", "no-such-scenario", "-o", str(out)]) == 1
