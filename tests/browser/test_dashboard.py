"""The dashboard in Chromium: sign-in (link, pasted token, revoked token), every page in
French with no console error and no serious axe-core violation, the numbers shown equal the
API's (the 25 hours of 2026-10-25 included), CSV of what is shown, clear messages for bad
input, the overview refreshing when readings arrive through the broker, and replays that an
operator can start and stop and a read-only token cannot."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime

import httpx
import psycopg
import pytest
from playwright.sync_api import expect
from pydantic import SecretStr

from api.tokens import create_token, revoke_token
from beffroi.settings import Settings
from tests.browser.conftest import DST_DAY, WEEKDAY, ApiServer, Dash, Tab, axe_violations
from tests.integration.mqtt_helpers import publish_fast

pytestmark = [pytest.mark.stack, pytest.mark.browser]

PAGES = ["ville", "stationnement", "energie", "wifi", "equipements", "exploitation"]


def _values(tab: Tab, key: str) -> list[str]:
    values: list[str] = tab.page.locator(f"#p-table td[data-key='{key}']").evaluate_all(
        "tds => tds.map(td => td.dataset.value)")
    return values


def _same(shown: list[str], api: list[float | int | None]) -> None:
    assert len(shown) == len(api)
    for s, a in zip(shown, api, strict=True):
        if a is None:
            assert s == ""
        else:
            assert float(s) == pytest.approx(float(a), rel=1e-9, abs=1e-9), (s, a)


# -- sign-in ---------------------------------------------------------------------------------
def test_a_one_time_link_signs_in_once_and_leaves_no_secret_in_the_address(
        dash: Dash, tab: Tab) -> None:
    link = dash.link()
    code = link.split("code=")[1]
    tab.page.goto(link)
    tab.page.wait_for_url(re.compile(r".*#/ville.*"), timeout=20_000)
    expect(tab.page.locator("h1")).to_have_text("La ville maintenant")
    assert code not in tab.page.url and "bfr_" not in tab.page.url
    assert tab.page.evaluate("sessionStorage.getItem('beffroi.token')") == dash.tokens["operate"]
    # The page itself is served with a policy that allows no other origin, no inline script.
    r = httpx.get(f"{dash.base}/")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self';" in csp and "default-src 'none'" in csp and "http" not in csp
    # The same link again, in a new tab with nothing stored: refused, clearly.
    tab.expected_statuses.add(401)
    tab.page.evaluate("sessionStorage.clear()")
    tab.page.goto("about:blank")
    tab.page.goto(link)
    expect(tab.page.locator("#signin-msg")).to_contain_text("déjà utilisé ou expiré")
    assert tab.page.evaluate("sessionStorage.getItem('beffroi.token')") is None


def test_a_pasted_token_signs_in_and_a_revoked_one_goes_back_to_sign_in(
        dash: Dash, tab: Tab) -> None:
    with psycopg.connect(dash.db_url) as conn:
        token, info = create_token(conn, f"{dash.prefix}soon-revoked", ["read"])
    tab.expected_statuses.add(401)
    tab.goto(dash, "ville")
    tab.page.wait_for_url(re.compile(r".*#/connexion.*"))
    tab.page.fill("#signin-token", "bfr_not-a-token")
    tab.page.click("#signin-submit")
    expect(tab.page.locator("#signin-msg")).to_have_text("Ce jeton est inconnu ou révoqué.")
    tab.page.fill("#signin-token", token)
    tab.page.click("#signin-submit")
    tab.page.wait_for_selector("#ov-updated:not(:empty)", timeout=30_000)
    with psycopg.connect(dash.db_url) as conn:
        assert revoke_token(conn, token_id=info.id)
    tab.page.click("nav >> text=Stationnement")
    tab.page.wait_for_url(re.compile(r".*#/connexion\?reason=expired"), timeout=20_000)
    expect(tab.page.locator("#signin-msg")).to_contain_text("expiré ou a été révoqué")
    assert tab.page.evaluate("sessionStorage.getItem('beffroi.token')") is None


# -- every page ------------------------------------------------------------------------------
@pytest.mark.parametrize("route", PAGES)
def test_every_page_opens_in_french_without_serious_accessibility_violation(
        dash: Dash, tab: Tab, route: str) -> None:
    tab.sign_in(dash)
    short = {"energie": "dist", "stationnement": "pz", "wifi": "sq"}.get(route)
    tab.goto(dash, f"{route}?site={dash.site(short)}&from={DST_DAY}&to={DST_DAY}&bucket=1h"
             if short else route)
    page = tab.page
    expect(page.locator("nav a[aria-current='page']")).to_have_count(1)
    if route in ("stationnement", "energie", "wifi"):
        expect(page.locator("#p-msg")).to_contain_text("25 points")
        page.click("details.table-view summary")
    elif route == "equipements":
        expect(page.locator("#dev-table tbody tr")).to_have_count(len(dash.registry.devices))
    elif route == "exploitation":
        expect(page.locator("#op-start")).to_be_visible()
    else:
        page.wait_for_selector("#ov-updated:not(:empty)")
    assert page.locator("html").get_attribute("lang") == "fr"
    violations = axe_violations(page)
    assert violations == [], json.dumps(violations, indent=1, ensure_ascii=False)


def test_the_language_switch_shows_english_and_back(dash: Dash, tab: Tab) -> None:
    tab.sign_in(dash)
    tab.page.click("#lang-switch")
    expect(tab.page.locator("h1")).to_have_text("The city now")
    assert tab.page.locator("html").get_attribute("lang") == "en"
    tab.page.click("#lang-switch")
    expect(tab.page.locator("h1")).to_have_text("La ville maintenant")


def test_the_footer_links_to_the_open_data_without_a_token(dash: Dash, tab: Tab) -> None:
    tab.sign_in(dash)
    link = tab.page.locator("#foot-opendata")
    expect(link).to_have_text(re.compile("^Données ouvertes de la ville"))
    assert link.get_attribute("href") == "/opendata"
    # Public: no token needed (404 until a first publication, never 401)
    r = httpx.get(f"{dash.base}/opendata", timeout=10)
    assert r.status_code in (200, 404), r.text
    tab.page.click("#lang-switch")
    expect(link).to_have_text(re.compile("^The city's open data"))


# -- numbers ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("route", "site", "metric", "route_api", "key"), [
    ("energie", "dist", "energy", "/v1/grid/districts/{}/energy", "import_wh"),
    ("energie", "dist", "load", "/v1/grid/districts/{}/energy", "mean_power_w"),
    ("stationnement", "pz", "occupancy", "/v1/parking/zones/{}/occupancy", "occupancy"),
    ("wifi", "sq", "clients", "/v1/wifi/squares/{}/clients", "clients_mean"),
])
def test_the_dst_day_shows_the_apis_25_hours(dash: Dash, tab: Tab, route: str, site: str,
                                             metric: str, route_api: str, key: str) -> None:
    tab.sign_in(dash)
    sid = dash.site(site)
    tab.goto(dash, f"{route}?site={sid}&metric={metric}&from={DST_DAY}&to={DST_DAY}&bucket=1h")
    page = tab.page
    expect(page.locator("#p-msg")).to_contain_text("25 points")
    page.click("details.table-view summary")
    api = dash.api(route_api.format(sid), **{"from": DST_DAY, "to": "2026-10-26",
                                            "bucket": "1h"})
    assert len(api["data"]) == 25
    starts = page.locator("#p-table tbody tr").evaluate_all("trs => trs.map(t => t.dataset.start)")
    assert starts == [r["start"] for r in api["data"]]
    _same(_values(tab, key), [r[key] for r in api["data"]])
    assert any(r[key] for r in api["data"]), "the day has data"
    # The hour repeated when clocks go back is told apart, in the city's time.
    heads = page.locator("#p-table tbody th").all_inner_texts()
    assert heads[0] == "25/10/2026 00:00"
    assert sum(h.startswith("25/10/2026 02:00") for h in heads) == 2
    assert heads[2] != heads[3]


def test_the_csv_is_what_is_shown(dash: Dash, tab: Tab) -> None:
    tab.sign_in(dash)
    sid = dash.site("dist")
    tab.goto(dash, f"energie?site={sid}&metric=energy&from={DST_DAY}&to={DST_DAY}&bucket=1h")
    expect(tab.page.locator("#p-msg")).to_contain_text("25 points")
    with tab.page.expect_download() as dl:
        tab.page.click("#p-csv")
    text = dl.value.path().read_text(encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    api = dash.api(f"/v1/grid/districts/{sid}/energy", **{"from": DST_DAY, "to": "2026-10-26",
                                                          "bucket": "1h"})["data"]
    assert [r["start"] for r in rows] == [r["start"] for r in api]
    _same([r["import_wh"] for r in rows], [r["import_wh"] for r in api])


def test_a_year_at_daily_buckets_and_the_offered_buckets(dash: Dash, tab: Tab) -> None:
    tab.sign_in(dash)
    tab.goto(dash, f"energie?site={dash.site('dist')}&metric=energy&range=year")
    expect(tab.page.locator("#p-msg")).to_contain_text("365 points")
    offered = tab.page.locator("#p-bucket option").evaluate_all("os => os.map(o => o.value)")
    assert offered == ["1h", "1d", "1w", "1mo"]  # 5m..30m are refused for a year
    tab.goto(dash, f"wifi?site={dash.site('sq')}&metric=visitors&range=7d")
    expect(tab.page.locator("#p-bucket option")).to_have_count(2)  # 1h and 1d only


# -- bad input -------------------------------------------------------------------------------
def test_bad_input_gets_a_clear_message_never_a_blank_chart(dash: Dash, tab: Tab) -> None:
    tab.sign_in(dash)
    tab.expected_statuses |= {404, 422}
    page = tab.page
    cases = [
        ("stationnement?site=nowhere&range=today", "Site ou équipement inconnu : « nowhere »"),
        (f"energie?site={dash.site('dist')}&from=2026-10-20&to=2026-10-19",
         "La période choisie est vide"),
        (f"energie?site={dash.site('dist')}&from=2026-10-20&to=2026-10-20",
         "Aucune donnée ce jour-là"),
        (f"energie?site={dash.site('dist')}&from=1990-01-01&to=1990-01-01",
         "Demande refusée par le serveur"),
        ("equipements?device=ghost-device", "Site ou équipement inconnu : « ghost-device »"),
    ]
    for route, message in cases:
        tab.goto(dash, route)
        page.reload()
        msg = page.locator(".msg.error, .msg.warn").first
        expect(msg).to_contain_text(message)
        assert page.locator(".chart:not([hidden]) canvas").count() == 0


def test_a_request_past_the_statement_timeout_gets_a_clear_message_not_a_hang(
        dash: Dash, tab: Tab, settings: Settings) -> None:
    """The grid readings locked by another transaction and an API with a 0.5 s statement
    timeout: the database cancels the energy queries (503). The chart says the request took
    too long and what to do; the overview says it too, and drops the message at the first
    refresh that works once the lock is gone."""
    from api.main import create_app

    tab.expected_statuses.add(503)
    page = tab.page
    app = create_app(settings.model_copy(update={
        "database_url": SecretStr(dash.db_url), "ingest_metrics_port": 0,
        "api_statement_timeout_s": 0.5}))
    too_long = "La demande a pris trop de temps et a été abandonnée"
    with ApiServer(app) as server, psycopg.connect(dash.db_url) as locker:
        page.goto(f"{server.base}/#/connexion")
        page.evaluate("t => sessionStorage.setItem('beffroi.token', t)", dash.tokens["read"])
        locker.execute("LOCK TABLE grid_readings IN ACCESS EXCLUSIVE MODE")
        page.goto(f"{server.base}/#/energie?site={dash.site('dist')}&metric=energy"
                  "&range=year")
        expect(page.locator("#p-msg.error")).to_contain_text(too_long, timeout=20_000)
        assert page.locator(".chart:not([hidden]) canvas").count() == 0
        page.goto(f"{server.base}/#/ville?refresh=2")
        expect(page.locator("#status.error")).to_contain_text(too_long, timeout=20_000)
        expect(page.locator("#ov-updated")).to_be_empty()
        locker.rollback()
        expect(page.locator("#ov-updated")).not_to_be_empty(timeout=20_000)
        expect(page.locator("#status")).to_be_empty()


# -- live ------------------------------------------------------------------------------------
def test_the_overview_refreshes_when_readings_arrive(dash: Dash, tab: Tab) -> None:
    tab.sign_in(dash)
    tab.goto(dash, "ville?refresh=2")
    page = tab.page
    zone = page.locator(f"#ov-sites tr[data-site='{dash.site('pz')}'] td.now")
    expect(zone).to_have_attribute("data-value", "")  # nothing recent: the DST day is old
    spots = [d.id for d in dash.registry.devices if d.family == "parking_spot"]
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    publish_fast(dash.stack, [(f"{dash.topic_prefix}/parking/{s}/state",
                               json.dumps({"ts": now, "state": "occupied"}).encode())
                              for s in spots])
    expect(zone).to_have_attribute("data-value", "1", timeout=30_000)
    expect(zone).to_contain_text(f"{len(spots)} places occupées sur {len(spots)}")
    online = page.locator(f"#ov-sites tr[data-site='{dash.site('pz')}'] td[data-status='online']")
    expect(online).to_have_text(str(len(spots)))


# -- operations ------------------------------------------------------------------------------
def test_an_operator_starts_and_stops_a_replay(dash: Dash, tab: Tab) -> None:
    tab.sign_in(dash)
    tab.goto(dash, "exploitation")
    page = tab.page
    page.select_option("#op-scenario", "slow")
    page.fill("#op-speed", "60")
    page.click("#op-start")
    expect(page.locator("#op-msg")).to_contain_text("lancé")
    run_id = re.search(r"Rejeu (\w+) lancé", page.locator("#op-msg").inner_text())
    assert run_id
    row = page.locator(f"#op-runs-table tr[data-run='{run_id[1]}']")
    expect(row).to_have_attribute("data-state", "running", timeout=30_000)
    sent = row.locator("td[data-value]")
    expect(sent).not_to_have_attribute("data-value", "0", timeout=30_000)
    row.locator("button[data-stop]").click()
    expect(row).to_have_attribute("data-state", "stopped", timeout=30_000)
    assert dash.api(f"/v1/operate/runs/{run_id[1]}")["state"] == "stopped"
    expect(page.locator("#op-msg")).to_contain_text("arrêté après")


def test_a_read_only_token_cannot_start_a_replay(dash: Dash, tab: Tab) -> None:
    before = dash.api("/v1/operate/runs")["count"]
    tab.sign_in(dash, "read")
    tab.expected_statuses.add(403)
    tab.goto(dash, "exploitation")
    expect(tab.page.locator("#op-forbidden")).to_contain_text("réservée aux exploitants")
    assert tab.page.locator("#op-start").count() == 0
    assert dash.api("/v1/operate/runs")["count"] == before


# Every indicator of every page, on the DST day: the table holds the API's numbers.
INDICATORS = [
    ("stationnement", "pz", "turnover", "/v1/parking/zones/{}/turnover", ["arrivals"], "1h"),
    ("stationnement", "pz", "stay", "/v1/parking/zones/{}/turnover", ["mean_stay_s"], "1h"),
    ("stationnement", "pz", "revenue", "/v1/parking/zones/{}/revenue",
     [f"revenue_cents_{m}" for m in ("card", "contactless", "coins", "mobile")], "1h"),
    ("stationnement", "pz", "faults", "/v1/parking/zones/{}/revenue", ["meter_faults"], "1h"),
    ("energie", "dist", "peaks", "/v1/grid/districts/{}/peaks", ["peak_power_w"], "1d"),
    ("energie", "dist", "voltage", "/v1/grid/districts/{}/voltage", ["min_v", "max_v"], "1d"),
    ("energie", "dist", "export", "/v1/grid/districts/{}/export", ["export_wh", "import_wh"],
     "1h"),
    ("energie", "dist", "voltage", "/v1/grid/districts/{}/voltage", ["share_within"], "1h"),
    ("wifi", "sq", "visitors", "/v1/wifi/squares/{}/visitors", ["unique_visitors"], "1h"),
    ("wifi", "sq", "dwell", "/v1/wifi/squares/{}/dwell", ["mean_dwell_s"], "1h"),
    ("wifi", "sq", "traffic", "/v1/wifi/squares/{}/traffic", ["rx_bytes", "tx_bytes"], "1h"),
]


def test_every_indicator_shows_the_apis_numbers(dash: Dash, tab: Tab) -> None:
    tab.sign_in(dash)
    page = tab.page
    empty = []
    for route, site, metric, path, keys, bucket in INDICATORS:
        sid = dash.site(site)
        paid = metric in ("revenue", "faults")
        day, after = (WEEKDAY, "2026-10-28") if paid else (DST_DAY, "2026-10-26")
        tab.goto(dash, f"{route}?site={sid}&metric={metric}&from={day}&to={day}"
                 f"&bucket={bucket}")
        page.reload()
        api = dash.api(path.format(sid), **{"from": day, "to": after, "bucket": bucket})["data"]
        msg = page.locator("#p-msg")
        expect(msg).to_have_text(re.compile("point|Aucune donnée"))  # drawn, or said empty
        if "Aucune donnée" in msg.inner_text():
            assert all(not r[k] for r in api for k in keys), (metric, "no data shown")
            empty.append(metric)
            continue
        expect(msg).to_contain_text(f"{len(api)} point")
        for key in keys:
            _same(_values(tab, key), [r[key] for r in api])
        if metric == "peaks":  # when the peak was, in the city's time
            when = page.locator("#p-table td[data-key='peak_at']").first
            expect(when).to_have_attribute("data-value", api[0]["peak_at"])
            expect(when).to_contain_text("25/10/2026 ")
    # The ingestor refuses wifi sessions of a day that is over (per-client data), so a past
    # day has no visitors nor dwell times; every other indicator has data.
    assert set(empty) <= {"visitors", "dwell"}, empty


def test_a_device_page_shows_its_latest_readings_and_history(dash: Dash, tab: Tab) -> None:
    tab.sign_in(dash)
    # A sensor that spoke that day: the simulation leaves some sensors silent, drawn from
    # streams keyed by the (random) zone id, so the registry's first spot may have nothing.
    with psycopg.connect(dash.db_url) as conn:
        row = conn.execute(
            "SELECT device_id FROM parking_spot_state WHERE device_id = ANY(%s)"
            " AND time >= %s AND time < %s AND state IN ('free', 'occupied')"
            " GROUP BY device_id ORDER BY count(*) DESC, device_id LIMIT 1",
            ([d.id for d in dash.registry.devices if d.family == "parking_spot"],
             f"{DST_DAY}T00:00+02:00", f"{DST_DAY}T23:59+01:00")).fetchone()
    assert row is not None, "no spot sensor reported on the DST day"
    spot: str = row[0]
    tab.goto(dash, "equipements")
    tab.page.click(f"#dev-table tr[data-device='{spot}'] a")
    expect(tab.page.locator("#dev-facts-list")).to_contain_text(spot)
    tab.goto(dash, f"equipements?device={spot}&from={DST_DAY}&to={DST_DAY}&bucket=1h")
    tab.page.reload()
    expect(tab.page.locator("#p-msg")).to_contain_text("25 points")
    api = dash.api(f"/v1/parking/spots/{spot}/occupancy",
                   **{"from": DST_DAY, "to": "2026-10-26", "bucket": "1h"})["data"]
    _same(_values(tab, "occupancy"), [r["occupancy"] for r in api])
    assert "device=" in tab.page.url


def test_the_keyboard_reaches_the_content_the_menu_and_the_chart_controls(
        dash: Dash, tab: Tab) -> None:
    tab.sign_in(dash)
    tab.goto(dash, f"energie?site={dash.site('dist')}&from={DST_DAY}&to={DST_DAY}&bucket=1h")
    page = tab.page
    page.reload()  # a fresh load: the first Tab stop is the skip link
    expect(page.locator("#p-msg")).to_contain_text("25 points")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "skip-link"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    focused: list[str] = []
    for _ in range(16):
        page.keyboard.press("Tab")
        now = page.evaluate("document.activeElement.id || document.activeElement.tagName")
        if not focused or focused[-1] != now:  # a date field has a stop per part
            focused.append(now)
    assert focused[:7] == ["p-site", "p-metric", "p-range", "p-from", "p-to", "p-bucket",
                           "p-csv"], focused
    # A control changed from the keyboard redraws: the step goes from hour to day.
    page.focus("#p-bucket")
    page.keyboard.press("ArrowDown")
    expect(page.locator("#p-msg")).to_contain_text("1 point")
