"""Discoveries in the browser: a neighbour in a network namespace shows up live, and
"Add as device" makes its address a device's in ipam. Needs root (the namespace)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.discovery.conftest import Link, announce, ip, link  # noqa: F401
from tests.ui.conftest import DESKTOP, PHONE, UiSystem, expect, ok

PEER_IP = "10.213.9.20"


@pytest.fixture
def discovery_interfaces(link: Link) -> list[str]:  # noqa: F811
    """Discovery listens on this host's end of the namespace's veth pair."""
    return [link.host]


async def test_add_a_discovered_device(
    system: UiSystem,
    open_tab: Any,
    link: Link,  # noqa: F811
) -> None:
    await ok(await system.http.post("/subnets", json={"cidr": "10.213.9.0/24"}), 201)
    tab = await open_tab(DESKTOP, "desktop")
    page = tab.page
    await tab.login()
    await tab.goto("/ui/discoveries")
    await expect(page.locator("#discoveries tbody")).to_contain_text("Nothing discovered.")

    # The peer speaks up; the page, already open, shows it from the event stream.
    ip("-n", link.namespace, "addr", "add", f"{PEER_IP}/24", "dev", link.peer)
    await announce(link, PEER_IP)
    row = page.locator(f"#discoveries tr[data-ip='{PEER_IP}']")
    await expect(row).to_contain_text(link.peer_mac)
    await expect(row).to_contain_text("10.213.9.0/24")
    await tab.shot("discovered")

    await row.get_by_role("button", name=f"Add {PEER_IP} ({link.peer_mac}) as a device").click()
    dialog = page.get_by_role("dialog", name="Add as device")
    await expect(dialog).to_contain_text(f"{PEER_IP} with MAC {link.peer_mac}")
    await dialog.get_by_label("Hostname (optional)").fill("printer")
    await dialog.get_by_label("Address kind").select_option("user_reserved")
    await tab.shot("add-device")
    await dialog.get_by_role("button", name="Add device").click()
    await expect(dialog).to_be_hidden()
    await expect(row.locator("td").last).to_have_text("known")
    await expect(row).to_contain_text("IP, MAC")
    page_of = await ok(await system.http.get("/ipaddresses", params={"ip": PEER_IP}))
    [address] = page_of["items"]
    assert (address["alloc_type"], address["hostname"], address["mac"]) == (
        "user_reserved",
        "printer",
        link.peer_mac,
    )
    await tab.shot("device-added")
    tab.assert_clean()

    phone = await open_tab(PHONE, "phone")
    await phone.login()
    await phone.goto("/ui/discoveries")
    await expect(phone.page.locator(f"#discoveries tr[data-ip='{PEER_IP}']")).to_be_visible()
    await phone.shot("discoveries")
    phone.assert_clean()
