"""Power actions over the bus against real BMCs: ipmi_sim, sushy-tools, libvirt, a webhook."""

from __future__ import annotations

import json
import logging
import xml.etree.ElementTree as ET

import pytest
from sqlalchemy import text

from metalbus.shared.contract import power as p
from metalbus.shared.errors import Conflict, ServiceUnavailable, ValidationFailed
from tests.power.conftest import (
    PASSWORD,
    BmcFarm,
    IpmiSim,
    PowerUnderTest,
    Sushy,
    Webhook,
    free_port,
)


async def create(
    power: PowerUnderTest, driver: str, settings: dict[str, object], name: str = ""
) -> p.Bmc:
    bmc: p.Bmc = await power.call(
        p.BMC_CREATE, {"name": name or f"{driver}-1", "driver": driver, "settings": settings}
    )
    return bmc


async def test_ipmi_actions_are_safe_and_confirmed_against_ipmi_sim(
    power: PowerUnderTest, ipmi_sim: IpmiSim
) -> None:
    bmc = await create(power, "ipmi", ipmi_sim.settings())
    assert bmc.secrets_set == ["password"] and "password" not in bmc.settings
    assert bmc.host == "127.0.0.1" and bmc.power_state is p.PowerState.UNKNOWN

    result = await power.call(
        p.POWER_ON, {"id": bmc.id, "boot": {"device": "pxe", "mode": "legacy"}}
    )
    assert (result.power_state, result.changed) == (p.PowerState.ON, True)
    assert ipmi_sim.power == "on" and ipmi_sim.boot == "pxe"
    assert "Chassis Power is on" in ipmi_sim.ipmitool("chassis", "power", "status").stdout
    changed = await power.wait_event("state.changed", bmc.id)
    assert changed[0].data["previous"] == "unknown" and changed[0].data["state"] == "on"
    assert changed[0].data["cause"] == "action"

    # Already on: a second power on asks, sees on, and does nothing else.
    sets_before = ipmi_sim.sets
    again = await power.call(p.POWER_ON, {"id": bmc.id})
    assert (again.changed, again.attempts) == (False, 1)
    assert ipmi_sim.sets == sets_before

    off = await power.call(p.POWER_OFF, {"id": bmc.id})
    assert (off.power_state, off.changed) == (p.PowerState.OFF, True)
    assert "Chassis Power is off" in ipmi_sim.ipmitool("chassis", "power", "status").stdout

    # ipmitool turns it on behind the service's back; a query learns it.
    ipmi_sim.ipmitool("chassis", "power", "on")
    queried = await power.call(p.POWER_QUERY, {"id": bmc.id})
    assert queried.power_state is p.PowerState.ON

    cycled = await power.call(p.POWER_CYCLE, {"id": bmc.id})
    assert cycled.power_state is p.PowerState.ON and ipmi_sim.power == "on"
    assert ipmi_sim.sets[-2:] == ["power 0", "power 1"]
    stored = await power.call(p.BMC_GET, {"id": bmc.id})
    assert stored.power_state is p.PowerState.ON and stored.reachable


async def test_ipmi_actions_against_pyghmis_bmc_server(
    power: PowerUnderTest, bmc_farm: BmcFarm
) -> None:
    """The same actions against the other IPMI implementation: pyghmi's BMC server."""
    port = bmc_farm.ports[1]  # starts off
    bmc = await create(power, "ipmi", bmc_farm.settings(port))
    on = await power.call(p.POWER_ON, {"id": bmc.id, "boot": {"device": "pxe", "mode": "efi"}})
    assert (on.power_state, on.changed) == (p.PowerState.ON, True)
    assert bmc_farm.command(f"get {port}") == "on network"
    again = await power.call(p.POWER_ON, {"id": bmc.id})
    assert (again.changed, again.attempts) == (False, 1)

    await power.call(p.SET_BOOT_DEVICE, {"id": bmc.id, "boot": {"device": "disk"}})
    assert bmc_farm.command(f"get {port}") == "on hd"
    off = await power.call(p.POWER_OFF, {"id": bmc.id, "soft": True})
    assert off.power_state is p.PowerState.OFF and bmc_farm.command(f"get {port}") == "off hd"
    cycled = await power.call(p.POWER_CYCLE, {"id": bmc.id})
    assert cycled.power_state is p.PowerState.ON and bmc_farm.command(f"get {port}") == "on hd"
    changes = await power.wait_event("state.changed", bmc.id, count=3)
    assert [e.data["state"] for e in changes] == ["on", "off", "on"]
    counted = power.rt.metrics.registry.get_sample_value
    assert counted("metalbus_power_actions_total", {"action": "on", "outcome": "ok"}) == 2
    assert counted("metalbus_power_actions_total", {"action": "cycle", "outcome": "ok"}) == 1


