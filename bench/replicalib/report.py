"""The replica benchmark's results as a Markdown page, with the CPU per message and per
request derived from the phases, and a reading of the figures written from them."""

from __future__ import annotations

import statistics
from typing import Any

INGEST_GROUPS = ("primary", "standby", "broker", "ingestor")
SERVER_GROUPS = ("primary", "standby", "broker", "ingestor", "api")
CORE_GROUPS = ("primary", "standby", "broker", "ingestor", "api", "publishers", "bench",
               "unaccounted", "machine")


def requests(phase: dict[str, Any]) -> int:
    """API requests answered during a phase (0 without API)."""
    if "requests" in phase:
        return int(phase["requests"])
    return int(phase.get("api_load", {}).get("requests", 0))


def _kind(phase: dict[str, Any]) -> str:
    return "paced" if phase.get("offered_rate_msg_s") else "max"


def per_unit(phases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For each phase: CPU µs per message of the ingest path's processes; CPU ms per
    request of the API process, and of the cluster the API reads from ("database") and of
    every server process together ("servers") beyond what they spent per message in the
    same kind of phase (paced or flat out) without API."""
    base: dict[str, dict[str, float]] = {}
    for p in phases:
        if p.get("api") is None and p["messages"]:
            base[_kind(p)] = {g: p["cpu_s"].get(g, 0.0) / p["messages"] for g in CORE_GROUPS}
    out = []
    for p in phases:
        n, reqs = p["messages"], requests(p)
        row: dict[str, Any] = {"phase": p["phase"], "api": p.get("api"),
                               "us_per_message": {}, "ms_per_request": {}}
        if n:
            row["us_per_message"] = {g: round(p["cpu_s"].get(g, 0.0) / n * 1e6, 1)
                                     for g in (*INGEST_GROUPS, "publishers")}
        if reqs:
            row["ms_per_request"]["api"] = round(p["cpu_s"].get("api", 0.0) / reqs * 1e3, 2)
            ref = base.get(_kind(p))
            where = p.get("api")
            if ref is not None and where in ("primary", "standby"):
                extra = p["cpu_s"].get(where, 0.0) - ref[where] * n
                row["ms_per_request"]["database"] = round(extra / reqs * 1e3, 2)
                servers = sum(p["cpu_s"].get(g, 0.0) - ref[g] * n for g in SERVER_GROUPS)
                row["ms_per_request"]["servers"] = round(servers / reqs * 1e3, 2)
        out.append(row)
    return out


def _f(x: Any, nd: int = 1) -> str:
    if x is None:
        return "—"
    if isinstance(x, int) or (isinstance(x, float) and x.is_integer() and abs(x) >= 100):
        return f"{int(x):,}"
    return f"{x:,.{nd}f}"


def _phase(doc: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((p for p in doc["phases"] if p["phase"] == name), None)


def _pct(a: float, b: float) -> str:
    """``a`` against ``b`` as a signed percentage."""
    return f"{a / b - 1:+.0%}" if b else "n/a"


#: How the reading names each verdict.
_WHAT = {"latency": "the API's latency", "ingest": "the ingest rate"}


def _verdict(standby: float, primary: float, *, lower_is_better: bool) -> str:
    """"better", "worse" or "the same" (within 10 %) for the standby against the primary."""
    r = standby / primary if primary else 1.0
    if abs(r - 1) < 0.10:
        return "the same"
    return "better" if (r < 1) == lower_is_better else "worse"


def reading(doc: dict[str, Any]) -> list[str]:
    """A few sentences on what reading from the standby bought in this run."""
    cores = doc["machine"].get("cores")
    out: list[str] = []
    verdicts: dict[str, str] = {}
    ps, pp = _phase(doc, "paced+api-standby"), _phase(doc, "paced+api-primary")
    if ps and pp:
        s16 = {r["name"]: r["p99_ms"] for r in ps.get("routes", []) if r["clients"] == 16}
        p16 = {r["name"]: r["p99_ms"] for r in pp.get("routes", []) if r["clients"] == 16}
        ratios = [s16[k] / p16[k] for k in s16 if s16[k] and p16.get(k)]
        if ratios:
            med = statistics.median(ratios)
            verdicts["latency"] = _verdict(med, 1.0, lower_is_better=True)
            out.append(f"- **Latency.** With 16 clients, under the paced ingest, the p99 of a "
                       f"route read from the standby was {med:.2f} times its p99 read from "
                       f"the primary (median over {len(ratios)} routes).")
        out.append(f"- **Where the CPU went.** Under the paced ingest with the API measured, "
                   f"the primary's processes used {_f(ps['cpu_cores'].get('primary'), 2)} "
                   f"cores with the reads on the standby and "
                   f"{_f(pp['cpu_cores'].get('primary'), 2)} with the reads on the primary; "
                   f"the standby's used {_f(ps['cpu_cores'].get('standby'), 2)} and "
                   f"{_f(pp['cpu_cores'].get('standby'), 2)}; the whole machine "
                   f"{_f(ps['cpu_cores'].get('machine'), 2)} and "
                   f"{_f(pp['cpu_cores'].get('machine'), 2)} of {cores}.")
    alone, ms, mp = (_phase(doc, "ingest-max"), _phase(doc, "max+api-standby"),
                     _phase(doc, "max+api-primary"))
    if alone and ms and mp and alone["readings_per_s"] and mp["readings_per_s"]:
        sl, pl = ms.get("api_load", {}), mp.get("api_load", {})
        verdicts["ingest"] = _verdict(ms["readings_per_s"], mp["readings_per_s"],
                                      lower_is_better=False)
        out.append(f"- **Ingest flat out.** {_f(alone['readings_per_s'])} readings/s without "
                   f"API; with {sl.get('clients', 16)} API clients "
                   f"{_f(ms['readings_per_s'])} with the reads on the standby "
                   f"({_pct(ms['readings_per_s'], alone['readings_per_s'])}) and "
                   f"{_f(mp['readings_per_s'])} with the reads on the primary "
                   f"({_pct(mp['readings_per_s'], alone['readings_per_s'])}), while the API "
                   f"answered {_f(sl.get('rps'))} and {_f(pl.get('rps'))} requests/s (its "
                   f"clients ask again as soon as answered: readings/s and requests/s trade "
                   f"against each other, read them together).")
    units = {u["phase"]: u for u in per_unit(doc["phases"])}
    paced = units.get("ingest-paced", {}).get("us_per_message", {})
    if paced.get("primary"):
        out.append(f"- **Replay.** Without API, the standby spent {_f(paced['standby'])} µs "
                   f"of CPU per message replaying what the primary wrote for "
                   f"{_f(paced['primary'])} µs ({paced['standby'] / paced['primary']:.0%}).")
    worst = [p["lag"]["replay_lag_ms"]["max"] for p in doc["phases"]
             if p["lag"]["replay_lag_ms"]["max"] is not None]
    if worst:
        out.append(f"- **Lag.** The standby's replay lag peaked at {_f(max(worst))} ms over "
                   f"the run (per phase above).")
    found = "; ".join(f"{_WHAT[k]} {v}" for k, v in verdicts.items()) or "nothing measured"
    out.append(
        f"- **What this means.** Both clusters, the broker, the ingestor, the API and the "
        f"benchmark's client share {cores} cores here: reading from the standby moves the "
        f"queries' CPU from the primary's processes to the standby's, adds no core, and costs "
        f"the replay and a second cache on top. What it can buy on one machine is isolation "
        f"(the queries no longer share the primary's backends, buffers and locks with the "
        f"ingestor's writes). In this run, reading from the standby rather than the primary "
        f"made {found} (a difference under 10 % counts as the same). The capacity a "
        f"standby is deployed for needs it on its own machine, where its cores serve the "
        f"reads and the primary's are left to the ingestor and the rollups; and on any "
        f"machine it keeps answering when the primary stops (tests/integration/test_replica.py).")
    return out


def markdown(doc: dict[str, Any]) -> str:
    """The results page."""
    m, s, ds = doc["machine"], doc["settings"], doc["dataset"]
    ss = m.get("standby_settings", {})
    lines = ["# Replica benchmark", "",
             f"Generated by `make bench-replica` (`python -m bench.replica`) on "
             f"{doc['generated_at']} in {doc['total_s']:.0f} s. Raw data: `replica.json`.", "",
             "## Machine", "",
             f"- CPU: {m['cpu']}, {m['cores']} cores; RAM {m['ram_gib']} GiB; {m['os']} "
             f"(kernel {m['kernel']})",
             f"- Python {m['python']}; Mosquitto {m['mosquitto']}; PostgreSQL "
             f"{m['postgresql']} + TimescaleDB {m['timescaledb']}, two clusters on this "
             f"machine: a primary and a hot standby (`pg_basebackup -R -X stream`, "
             f"asynchronous streaming; "
             + ", ".join(f"{k} {v}" for k, v in sorted(ss.items())) + ")",
             f"- Load average at start: "
             f"{', '.join(f'{x:.2f}' for x in m['loadavg_at_start'])}"]
    if doc.get("concurrent_activity"):
        lines.append(f"- Other processes were running: {'; '.join(doc['concurrent_activity'])}")
    rows = ds.get("rows") or {}
    lines += ["", "## Set-up", "",
              f"- Data read by the API: {ds['days']} local days of the demo city from "
              f"{ds['first']} ({sum(rows.values()):,} rows, loaded by binary COPY in "
              f"{_f(ds.get('load_s'))} s), hourly rollups built by `beffroi maintain "
              f"--rollups-only` on the primary, replayed by the standby.",
              f"- Ingest: one `beffroi ingest --workers {s['workers']}` writing to the primary "
              f"for the whole run; {s['publishers']} publishers sending slices of the ingest "
              f"benchmark's stream ({doc['stream']['messages']:,} messages, seed "
              f"{doc['stream']['seed']}) through the stack's Mosquitto: at "
              f"{_f(s['rate_msg_s'])} msg/s (paced) or {s['max_messages']:,} messages flat "
              f"out (max).",
              f"- API: `uvicorn api.main:create_app --factory`, one worker, reading from the "
              f"standby (`BEFFROI_DATABASE_READ_URL`) or from the primary; this process is "
              f"the client (bench.apilib.client: HTTP/1.1 keep-alive on asyncio streams), "
              f"{s['seconds_per_measurement']:g} s per route and client "
              f"count in the paced phases, {s['load_clients']} clients asking the routes in "
              f"turn during the flat-out phases.", ""]
    ps, pp = _phase(doc, "paced+api-standby"), _phase(doc, "paced+api-primary")
    if ps and pp:
        lines += [f"## API routes under the paced ingest ({_f(s['rate_msg_s'])} msg/s)", "",
                  "| route | clients | standby p50 ms | standby p99 ms | standby req/s | "
                  "primary p50 ms | primary p99 ms | primary req/s | errors s / p |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        prim = {(r["name"], r["clients"]): r for r in pp["routes"]}
        for r in ps["routes"]:
            q = prim.get((r["name"], r["clients"]), {})
            lines.append(f"| {r['name']} | {r['clients']} | {_f(r['p50_ms'])} | "
                         f"**{_f(r['p99_ms'])}** | {_f(r['rps'])} | {_f(q.get('p50_ms'))} | "
                         f"**{_f(q.get('p99_ms'))}** | {_f(q.get('rps'))} | {r['errors']} / "
                         f"{q.get('errors', '—')} |")
        same = doc.get("answers_equal", {})
        if same:
            differ = [k for k, v in same.items() if not v]
            lines += ["", "Answers through the standby equal the primary's (every route "
                      "asked of both at the end, once the ingest stopped and the standby "
                      "replayed it): " + ("yes, every route." if not differ else
                                         f"**no** for {', '.join(differ)}.")]
        lines.append("")
    lines += ["## Ingest", "",
              "| phase | API reads from | offered msg/s | messages | readings/s | latency p50 "
              "ms | latency p99 ms | API load req/s | API load p99 ms | API errors |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for p in doc["phases"]:
        load = p.get("api_load") or {}
        errors = (load.get("errors") if load else
                  sum(r["errors"] for r in p.get("routes", [])) if p.get("routes") else None)
        lines.append(f"| {p['phase']} | {p.get('api') or '—'} | "
                     f"{_f(p.get('offered_rate_msg_s'))} | {p['messages']:,} | "
                     f"**{_f(p['readings_per_s'])}** | {_f(p['latency_ms_p50'])} | "
                     f"{_f(p['latency_ms_p99'])} | {_f(load.get('rps'))} | "
                     f"{_f(load.get('p99_ms'))} | {_f(errors)} |")
    lines += ["", "## Replication lag", "",
              "Sampled every 0.25 s from the primary's `pg_stat_replication`; lag columns "
              "are reported by PostgreSQL only while WAL is in flight (samples: reported / "
              "taken).", "",
              "| phase | write lag p99 / max ms | flush lag p99 / max ms | replay lag p99 / "
              "max ms | replay kB behind p99 / max | samples |",
              "|---|---:|---:|---:|---:|---:|"]
    for p in doc["phases"]:
        lag = p["lag"]

        def pm(k: str, lag: dict[str, Any] = lag, scale: float = 1.0) -> str:
            p99, top = lag[k]["p99"], lag[k]["max"]
            return (f"{_f(None if p99 is None else p99 / scale)} / "
                    f"{_f(None if top is None else top / scale)}")

        rl = lag["replay_lag_ms"]
        lines.append(f"| {p['phase']} | {pm('write_lag_ms')} | {pm('flush_lag_ms')} | "
                     f"**{pm('replay_lag_ms')}** | {pm('replay_bytes_behind', scale=1024)} | "
                     f"{rl['reported']} / {rl['samples']} |")
    lines += ["", "## CPU", "",
              "Cores used on average over each phase (CPU seconds / wall seconds); 'other' "
              "is machine CPU no measured process accounts for.", "",
              "| phase | primary | standby | broker | ingestor | API | publishers | client | "
              "other | machine |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for p in doc["phases"]:
        c = p["cpu_cores"]
        lines.append(f"| {p['phase']} | " + " | ".join(_f(c.get(g), 2) for g in CORE_GROUPS)
                     + " |")
    lines += ["", "CPU per message (µs, over the phase's messages) and per request (ms, over "
              "the requests answered). 'database' is the CPU of the cluster the API reads "
              "from, 'servers' that of both clusters, broker, ingestor and API, beyond what "
              "the same kind of phase without API spent per message, per request: an "
              "estimate, noisy on short phases.", "",
              "| phase | primary µs/msg | standby µs/msg | broker µs/msg | ingestor µs/msg | "
              "API ms/req | database ms/req | servers ms/req |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for u in per_unit(doc["phases"]):
        um, ur = u["us_per_message"], u["ms_per_request"]
        lines.append(f"| {u['phase']} | " + " | ".join(_f(um.get(g)) for g in INGEST_GROUPS)
                     + f" | {_f(ur.get('api'), 2)} | {_f(ur.get('database'), 2)} | "
                     f"{_f(ur.get('servers'), 2)} |")
    c = doc["check"]
    lines += ["", "## Check", "",
              f"{c['messages_published']:,} messages ({c['readings_published']:,} readings) "
              f"published; {c['readings_stored_primary']:,} readings stored on the primary, "
              f"{c['dead_letters']} dead letters; the standby's row counts "
              f"{'equal' if c['standby_equals_primary'] else '**differ from**'} the "
              f"primary's once replayed: {'**passed**' if c['ok'] else '**FAILED**'}.", "",
              "## Reading", "", *reading(doc), ""]
    return "\n".join(lines)


__all__ = ["markdown", "per_unit", "reading", "requests"]
