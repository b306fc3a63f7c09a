"""``beffroi devices``: the registry of sites and devices, and devices' broker credentials."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

from beffroi import endpoints
from beffroi.broker_auth import BrokerAccount, ingest_accounts, sim_accounts
from beffroi.context import CommandError, Context
from devices import credentials as creds
from devices import store
from devices.families import BRIDGE_TREES, Family
from devices.registry import RegistryFileError, load_registry_file

log = logging.getLogger(__name__)

FAMILIES = [f.value for f in Family]
BRIDGES = sorted(BRIDGE_TREES)


def register(sub: Any) -> None:
    """Add ``devices`` and its subcommands."""
    p = sub.add_parser(
        "devices", help="import, list and show sites and devices; manage device credentials",
        description="The device registry (see docs/registry.md).")
    ds = p.add_subparsers(dest="devices_command", required=True, metavar="ACTION")

    imp = ds.add_parser("import", help="import a registry file (.json or .csv)",
                        description="Validate every row, then insert or update all sites and "
                        "devices in one transaction; a file with any bad row imports nothing.")
    imp.add_argument("file", type=Path, help="registry file, e.g. devices/data/demo-city.json")
    imp.add_argument("--dry-run", action="store_true",
                     help="check against the database, change nothing")
    imp.set_defaults(handler=_import)

    ls = ds.add_parser("list", help="list devices")
    ls.add_argument("--family", choices=FAMILIES)
    ls.add_argument("--site", metavar="SITE_ID")
    ls.add_argument("--format", choices=("table", "json"), default="table")
    ls.set_defaults(handler=_list)

    show = ds.add_parser("show", help="one device, with its latest message time")
    show.add_argument("device_id", metavar="ID")
    show.set_defaults(handler=_show)

    sites = ds.add_parser("sites", help="list sites with their device counts")
    sites.add_argument("--format", choices=("table", "json"), default="table")
    sites.set_defaults(handler=_sites)

    c = ds.add_parser(
        "credentials", help="per-device broker credentials",
        description="Each device's broker user name, and the only client id it may connect "
        "with, is its id; it may publish only under {prefix}/{segment}/{id}/. The bridges "
        "(--bridge chirpstack, --bridge teleinfo) get accounts of the same kind that own their "
        "topic tree. Clear passwords are printed once (CSV device_id,username,password) and "
        "only their hash is stored. --export DIR writes the broker's files (Beffroi's ingestor and "
        "simulator accounts included); the development stack's broker applies changes without "
        "restarting (docs/registry.md, docs/deploy.md).")
    cs = c.add_subparsers(dest="credentials_command", required=True, metavar="ACTION")
    for name, helptext in (
        ("generate", "issue credentials to devices that have none active"),
        ("rotate", "replace the passwords of devices with active credentials"),
        ("revoke", "revoke credentials: the devices can no longer connect"),
    ):
        a = cs.add_parser(name, help=helptext)
        _add_targets(a)
        if name == "generate":
            a.add_argument("--force", action="store_true",
                           help="also replace credentials that are active")
        if name != "revoke":
            a.add_argument("--output", type=Path, metavar="FILE",
                           help="write the passwords CSV to FILE (mode 600) instead of stdout")
        a.add_argument("--export", type=Path, metavar="DIR",
                       help="write Mosquitto passwd, acl and dynamic-security.json files of "
                       "Beffroi's, the bridges' and the devices' accounts to DIR (e.g. "
                       "deploy/mosquitto) instead of updating the development stack's broker")
        a.set_defaults(handler=_credentials, credentials_action=name)
    lc = cs.add_parser("list", help="show stored credentials of devices and bridges "
                       "(never passwords)")
    lc.add_argument("ids", nargs="*", metavar="ID")
    lc.add_argument("--family", choices=FAMILIES)
    lc.set_defaults(handler=_credentials_list)
    sy = cs.add_parser("sync", help="rewrite the broker's device accounts from the database")
    sy.add_argument("--export", type=Path, metavar="DIR",
                    help="write Mosquitto passwd, acl and dynamic-security.json files to "
                    "DIR instead")
    sy.set_defaults(handler=_credentials_sync)


def _add_targets(p: argparse.ArgumentParser) -> None:
    p.add_argument("ids", nargs="*", metavar="ID", help="device ids")
    p.add_argument("--all", action="store_true", help="every device")
    p.add_argument("--family", choices=FAMILIES, help="every device of this family")
    p.add_argument("--bridge", action="append", choices=BRIDGES, metavar="NAME",
                   help="a bridge account instead of devices: chirpstack (LoRaWAN network "
                   "server) or teleinfo (Linky TIC bridge); repeatable")


@contextmanager
def _connect(ctx: Context) -> Iterator[psycopg.Connection[Any]]:
    try:
        conn = psycopg.connect(ctx.database_url(), autocommit=True)
    except psycopg.OperationalError as exc:
        raise CommandError(f"cannot connect to the database ({exc}); "
                           "is the stack up (`beffroi stack up`)?") from exc
    with conn:
        try:
            yield conn
        except psycopg.errors.UndefinedTable as exc:
            raise CommandError(f"{exc.diag.message_primary}: run `beffroi migrate` first"
                               ) from exc


def _table(rows: Sequence[Sequence[object]], header: Sequence[str]) -> None:
    cells = [[("" if v is None else str(v)) for v in r] for r in [header, *rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for r in cells:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())


# -- registry -----------------------------------------------------------------------------

def _import(ctx: Context, args: argparse.Namespace) -> int:
    try:
        reg = load_registry_file(args.file)
        with _connect(ctx) as conn:
            result = store.import_registry(conn, reg, dry_run=args.dry_run)
            has_creds = not args.dry_run and _has_credentials(conn)
            local = ctx.local_broker()
            if has_creds and local is not None:
                # Devices made inactive lose their broker account now.
                local.write_broker_auth(_accounts(ctx, conn))
    except RegistryFileError as exc:
        raise CommandError(str(exc)) from exc
    verb = "would import" if args.dry_run else "imported"
    print(f"{verb} {args.file}: sites {result.sites_inserted} new, {result.sites_updated} "
          f"updated; devices {result.devices_inserted} new, {result.devices_updated} updated")
    if has_creds and ctx.local_broker() is None:
        print("devices with credentials changed: run `beffroi devices credentials sync --export "
              "DIR` and restart the broker (docs/deploy.md)")
    return 0


def _has_credentials(conn: psycopg.Connection[Any]) -> bool:
    """True if some device has broker credentials (False before migration 004)."""
    row = conn.execute("SELECT to_regclass('device_credentials') IS NOT NULL").fetchone()
    if row is None or not row[0]:
        return False
    return conn.execute("SELECT EXISTS (SELECT 1 FROM device_credentials)").fetchone() == (True,)


def _list(ctx: Context, args: argparse.Namespace) -> int:
    with _connect(ctx) as conn:
        devices = store.list_devices(conn, family=args.family, site=args.site)
    if args.format == "json":
        print(json.dumps([d.model_dump(mode="json") for d in devices], ensure_ascii=False,
                         indent=2))
        return 0
    _table([(d.id, d.family.value, d.site_id, d.report_interval_s, "yes" if d.active else "no",
             d.dev_eui or d.meter_serial or d.meter_id, d.name) for d in devices],
           ("ID", "FAMILY", "SITE", "INTERVAL_S", "ACTIVE", "DEVEUI/METER", "NAME"))
    print(f"({len(devices)} devices)", file=sys.stderr)
    return 0


def _show(ctx: Context, args: argparse.Namespace) -> int:
    with _connect(ctx) as conn:
        device = store.get_device(conn, args.device_id)
        if device is None:
            raise CommandError(f"no device {args.device_id!r}")
        last = store.last_message_at(conn, device)
        cred = creds.list_credentials(conn, [device.id])
    for key, value in device.model_dump(mode="json").items():
        if key == "metadata":
            value = json.dumps(value, ensure_ascii=False)
        print(f"{key:<18} {'' if value is None else value}")
    print(f"{'last_message_at':<18} {last.isoformat() if last else 'never'}")
    print(f"{'credentials':<18} {cred[0].state if cred else 'none'}")
    return 0


def _sites(ctx: Context, args: argparse.Namespace) -> int:
    with _connect(ctx) as conn:
        sites = store.list_sites(conn)
        counts = store.device_counts(conn)
    if args.format == "json":
        print(json.dumps([s.model_dump(mode="json") | {"devices": counts.get(s.id, 0)}
                          for s in sites], ensure_ascii=False, indent=2))
        return 0
    _table([(s.id, s.kind.value, s.insee, s.capacity, counts.get(s.id, 0), s.name)
            for s in sites], ("ID", "KIND", "INSEE", "CAPACITY", "DEVICES", "NAME"))
    return 0


# -- credentials --------------------------------------------------------------------------

def _accounts(ctx: Context, conn: psycopg.Connection[Any]) -> list[BrokerAccount]:
    return creds.broker_accounts(conn, ctx.settings.topic_prefix, ctx.settings.bridge_prefix)


def _targets(conn: psycopg.Connection[Any], args: argparse.Namespace) -> list[str]:
    chosen = sum((bool(args.ids), args.all, args.family is not None, bool(args.bridge)))
    if chosen != 1:
        raise CommandError("give device ids, or --all, or --family F, or --bridge NAME "
                           "(exactly one of them)")
    if args.bridge:
        return list(dict.fromkeys(args.bridge))
    if args.ids:
        ids: list[str] = list(dict.fromkeys(args.ids))
        rows = conn.execute("SELECT id FROM devices WHERE id = ANY(%s)", (ids,)).fetchall()
        known = {r[0] for r in rows}
        unknown = [i for i in ids if i not in known]
        if unknown:
            raise CommandError(f"unknown device(s): {', '.join(unknown)}")
        return ids
    return [d.id for d in store.list_devices(conn, family=args.family)]


def _service_accounts(ctx: Context) -> list[BrokerAccount]:
    """Beffroi's own accounts for an exported broker: the ingestor's workers (needs
    BEFFROI_INGEST_MQTT_PASSWORD), and the simulator's when BEFFROI_SIM_MQTT_PASSWORD is set."""
    s = ctx.client_settings
    user, password = endpoints.broker_credentials(s, "ingest")
    try:
        out = ingest_accounts(prefix=s.topic_prefix, password=password, user=user,
                              client_id=s.ingest_client_id, connections=s.ingest_max_workers,
                              bridge_prefix=s.bridge_prefix)
        if s.sim_mqtt_password is not None:
            out += sim_accounts(prefix=s.topic_prefix,
                                password=s.sim_mqtt_password.get_secret_value(),
                                user=s.sim_mqtt_username, connections=s.sim_max_connections,
                                bridge_prefix=s.bridge_prefix)
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    return out


