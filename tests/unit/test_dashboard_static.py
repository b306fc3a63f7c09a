"""The dashboard's shipped files: every third-party file is in the vendor manifest with its
checksum, both language catalogues have the same keys and every key the pages use, no page
script is inline, and one-time sign-in codes work once and expire."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from api.dashboard.routes import content_security_policy, static_dir
from api.dashboard.signin import SignInCodes
from beffroi.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
STATIC = static_dir()


def test_the_static_files_are_package_data() -> None:
    assert (STATIC / "index.html").is_file()
    assert STATIC.is_relative_to(ROOT / "api" / "dashboard")


def test_every_vendored_file_is_in_the_manifest_with_its_checksum() -> None:
    for root in (STATIC / "vendor", ROOT / "tests" / "browser" / "vendor"):
        manifest = json.loads((root / "MANIFEST.json").read_text(encoding="utf-8"))
        listed: dict[str, str] = {}
        for pkg in manifest["packages"]:
            assert pkg["name"] and re.fullmatch(r"\d+\.\d+\.\d+", pkg["version"])
            assert pkg["license"] in ("MIT", "BSD-2-Clause", "MPL-2.0")
            listed |= pkg["files"]
        on_disk = {p.relative_to(ROOT).as_posix() for p in root.rglob("*")
                   if p.is_file() and p.name != "MANIFEST.json"}
        assert on_disk == set(listed)
        for rel, digest in listed.items():
            assert hashlib.sha256((ROOT / rel).read_bytes()).hexdigest() == digest, rel


def test_catalogues_have_the_same_keys_and_every_key_used() -> None:
    fr = json.loads((STATIC / "i18n" / "fr.json").read_text(encoding="utf-8"))
    en = json.loads((STATIC / "i18n" / "en.json").read_text(encoding="utf-8"))
    assert set(fr) == set(en)
    assert all(v.strip() for v in (*fr.values(), *en.values()))
    source = "\n".join(p.read_text(encoding="utf-8") for p in (STATIC / "js").glob("*.js"))
    used = set(re.findall(r"""t\(\s*'([a-z_]+\.[a-z_0-9]+)'""", source))
    used |= set(re.findall(r"""label: '([a-z]+\.[a-z_0-9]+)'""", source))
    assert used and used <= set(fr), sorted(used - set(fr))


def test_no_inline_script_or_style_in_the_page() -> None:
    html = (STATIC / "index.html").read_text(encoding="utf-8")
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", html, re.S)
    assert scripts and all('src="/dashboard/static/' in attrs and not body.strip()
                           for attrs, body in scripts)
    assert "<style" not in html and " style=" not in html and "http" not in html


def test_the_policy_allows_only_the_configured_tile_server() -> None:
    plain = content_security_policy(Settings())
    assert "http" not in plain and "'unsafe-inline'" not in plain
    tiles = content_security_policy(
        Settings(dashboard_tile_url="https://tiles.example.org/{z}/{x}/{y}.png"))
    assert "img-src 'self' data: blob: https://tiles.example.org;" in tiles
    assert "script-src 'self';" in tiles


def test_a_code_works_once_and_expires() -> None:
    now = [1000.0]
    codes = SignInCodes(ttl_s=300, clock=lambda: now[0])
    code, _ = codes.issue("bfr_token")
    assert codes.redeem("nope-nope") is None
    assert codes.redeem(code) == "bfr_token"
    assert codes.redeem(code) is None
    late, _ = codes.issue("bfr_other")
    now[0] += 301
    assert codes.redeem(late) is None
