#!/bin/bash
# Runs the test suite with the wall clock of every process (Mosquitto, PostgreSQL, pytest
# and what it starts) shifted so that the run starts at a given Paris time, by default
# 23:55 so that it crosses midnight: `make test-at AT=23:55 PYTEST_ARGS=...`.
# The local stack is restarted under the shifted clock, then restarted normally.
set -euo pipefail
cd "$(dirname "$0")/../.."
at=${AT:-23:55}
lib=$PWD/.beffroi/clock/libshift.so
mkdir -p .beffroi/clock
cc -shared -fPIC -O2 -Wall -o "$lib" tests/clock/shift_clock.c -ldl
shift_s=$(.venv/bin/python - "$at" <<'PY'
import sys
from datetime import datetime, time
from zoneinfo import ZoneInfo

paris = ZoneInfo("Europe/Paris")
now = datetime.now(paris)
target = datetime.combine(now.date(), time.fromisoformat(sys.argv[1]), paris)
print(round((target - now).total_seconds()))
PY
)
echo "the run starts at $at in Paris (wall clock shifted by ${shift_s} s)"
.venv/bin/beffroi stack down
restore() {
    unset LD_PRELOAD BEFFROI_CLOCK_SHIFT_S
    .venv/bin/beffroi stack down && .venv/bin/beffroi stack up
}
trap restore EXIT
export LD_PRELOAD=$lib BEFFROI_CLOCK_SHIFT_S=$shift_s
.venv/bin/beffroi stack up
.venv/bin/python -c 'from datetime import datetime; from zoneinfo import ZoneInfo; print("Paris time under the shift:", datetime.now(ZoneInfo("Europe/Paris")).isoformat(timespec="seconds"))'
# shellcheck disable=SC2086
.venv/bin/python -m pytest ${PYTEST_ARGS:-}