def _apply(ctx: Context, conn: psycopg.Connection[Any], export: Path | None) -> None:
    accounts = _accounts(ctx, conn)
    if export is not None:
        service = _service_accounts(ctx)
        passwd, acl, bindings = creds.export_broker_files([*service, *accounts], export)
        print(f"wrote {passwd}, {acl} and {bindings}: {len(service)} ingestor and simulator "
              f"connection accounts, {len(accounts)} device and bridge accounts; restart the "
              "broker (its dynamic-security plugin reads its file at start only)",
              file=sys.stderr)
        return
    local = ctx.local_broker()
    assert local is not None  # _check_broker
    local.write_broker_auth(accounts)
    print(f"broker updated: {len(accounts)} device and bridge accounts", file=sys.stderr)


def _check_broker(ctx: Context, export: Path | None) -> None:
    if export is not None:
        endpoints.broker_credentials(ctx.client_settings, "ingest")  # before any change
    elif ctx.local_broker() is None:
        raise CommandError("pass --export DIR to get the broker's passwd, acl and "
                           "dynamic-security.json files (only the development stack's broker, "
                           "BEFFROI_DEV_STACK=1, is updated in place)")


def _credentials(ctx: Context, args: argparse.Namespace) -> int:
    _check_broker(ctx, args.export)
    output: Path | None = getattr(args, "output", None)
    if output is not None and not output.parent.is_dir():
        raise CommandError(f"{output.parent} is not a directory")
    with _connect(ctx) as conn:
        ids = _targets(conn, args)
        if args.bridge:
            if args.credentials_action == "generate":
                change = creds.issue_bridges(conn, ids, force=args.force)
            elif args.credentials_action == "rotate":
                change = creds.rotate_bridges(conn, ids)
            else:
                change = creds.revoke_bridges(conn, ids)
        elif args.credentials_action == "generate":
            change = creds.issue(conn, ids, force=args.force)
        elif args.credentials_action == "rotate":
            change = creds.rotate(conn, ids)
        else:
            change = creds.revoke(conn, ids)
        # The hashes are committed: hand out the passwords before touching the broker, so
        # that a broker problem never loses them (`credentials sync` retries the broker).
        if change.issued:
            if output is not None:
                creds.write_passwords_file(change.issued, output)
                print(f"wrote {len(change.issued)} password(s) to {output}", file=sys.stderr)
            else:
                creds.write_passwords_csv(change.issued, sys.stdout)
                sys.stdout.flush()
        for dev_id, reason in change.skipped:
            print(f"skipped {dev_id}: {reason}", file=sys.stderr)
        if change.revoked:
            what = "bridge" if args.bridge else "device"
            print(f"revoked {len(change.revoked)} {what}(s)", file=sys.stderr)
        if change.changed:
            _apply(ctx, conn, args.export)
    return 0


def _credentials_list(ctx: Context, args: argparse.Namespace) -> int:
    with _connect(ctx) as conn:
        rows = creds.list_credentials(conn, args.ids or None)
        bridges = [] if args.ids or args.family else creds.list_bridge_credentials(conn)
    if args.family:
        rows = [r for r in rows if r.family.value == args.family]

    def when(t: Any) -> str:
        return t.isoformat(timespec="seconds") if t is not None else ""

    _table([*((r.device_id, r.family.value, r.state, when(r.created_at), when(r.rotated_at),
               when(r.revoked_at)) for r in rows),
            *((name, "bridge", state, when(c), when(r), when(v))
              for name, state, c, r, v in bridges)],
           ("DEVICE", "FAMILY", "STATE", "CREATED", "ROTATED", "REVOKED"))
    return 0


def _credentials_sync(ctx: Context, args: argparse.Namespace) -> int:
    _check_broker(ctx, args.export)
    with _connect(ctx) as conn:
        _apply(ctx, conn, args.export)
    return 0
