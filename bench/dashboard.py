"""``make bench-dashboard``: the dashboard in Chromium over the API benchmark's year.

Measures, on the year of the demo city that ``make bench-api`` loads (``bench.apilib``, the
same database, loaded if missing):

1. the shipped JavaScript and CSS, each file gzip-compressed (level 9), summed;
2. the overview's first useful paint: from navigation to the moment every number of the
   page is drawn (``#ov-updated`` filled), signed in, median of ``--repeat`` loads;
3. a district's year at daily buckets: from navigation to the chart and its table drawn
   (``#p-msg`` saying ``365 points``), median of ``--repeat`` loads.

The API runs as in ``bench.api`` (uvicorn child process); Chromium is Debian's, driven by
Playwright, in this process. Targets (issue: the city's dashboard): overview and year each
under 1 s, JS + CSS under 500 kB compressed. ``--size-only`` measures 1 without any data
or browser. Results: ``bench/results/dashboard.json`` and ``dashboard.md``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import platform
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

log = logging.getLogger("bench.dashboard")

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
STATIC = ROOT / "api" / "dashboard" / "static"
SIZE_TARGET_KB = 500.0
PAINT_TARGET_S = 1.0
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def shipped_size() -> dict[str, Any]:
    """Raw and gzip sizes of every shipped .js and .css file."""
    files = sorted(p for p in STATIC.rglob("*") if p.suffix in (".js", ".css"))
    rows: list[dict[str, Any]] = [
        {"file": p.relative_to(STATIC).as_posix(), "bytes": p.stat().st_size,
         "gzip_bytes": len(gzip.compress(p.read_bytes(), 9))} for p in files]
    total = sum(int(r["gzip_bytes"]) for r in rows)
    return {"files": rows, "bytes": sum(int(r["bytes"]) for r in rows), "gzip_bytes": total,
            "target_kb": SIZE_TARGET_KB, "met": total / 1000 < SIZE_TARGET_KB}


def timings(base: str, token: str, district: str, first: str, last: str, days: int,
            repeat: int) -> dict[str, Any]:
    """Median seconds to the overview's numbers and to a district's year drawn."""
    from playwright.sync_api import sync_playwright

    out: dict[str, list[float]] = {"overview_s": [], "district_year_1d_s": []}
    year_route = (f"#/energie?site={district}&metric=energy&from={first}&to={last}"
                  "&bucket=1d")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
        ctx.add_init_script(f"sessionStorage.setItem('beffroi.token', {json.dumps(token)})")
        page = ctx.new_page()
        page.goto(f"{base}/#/equipements")  # warm the HTTP cache of the static files
        page.wait_for_selector("#dev-table tbody tr", timeout=60_000)
        for _ in range(repeat):
            page.goto("about:blank")
            t0 = time.perf_counter()
            page.goto(f"{base}/#/ville")
            page.wait_for_selector("#ov-updated:not(:empty)", timeout=60_000)
            out["overview_s"].append(time.perf_counter() - t0)
            page.goto("about:blank")
            t0 = time.perf_counter()
            page.goto(f"{base}/{year_route}")
            page.wait_for_function(
                "n => (document.querySelector('#p-msg')?.textContent || '')"
                ".startsWith(`${n} points`) && document.querySelector('#p-chart canvas')",
                arg=days, timeout=60_000)
            out["district_year_1d_s"].append(time.perf_counter() - t0)
        browser.close()
    return {k: {"median_s": round(statistics.median(v), 3), "runs_s": [round(x, 3) for x in v],
                "target_s": PAINT_TARGET_S, "met": statistics.median(v) < PAINT_TARGET_S}
            for k, v in out.items()}


def markdown(doc: dict[str, Any]) -> str:
    """The results as a page."""
    size = doc["size"]
    lines = ["# Dashboard benchmark", "", f"Generated {doc['generated_at']} on "
             f"{doc['machine']}.", "", "## Shipped JavaScript and CSS", "",
             "| file | bytes | gzip bytes |", "|---|---:|---:|"]
    lines += [f"| {r['file']} | {r['bytes']:,} | {r['gzip_bytes']:,} |" for r in size["files"]]
    lines += [f"| **total** | {size['bytes']:,} | **{size['gzip_bytes']:,}** |", "",
              f"Target: under {size['target_kb']:g} kB compressed: "
              f"{'met' if size['met'] else 'NOT met'}.", ""]
    if doc.get("timings"):
        lines += ["## Drawing times (Chromium, signed in, static files cached)", "",
                  "| what | median | runs | target |", "|---|---:|---|---|"]
        for k, v in doc["timings"].items():
            lines.append(f"| {k} | {v['median_s']} s | {v['runs_s']} | < {v['target_s']:g} s: "
                         f"{'met' if v['met'] else 'NOT met'} |")
    else:
        lines += ["Drawing times: not measured in this run (`--size-only`)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m bench.dashboard``."""
    ap = argparse.ArgumentParser(prog="python -m bench.dashboard", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--size-only", action="store_true")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s",
                        datefmt="%H:%M:%S")
    doc: dict[str, Any] = {"generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
                           "machine": f"{platform.machine()}, {platform.python_version()}",
                           "size": shipped_size()}
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.size_only:
        import psycopg

        from api.tokens import create_token, revoke_token
        from beffroi.settings import Settings
        from beffroi.stack import Stack
        from bench.api import SEED
        from bench.apilib.load import prepare
        from bench.apilib.measure import api_server
        from bench.apilib.synth import Year

        settings = Settings()
        stack = Stack(settings)
        stack.up()
        tz = ZoneInfo(settings.timezone)
        end = datetime.now(tz).date().replace(day=1)
        year = Year(end - timedelta(days=args.days), args.days, tz)
        ds = prepare(stack, year, SEED)
        name = f"bench-dashboard-{int(time.time())}"
        with psycopg.connect(ds.url) as conn:
            token, _ = create_token(conn, name, ["read"])
        try:
            with api_server(ds.url, args.out / "dashboard-server.log") as base:
                doc["timings"] = timings(base, token, "saint-michel", year.first.isoformat(),
                                         (end - timedelta(days=1)).isoformat(), args.days,
                                         args.repeat)
        finally:
            with psycopg.connect(ds.url) as conn:
                revoke_token(conn, name=name)
    (args.out / "dashboard.json").write_text(json.dumps(doc, indent=1) + "\n",
                                             encoding="utf-8")
    (args.out / "dashboard.md").write_text(markdown(doc), encoding="utf-8")
    log.info("shipped JS + CSS: %s bytes gzip", f"{doc['size']['gzip_bytes']:,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
