"""The scenario list reads a file again when it changes, and only then."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from api.runs import RunManager
from simulators.scenario import Scenario, ScenarioError

SHIPPED = Path(__file__).resolve().parents[2] / "simulators" / "scenarios" / "weekday.yaml"


def test_an_edited_scenario_is_listed_as_edited(tmp_path: Path) -> None:
    path = tmp_path / "weekday.yaml"
    text = SHIPPED.read_text(encoding="utf-8")
    path.write_text(text, encoding="utf-8")
    runs = RunManager(scenario_dir=tmp_path)
    first = runs.scenarios()["weekday"]
    assert isinstance(first, Scenario)
    assert runs.scenarios()["weekday"] is first  # unchanged: not parsed again

    path.write_text(text + "\nnot: [valid\n", encoding="utf-8")
    st = path.stat()  # a new size; a new time too, even within the clock's resolution
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert isinstance(runs.scenarios()["weekday"], ScenarioError)

    path.write_text(text, encoding="utf-8")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000))
    again = runs.scenarios()["weekday"]
    assert isinstance(again, Scenario) and again is not first and again == first


def test_a_run_takes_its_scenario_as_last_parsed_and_an_edit_at_once(tmp_path: Path) -> None:
    """Starting a run reads the same parse as the list (the YAML cost about 10 ms of CPU
    per start), and an edited file is what the next start gets, overrides on top."""
    path = tmp_path / "weekday.yaml"
    text = SHIPPED.read_text(encoding="utf-8")
    path.write_text(text, encoding="utf-8")
    runs = RunManager(scenario_dir=tmp_path)
    listed = runs.scenarios()["weekday"]
    assert isinstance(listed, Scenario)
    assert runs.scenario("weekday") is listed  # no override: the parse itself
    faster = runs.scenario("weekday", speed=2.0)
    assert faster.speed == 2.0 and listed.speed != 2.0  # the cached parse is not changed

    path.write_text(text.replace(f"seed: {listed.seed}", "seed: 7"), encoding="utf-8")
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert runs.scenario("weekday").seed == 7

    path.write_text("name: weekday\nspeed: -3\n", encoding="utf-8")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000))
    with pytest.raises(ScenarioError, match="speed"):
        runs.scenario("weekday")
