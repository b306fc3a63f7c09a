"""Broker accounts and their client-id bindings, as files (the broker itself: test_credentials)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from beffroi.broker_auth import (
    ADMIN_USER,
    BrokerAccount,
    connection_user,
    dynsec_plan,
    render,
    render_dynsec,
    service_accounts,
)
from devices.registry import RegistryFileError, parse_registry
from simulators.publisher import SIM_KEY, accounts_for

PASSWORDS = {"ingest_password": "i", "sim_password": "s", "admin_password": "a"}


def test_each_service_connection_has_an_account_bound_to_one_client_id() -> None:
    accounts = service_accounts(prefix="city", ingest_connections=3, sim_connections=2,
                                ingest_client_id="ing", **PASSWORDS)
    by_user = {a.username: a for a in accounts}
    assert [u for u in by_user if u != ADMIN_USER] == [
        "beffroi-ingest-0", "beffroi-ingest-1", "beffroi-ingest-2",
        "beffroi-sim-0", "beffroi-sim-1"]
    assert [by_user[f"beffroi-ingest-{n}"].client_id for n in range(3)] == [
        "ing-0", "ing-1", "ing-2"]
    assert by_user["beffroi-sim-1"].client_id == "beffroi-sim-1"
    assert by_user[ADMIN_USER].client_id is None  # the operator's account, any client id
    bindings, _ = dynsec_plan(accounts)
    assert ADMIN_USER not in bindings
    assert {u: b.client_id for u, b in bindings.items()} == {
        a.username: a.client_id for a in accounts if a.username != ADMIN_USER}


@pytest.mark.parametrize(("ingest_user", "sim_user"), [
    ("beffroi-shared", "beffroi-sim-{n}"), ("beffroi-ingest-{n}", "beffroi-shared")])
def test_a_shared_service_account_is_refused(ingest_user: str, sim_user: str) -> None:
    with pytest.raises(ValueError, match="needs \\{n\\}"):
        service_accounts(prefix="city", ingest_password="i", sim_password="s",
                         admin_password="a", ingest_user=ingest_user, sim_user=sim_user)


def test_the_plugin_file_binds_and_restricts_subscriptions_only() -> None:
    accounts = [
        BrokerAccount("dev-1", "$7$h", write=("city/wifi/dev-1/#",), client_id="dev-1"),
        BrokerAccount("chirpstack", "$7$h", read=("application/#",),
                      write=("application/#",), client_id="chirpstack"),
        BrokerAccount("op", "$7$h", read=("#",), write=("#",)),
    ]
    doc = json.loads(render_dynsec(accounts))
    # No password and every default access denied: passwords and publish rights stay with
    # the password and ACL files (the plugin defers to them).
    assert doc["defaultACLAccess"] == {"publishClientSend": False,
                                       "publishClientReceive": False,
                                       "subscribe": False, "unsubscribe": False}
    clients = {c["username"]: c for c in doc["clients"]}
    assert set(clients) == {"dev-1", "chirpstack"}
    assert all("password" not in c for c in clients.values())
    assert clients["dev-1"]["clientid"] == "dev-1"
    roles = {r["rolename"]: r["acls"] for r in doc["roles"]}
    rules: dict[str, Any] = {u: roles[c["roles"][0]["rolename"]] for u, c in clients.items()}
    assert rules["dev-1"] == [{"acltype": "subscribePattern", "topic": "#", "priority": 0,
                               "allow": False}]
    assert [(r["topic"], r["allow"]) for r in rules["chirpstack"]] == [
        ("application/#", True), ("$share/+/application/#", True), ("#", False)]
    assert all(r["acltype"] == "subscribePattern" for r in rules["chirpstack"])


def test_two_accounts_of_one_name_are_refused() -> None:
    with pytest.raises(ValueError, match="two broker accounts named 'x'"):
        render([BrokerAccount("x", "$7$h"), BrokerAccount("x", "$7$h")])


def test_simulator_connections_use_their_own_accounts() -> None:
    assert connection_user("beffroi-sim-{n}", 3) == "beffroi-sim-3"
    pool = accounts_for(mode="pool", pool_size=2, sim=("beffroi-sim-{n}", "pw"), first=14)
    assert pool == {f"{SIM_KEY}-0": ("beffroi-sim-14", "pw"),
                    f"{SIM_KEY}-1": ("beffroi-sim-15", "pw")}
    per_device = accounts_for(mode="per-device", pool_size=1, sim=("beffroi-sim-{n}", "pw"),
                              device_passwords={"ap-1": "x"})
    assert per_device == {SIM_KEY: ("beffroi-sim-0", "pw"), "ap-1": ("ap-1", "x")}


@pytest.mark.parametrize("device_id", ["beffroi-ingest-0", "beffroi-sim-0", "chirpstack",
                                       "teleinfo"])
def test_device_ids_of_reserved_broker_accounts_are_refused(device_id: str) -> None:
    doc = {"sites": [{"id": "sq", "kind": "square", "name": "Place", "insee": "62041"}],
           "devices": [{"id": device_id, "family": "wifi_ap", "site_id": "sq", "name": "AP"}]}
    with pytest.raises(RegistryFileError, match="may not start with 'beffroi-'"):
        parse_registry(doc)