async def test_ipmi_unreachable_bmc_fails_after_retries_and_changes_nothing(
    power: PowerUnderTest,
) -> None:
    nobody = {"address": "127.0.0.1", "port": free_port(), "username": "admin", "password": "x"}
    bmc = await create(power, "ipmi", nobody)
    with pytest.raises(ServiceUnavailable) as down:
        await power.call(p.POWER_ON, {"id": bmc.id, "boot": {"device": "pxe"}})
    assert "did not answer after 2 tries" in down.value.message
    failed = await power.wait_event("action.failed", bmc.id)
    assert failed[0].data["code"] == "service_unavailable" and failed[0].data["attempts"] == 2
    assert power.rt.metrics.registry.get_sample_value(
        "metalbus_power_actions_total", {"action": "on", "outcome": "service_unavailable"}
    )
    stored = await power.call(p.BMC_GET, {"id": bmc.id})
    assert stored.power_state is p.PowerState.UNKNOWN and stored.last_error
    assert power.of_type("state.changed", bmc.id) == []


async def test_ipmi_bad_credentials_fail_at_once_and_change_nothing(
    power: PowerUnderTest, ipmi_sim: IpmiSim
) -> None:
    bmc = await create(power, "ipmi", ipmi_sim.settings(password="wrong-password"))
    with pytest.raises(Conflict) as refused:
        await power.call(p.POWER_ON, {"id": bmc.id})
    assert refused.value.field == "settings.password"
    assert "password" in refused.value.message.lower()
    assert ipmi_sim.sets == [] and ipmi_sim.power == "off"
    failed = await power.wait_event("action.failed", bmc.id)
    assert failed[0].data["code"] == "conflict" and failed[0].data["attempts"] == 1

    # ipmi_sim offers cipher suite 3 only: requiring 17 is refused, clearly.
    strict = await power.call(
        p.BMC_CREATE,
        {"name": "strict", "driver": "ipmi", "settings": ipmi_sim.settings(cipher_suite=17)},
    )
    with pytest.raises(Conflict) as suite:
        await power.call(p.POWER_QUERY, {"id": strict.id})
    assert suite.value.field == "settings.cipher_suite"
    ok = await power.call(
        p.BMC_UPDATE, {"id": strict.id, "changes": {"settings": {"cipher_suite": 3}}}
    )
    assert ok.secrets_set == ["password"]  # the password was kept without being sent again
    assert (await power.call(p.POWER_QUERY, {"id": strict.id})).power_state is p.PowerState.OFF


