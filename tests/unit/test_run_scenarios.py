"""The scenarios are read again when their file changes, and only then: by the list and by
the start of a run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from api.runs import RunManager
from simulators.scenario import Scenario, ScenarioError

SHIPPED = Path(__file__).resolve().parents[2] / "simulators" / "scenarios" / "weekday.yaml"


class _Copy:
    """A copy of the shipped ``weekday`` scenario in a directory of its own, and the run
    manager reading that directory."""

    def __init__(self, d: Path) -> None:
        self.path = d / "weekday.yaml"
        self.text = SHIPPED.read_text(encoding="utf-8")
        self.path.write_text(self.text, encoding="utf-8")
        self._mtime_ns = self.path.stat().st_mtime_ns
        self.runs = RunManager(scenario_dir=d)

    def listed(self) -> Scenario:
        found = self.runs.scenarios()["weekday"]
        assert isinstance(found, Scenario), found
        return found

    def edit(self, text: str) -> None:
        """Write ``text``, with a later modification time (even within the clock's
        resolution)."""
        self.path.write_text(text, encoding="utf-8")
        self._mtime_ns += 1_000_000
        st = self.path.stat()
        os.utime(self.path, ns=(st.st_atime_ns, self._mtime_ns))


def test_an_edited_scenario_is_listed_as_edited(tmp_path: Path) -> None:
    copy = _Copy(tmp_path)
    first = copy.listed()
    assert copy.listed() is first  # unchanged: not parsed again

    copy.edit(copy.text + "\nnot: [valid\n")
    assert isinstance(copy.runs.scenarios()["weekday"], ScenarioError)

    copy.edit(copy.text)
    again = copy.listed()
    assert again is not first and again == first


def test_a_run_takes_its_scenario_as_last_parsed_and_an_edit_at_once(tmp_path: Path) -> None:
    """Starting a run reads the same parse as the list (the YAML cost about 10 ms of CPU
    per start), and an edited file is what the next start gets, overrides on top."""
    copy = _Copy(tmp_path)
    listed = copy.listed()
    assert copy.runs.scenario("weekday") is listed  # no override: the parse itself
    faster = copy.runs.scenario("weekday", speed=2.0)
    assert faster.speed == 2.0 and listed.speed != 2.0  # the cached parse is not changed

    copy.edit(copy.text.replace(f"seed: {listed.seed}", "seed: 7"))
    assert copy.runs.scenario("weekday").seed == 7

    copy.edit("name: weekday\nspeed: -3\n")
    with pytest.raises(ScenarioError, match="speed"):
        copy.runs.scenario("weekday")
