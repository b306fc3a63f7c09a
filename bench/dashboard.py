"""``make bench-dashboard``: the dashboard in Chromium over the API benchmark's year.

Measures, on the year of the demo city that ``make bench-api`` loads (``bench.apilib``, the
same database, loaded if missing, then its rollups built by the same ``beffroi maintain
--rollups-only`` step as ``bench.api``: without them a year is read from raw rows, past the
API's statement timeout):

1. the shipped JavaScript and CSS, each file gzip-compressed (level 9), summed;
2. the overview's first useful paint: from navigation to the moment every number of the
   page is drawn (``#ov-updated`` filled), signed in, median of ``--repeat`` loads;
3. a district's year at daily buckets: from navigation to the chart and its table drawn
   (``#p-msg`` saying ``365 points``), median of ``--repeat`` loads.

The API runs as in ``bench.api`` (uvicorn child process); Chromium is Debian's, driven by
Playwright, in this process. A page that shows an error instead of its numbers stops the run
at once, with that message and the requests' statuses and times (the slowest requests of
each page are kept in the results); the load average is recorded before and after.
Targets (issue: the city's dashboard): overview and year each under 1 s, JS + CSS under
500 kB compressed. ``--size-only`` measures 1 without any data
or browser. Results: ``bench/results/dashboard.json`` and ``dashboard.md``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import os
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


# Done when the page shows its numbers ("ok") or says why not (the error, in the page).
_OVERVIEW_DONE = """() => {
  const s = document.querySelector('#status');
  if (s && s.classList.contains('error') && s.textContent) return 'error: ' + s.textContent;
  return (document.querySelector('#ov-updated')?.textContent || '') ? 'ok' : null;
}"""
_SERIES_DONE = """n => {
  const m = document.querySelector('#p-msg');
  const text = m?.textContent || '';
  if (text.startsWith(`${n} points`) && document.querySelector('#p-chart canvas')) return 'ok';
  if (m && (m.classList.contains('error') || m.classList.contains('warn'))) return 'error: ' + text;
  return null;
}"""


class PageFailed(RuntimeError):
    """A page said why it could not show its numbers."""


def timings(base: str, token: str, district: str, first: str, last: str, days: int,
            repeat: int) -> dict[str, Any]:
    """Median seconds to the overview's numbers and to a district's year drawn; the slowest
    API requests of each page's last load."""
    from playwright.sync_api import Page, Request, sync_playwright

    out: dict[str, list[float]] = {"overview_s": [], "district_year_1d_s": []}
    slowest: dict[str, list[dict[str, Any]]] = {}
    year_route = (f"#/energie?site={district}&metric=energy&from={first}&to={last}"
                  "&bucket=1d")
    seen: list[dict[str, Any]] = []

    def finished(req: Request) -> None:
        if "/v1/" not in req.url:
            return
        resp = req.response()
        seen.append({"url": req.url.removeprefix(base), "status": resp.status if resp else None,
                     "ms": round(req.timing["responseEnd"], 1)})

    def load(page: Page, key: str, route: str, done: str, arg: Any = None) -> None:
        page.goto("about:blank")
        seen.clear()
        t0 = time.perf_counter()
        page.goto(f"{base}/{route}")
        handle = page.wait_for_function(done, arg=arg, timeout=60_000)
        elapsed = time.perf_counter() - t0
        state = str(handle.json_value())
        slowest[key] = sorted(seen, key=lambda r: -float(r["ms"]))[:5]
        if state != "ok":
            raise PageFailed(f"{route}: the page says {state!r} after {elapsed:.1f} s; "
                             f"requests: {json.dumps(seen)}")
        out[key].append(elapsed)

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
        ctx.add_init_script(f"sessionStorage.setItem('beffroi.token', {json.dumps(token)})")
        page = ctx.new_page()
        page.on("requestfinished", finished)
        page.goto(f"{base}/#/equipements")  # warm the HTTP cache of the static files
        page.wait_for_selector("#dev-table tbody tr", timeout=60_000)
        for _ in range(repeat):
            load(page, "overview_s", "#/ville", _OVERVIEW_DONE)
            load(page, "district_year_1d_s", year_route, _SERIES_DONE, days)
        browser.close()
    res: dict[str, Any] = {
        k: {"median_s": round(statistics.median(v), 3), "runs_s": [round(x, 3) for x in v],
            "target_s": PAINT_TARGET_S, "met": statistics.median(v) < PAINT_TARGET_S,
            "slowest_requests": slowest[k]}
        for k, v in out.items()}
    return res


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
        m, ds = doc["machine_info"], doc["dataset"]
        lines += ["## Machine and data", "",
                  f"- CPU: {m['cpu']}, {m['cores']} cores; RAM {m['memory_gib']} GiB; "
                  f"{m['os']}; PostgreSQL {m['postgresql']} + TimescaleDB {m['timescaledb']}",
                  "- Load average (1, 5, 15 min) at start: "
                  f"{', '.join(f'{x:.2f}' for x in m['load_average'])}; at the end: "
                  f"{', '.join(f'{x:.2f}' for x in doc['load_average_end'])} (the machine is "
                  "shared: the API, PostgreSQL and Chromium compete with other work)",
                  f"- Database `beffroi_bench_api` ({m['database_size']}): {ds['days']} local "
                  f"days from {ds['first']}, {sum(ds['rows'].values()):,} rows",
                  f"- Rollups: {json.dumps(doc['maintain'])}", "",
                  "## Drawing times (Chromium, signed in, static files cached)", "",
                  "| what | median | runs | target |", "|---|---:|---|---|"]
        for k, v in doc["timings"].items():
            lines.append(f"| {k} | {v['median_s']} s | {v['runs_s']} | < {v['target_s']:g} s: "
                         f"{'met' if v['met'] else 'NOT met'} |")
        lines += ["", "Slowest API requests of the last load of each page (time to the end "
                  "of the response, as Chromium saw it):", ""]
        for k, v in doc["timings"].items():
            lines += [f"- {k}: " + "; ".join(f"`{r['url']}` {r['status']} {r['ms']:g} ms"
                                             for r in v["slowest_requests"])]
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
        from bench.api import SEED, machine, run_maintain
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
        doc["maintain"] = run_maintain(ds.url, year, fresh=ds.load_s is not None)
        doc["dataset"] = {**ds.spec, "rows": ds.rows}
        doc["machine_info"] = machine(ds.url)
        name = f"bench-dashboard-{int(time.time())}"
        with psycopg.connect(ds.url) as conn:
            token, _ = create_token(conn, name, ["read"])
        try:
            with api_server(ds.url, args.out / "dashboard-server.log") as base:
                doc["timings"] = timings(base, token, "saint-michel", year.first.isoformat(),
                                         (end - timedelta(days=1)).isoformat(), args.days,
                                         args.repeat)
        finally:
            doc["load_average_end"] = list(os.getloadavg())
            with psycopg.connect(ds.url) as conn:
                revoke_token(conn, name=name)
    (args.out / "dashboard.json").write_text(json.dumps(doc, indent=1) + "\n",
                                             encoding="utf-8")
    (args.out / "dashboard.md").write_text(markdown(doc), encoding="utf-8")
    log.info("shipped JS + CSS: %s bytes gzip", f"{doc['size']['gzip_bytes']:,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
