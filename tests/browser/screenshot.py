"""Screenshots of a running dashboard, the way the browser tests take theirs (Debian's
Chromium through Playwright): ``python -m tests.browser.screenshot --api
http://127.0.0.1:8000 --out docs/`` with ``BEFFROI_TOKEN`` set. The README's picture is
made with it on ``make demo``."""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

log = logging.getLogger("dashboard_screenshot")

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def sign_in_link(api: str, token: str) -> str:
    """A one-time sign-in link for ``token``."""
    req = urllib.request.Request(f"{api}/v1/dashboard/links", method="POST",
                                 headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return f"{api}{json.loads(r.read())['path']}"


def main() -> int:
    """Sign in with a link, then save one PNG per page."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--api", default="http://127.0.0.1:8000")
    p.add_argument("--out", type=Path, default=Path("test-output/screenshots"))
    p.add_argument("--width", type=int, default=1400)
    p.add_argument("--height", type=int, default=1000)
    p.add_argument("pages", nargs="*", default=["ville"],
                   help="routes after #/, e.g. ville 'energie?range=7d'")
    args = p.parse_args()
    token = os.environ.get("BEFFROI_TOKEN")
    if not token:
        p.error("set BEFFROI_TOKEN (beffroi tokens create --name doc --scope read)")
    args.out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        # French date fields: Chromium takes its language from LANG (docs in conftest).
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS,
                                     env={**os.environ, "LANG": "fr_FR.UTF-8",
                                          "LANGUAGE": "fr"})
        page = browser.new_page(viewport={"width": args.width, "height": args.height},
                                locale="fr-FR")
        page.goto(sign_in_link(args.api, token))
        page.wait_for_selector("#ov-updated:not(:empty)", timeout=60_000)
        for route in args.pages:
            page.goto(f"{args.api}/#/{route}")
            if route.startswith("ville"):
                page.wait_for_selector("#ov-updated:not(:empty)", timeout=60_000)
            elif route.split("?")[0] in ("stationnement", "energie", "wifi"):
                page.wait_for_selector("#p-msg", state="attached", timeout=60_000)
                page.wait_for_function("() => !document.querySelector('#p-msg').textContent"
                                       ".startsWith('Chargement')", timeout=60_000)
            page.wait_for_load_state("networkidle")
            name = re.sub(r"[^a-z0-9]+", "-", route.lower()).strip("-")
            path = args.out / f"dashboard-{name}.png"
            page.screenshot(path=str(path), full_page=False)
            log.info("%s", path)
        browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