async def test_secrets_are_sealed_at_rest_and_never_leave(
    power: PowerUnderTest, ipmi_sim: IpmiSim, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger (on SQLite: aiosqlite's statements too)
    bmc = await create(power, "ipmi", ipmi_sim.settings(kg="kg-secret-key"))
    assert bmc.secrets_set == ["kg", "password"]
    # A failing action (ipmi_sim has no K_g: the login is refused) and a change of password
    # go through the logs and the events too.
    with pytest.raises(Conflict) as wrong_kg:
        await power.call(p.POWER_ON, {"id": bmc.id})
    assert wrong_kg.value.field == "settings.kg"  # fatal at once, not retried
    failed = await power.wait_event("action.failed", bmc.id)
    assert failed[0].data["attempts"] == 1
    changed = await power.call(
        p.BMC_UPDATE, {"id": bmc.id, "changes": {"settings": {"password": "new-secret-pw"}}}
    )
    await power.call(p.BMC_UPDATE, {"id": bmc.id, "changes": {"settings": {"password": PASSWORD}}})
    assert "new-secret-pw" not in changed.model_dump_json()
    async with power.rt.db.read() as session:
        row = (await session.exec(text("SELECT settings, secrets FROM power_bmc"))).one()  # type: ignore[call-overload]
    assert PASSWORD not in row.settings + row.secrets and "kg-secret-key" not in row.secrets
    assert json.loads(row.settings)["username"] == "admin"
    listed = await power.call(p.BMC_LIST, {})
    await power.call(p.BMC_DELETE, {"id": bmc.id})
    await power.wait_event("bmc.deleted", bmc.id)
    wire = b"".join(power.raw) + listed.model_dump_json().encode()
    for secret in (PASSWORD, "kg-secret-key", "new-secret-pw"):
        assert secret.encode() not in wire
        assert secret not in caplog.text


async def test_malformed_settings_are_refused_with_the_field_and_nothing_is_stored(
    power: PowerUnderTest,
) -> None:
    cases = [
        ("ipmi", {"address": "10.0.0.1", "username": "admin"}, "settings.password"),
        (
            "ipmi",
            {"address": "10.0.0.1", "username": "a", "password": "x", "port": 0},
            "settings.port",
        ),
        ("redfish", {"url": "ftp://x", "username": "u", "password": "p"}, "settings.url"),
        ("virsh", {"uri": "not a uri", "domain": "d"}, "settings.uri"),
        ("webhook", {"power_on_url": "http://h/on"}, "settings.power_off_url"),
        ("manual", {"surprise": 1}, "settings.surprise"),
    ]
    for driver, settings, field in cases:
        with pytest.raises(ValidationFailed) as bad:
            await power.call(p.BMC_CREATE, {"name": "x", "driver": driver, "settings": settings})
        assert bad.value.field == field, (driver, bad.value)
    with pytest.raises(ValidationFailed) as regex:
        await power.call(
            p.BMC_CREATE,
            {
                "name": "x",
                "driver": "webhook",
                "settings": {
                    "power_on_url": "http://h/on",
                    "power_off_url": "http://h/off",
                    "power_query_url": "http://h/q",
                    "state_on_regex": "([",
                },
            },
        )
    assert regex.value.field == "settings.state_on_regex"
    assert (await power.call(p.BMC_LIST, {})).items == []
    assert power.events == []
    await power.call(p.BMC_CREATE, {"name": "x", "driver": "manual"})
    with pytest.raises(Conflict) as taken:
        await power.call(p.BMC_CREATE, {"name": "x", "driver": "manual"})
    assert taken.value.field == "name"

    # Malformed changes to a stored BMC: refused, naming the field; the BMC, its sealed
    # password and the event stream are as they were.
    good = {"address": "10.0.0.1", "username": "admin", "password": PASSWORD}
    bmc = await create(power, "ipmi", good, name="stored")
    await power.wait_event("bmc.created", bmc.id)
    before = await power.call(p.BMC_GET, {"id": bmc.id})
    for changes, field in [
        ({"settings": {"port": 70000}}, "settings.port"),
        ({"settings": {"password": None}}, "settings.password"),
        ({"settings": {"privilege": "root"}}, "settings.privilege"),
        ({"settings": {"surprise": True}}, "settings.surprise"),
        ({"name": "also-renamed", "settings": {"cipher_suite": 4}}, "settings.cipher_suite"),
    ]:
        with pytest.raises(ValidationFailed) as bad:
            await power.call(p.BMC_UPDATE, {"id": bmc.id, "changes": changes})
        assert bad.value.field == field, (changes, bad.value)
        assert field.split(".")[1] in bad.value.message
    assert await power.call(p.BMC_GET, {"id": bmc.id}) == before
    assert power.of_type("bmc.updated") == []
    renamed = await power.call(p.BMC_UPDATE, {"id": bmc.id, "changes": {"name": "renamed"}})
    assert renamed.settings == before.settings and renamed.secrets_set == ["password"]
    assert len(await power.wait_event("bmc.updated", bmc.id)) == 1


async def test_virsh_drives_a_libvirt_test_domain(power: PowerUnderTest) -> None:
    libvirt = pytest.importorskip("libvirt")
    # test:///default lives while a connection to it is open in this process.
    conn = libvirt.open("test:///default")
    try:
        dom = conn.lookupByName("test")
        bmc = await create(power, "virsh", {"uri": "test:///default", "domain": "test"})
        assert (await power.call(p.POWER_QUERY, {"id": bmc.id})).power_state is p.PowerState.ON
        off = await power.call(p.POWER_OFF, {"id": bmc.id})
        assert off.changed and not dom.isActive()
        on = await power.call(p.POWER_ON, {"id": bmc.id, "boot": {"device": "pxe"}})
        assert on.changed and dom.isActive()
        order = [
            b.get("dev")
            for b in ET.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)).iter("boot")
        ]
        assert order == ["network", "hd"]
        by_uuid = await power.call(
            p.BMC_CREATE,
            {
                "name": "by-uuid",
                "driver": "virsh",
                "settings": {"uri": "test:///default", "domain": dom.UUIDString()},
            },
        )
        assert (await power.call(p.POWER_QUERY, {"id": by_uuid.id})).power_state is p.PowerState.ON
        missing = await power.call(
            p.BMC_CREATE,
            {
                "name": "gone",
                "driver": "virsh",
                "settings": {"uri": "test:///default", "domain": "nope"},
            },
        )
        with pytest.raises(Conflict) as unknown:
            await power.call(p.POWER_ON, {"id": missing.id})
        assert unknown.value.field == "settings.domain"
    finally:
        conn.close()


async def test_webhook_power_and_its_failures(power: PowerUnderTest, webhook: Webhook) -> None:
    bmc = await create(power, "webhook", webhook.settings())
    assert bmc.secrets_set == ["token"]
    on = await power.call(p.POWER_ON, {"id": bmc.id})
    assert on.changed and webhook.state["running"]
    assert webhook.state["calls"][:2] == ["GET /status", "POST /on"]
    off = await power.call(p.POWER_OFF, {"id": bmc.id})
    assert off.power_state is p.PowerState.OFF and not webhook.state["running"]
    with pytest.raises(Conflict) as soft:
        await power.call(p.POWER_OFF, {"id": bmc.id, "soft": True})
    assert soft.value.field == "soft"
    with pytest.raises(Conflict) as boot:
        await power.call(p.POWER_ON, {"id": bmc.id, "boot": {"device": "pxe"}})
    assert boot.value.field == "boot" and not webhook.state["running"]

    await power.call(p.BMC_UPDATE, {"id": bmc.id, "changes": {"settings": {"token": "wrong"}}})
    with pytest.raises(Conflict) as denied:
        await power.call(p.POWER_ON, {"id": bmc.id})
    assert denied.value.field == "settings.token"

    down = await create(
        power,
        "webhook",
        webhook.settings(power_query_url=f"http://127.0.0.1:{free_port(1)}/status"),
        name="down",
    )
    with pytest.raises(ServiceUnavailable):
        await power.call(p.POWER_ON, {"id": down.id})
    failed = await power.wait_event("action.failed", down.id)
    assert failed[0].data["code"] == "service_unavailable" and failed[0].data["attempts"] == 2
    assert not webhook.state["running"]


async def test_redfish_against_sushy_tools(power: PowerUnderTest, sushy: Sushy) -> None:
    settings = {"url": sushy.url, "username": "admin", "password": PASSWORD}
    bmc = await create(power, "redfish", settings)
    assert bmc.host == "127.0.0.1"
    assert (await power.call(p.POWER_QUERY, {"id": bmc.id})).power_state is p.PowerState.ON
    off = await power.call(p.POWER_OFF, {"id": bmc.id})
    assert off.changed and off.power_state is p.PowerState.OFF
    on = await power.call(p.POWER_ON, {"id": bmc.id, "boot": {"device": "pxe", "persistent": True}})
    assert on.changed and on.power_state is p.PowerState.ON

    import httpx

    async with httpx.AsyncClient(auth=("admin", PASSWORD)) as client:
        system = (await client.get(f"{sushy.url}/redfish/v1/Systems/{sushy.system_id}")).json()
    assert system["PowerState"] == "On"
    assert system["Boot"]["BootSourceOverrideTarget"] == "Pxe"

    wrong = await power.call(
        p.BMC_CREATE,
        {"name": "wrong", "driver": "redfish", "settings": {**settings, "password": "nope"}},
    )
    with pytest.raises(Conflict) as refused:
        await power.call(p.POWER_OFF, {"id": wrong.id})
    assert refused.value.field == "settings.password"
    missing = await power.call(
        p.BMC_CREATE,
        {"name": "missing", "driver": "redfish", "settings": {**settings, "system_id": "nope"}},
    )
    with pytest.raises(Conflict) as unknown:
        await power.call(p.POWER_QUERY, {"id": missing.id})
    assert unknown.value.field == "settings.system_id"
