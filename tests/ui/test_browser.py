"""The web UI in headless Chromium: log in, KVM hosts (compose, bars, settings), machines,
subnets, live updates, at 1280 px and at phone width, from the keyboard, with a clean console.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.compose.conftest import KVM
from tests.helpers import async_wait_for
from tests.ui.conftest import DESKTOP, PHONE, TOKEN, Tab, UiSystem, expect, ok


async def add_host(system: UiSystem, correlate: bool = False) -> dict[str, Any]:
    """The test driver's KVM host with the ipam networks it sits on (as in tests/compose);
    ``correlate``: its address is a machine's in ipam, so interface constraints work."""
    await system.compose.network(untagged_dhcp=False, maas_dhcp=True)
    if correlate:
        await system.compose.correlate()
    body = {"uri": KVM, "name": "kvm1", "memory_over_commit_ratio": 1.5}
    return await ok(await system.http.post("/pods", json=body), 201)


async def promised(tab: Tab, pool: str) -> int:
    """Bytes of VM disks the storage bar of ``pool`` shows (compose's volumes are thin, so
    libvirt's own "used" does not move when a VM is composed)."""
    bar = tab.page.locator(f"[data-bar='pool-{pool}']")
    return int(await bar.get_attribute("data-promised") or "-1")


async def no_sideways_scroll(tab: Tab) -> None:
    """Nothing is wider than the phone (a mobile browser would widen its layout viewport
    to fit, so the check is against the device width, not ``innerWidth``)."""
    width = await tab.page.evaluate("document.documentElement.scrollWidth")
    if width > PHONE["width"]:
        wide = await tab.page.evaluate(
            "[...document.querySelectorAll('body *')]"
            ".filter((e) => e.getBoundingClientRect().right > innerWidth - 0.5)"
            ".slice(0, 5).map((e) => e.tagName + '#' + e.id + '.' + e.className)"
        )
        await tab.shot("too-wide")
        raise AssertionError(f"the page is {width} px wide on a {PHONE['width']} px phone: {wide}")


async def test_kvm_hosts_machines_and_subnets_at_1280(system: UiSystem, open_tab: Any) -> None:
    pod = await add_host(system)
    tab = await open_tab(DESKTOP, "desktop")
    page = tab.page

    # Without a token every page sends you to log in, and back afterwards.
    await page.goto(f"{system.url}/")
    await page.wait_for_url("**/ui/login?next=*")
    await tab.shot("login")
    await page.get_by_label("API token").fill(TOKEN)
    await page.get_by_role("button", name="Log in").click()
    await page.wait_for_url("**/ui/machines")
    await page.wait_for_selector("body[data-ready='true']")
    await expect(page.locator("#whoami")).to_contain_text("admin")
    await expect(page.locator("#live")).to_have_text("Live")

    # KVM hosts: one card with its bars; memory overcommit shown.
    await page.get_by_role("link", name="KVM hosts", exact=True).click()
    await page.wait_for_selector("body[data-ready='true']")
    card = page.locator(f"article[data-pod-id='{pod['id']}']")
    await expect(card.get_by_role("meter", name="Memory")).to_have_attribute(
        "aria-valuemax", str(int(pod["memory"] * 1.5))
    )
    await expect(card).to_contain_text("\u00d7 1.5 overcommit")
    await tab.shot("pods")

    # The host page: compose a VM through the dialog, with its disk in the ssd pool.
    await card.get_by_role("link", name="kvm1").click()
    await page.wait_for_selector("body[data-ready='true']")
    await page.evaluate("window.notReloaded = true")
    ssd_before = await promised(tab, "ssd")
    cores = page.get_by_role("meter", name="Cores")
    cores_before = int(await cores.get_attribute("aria-valuenow") or "-1")
    await page.get_by_role("button", name="Compose VM").click()
    dialog = page.get_by_role("dialog", name="Compose a VM")
    await expect(dialog).to_be_visible()
    await dialog.get_by_label("Hostname (optional)").fill("web1")
    await dialog.get_by_label("Cores").fill("2")
    await dialog.get_by_label("Memory (MiB)").fill("1024")
    await dialog.get_by_label("Size (GB)").fill("4")
    pools = await dialog.get_by_label("Storage pool").locator("option").all_inner_texts()
    assert [p.split(" ")[0] for p in pools] == [p["name"] for p in pod["storage_pools"]]
    await dialog.get_by_label("Storage pool").select_option("ssd")
    await tab.shot("compose-dialog")
    await dialog.get_by_role("button", name="Compose", exact=True).click()
    await expect(dialog).to_be_hidden()
    row = page.locator("#pod-vms tr[data-vm='web1']")
    await expect(row).to_contain_text("root 3.7 GiB in ssd")
    ssd = page.locator("[data-bar='pool-ssd']")
    await expect(ssd).to_have_attribute("data-promised", str(ssd_before + 4 * 10**9))
    ssd_after = ssd_before + 4 * 10**9
    await expect(cores).to_have_attribute("aria-valuenow", str(cores_before + 2))
    await tab.shot("composed")

    # The host's settings: the default macvlan mode.
    await page.get_by_label("Default macvlan mode").select_option("vepa")
    await page.get_by_role("button", name="Save settings").click()
    await expect(page.locator("#settings-saved")).to_have_text("Saved.")
    assert (await ok(await system.http.get(f"/pods/{pod['id']}")))["default_macvlan_mode"] == "vepa"

    # Live: what happens elsewhere shows up without a reload.
    result = await ok(
        await system.http.post(
            f"/pods/{pod['id']}/compose", json={"hostname": "web2", "storage": "root:2(ssd)"}
        ),
        201,
    )
    await expect(page.locator("#pod-vms tr[data-vm='web2']")).to_be_visible()
    await expect(ssd).to_have_attribute("data-promised", str(ssd_after + 2 * 10**9))
    await ok(await system.http.delete(f"/vms/{result['vms'][0]['id']}"))
    await expect(page.locator("#pod-vms tr[data-vm='web2']")).to_have_count(0)
    await expect(ssd).to_have_attribute("data-promised", str(ssd_after))
    assert await page.evaluate("window.notReloaded") is True

    # Machines: the composed VM became a machine; search and status filter.
    await page.get_by_role("link", name="Machines", exact=True).click()
    await page.wait_for_selector("body[data-ready='true']")
    web1 = page.locator("#machines tbody tr").filter(has_text="web1")
    await expect(web1).to_contain_text("new")
    await page.get_by_label("Search").fill("web1")
    await expect(page.locator("#machine-count")).to_have_text("1 of 1 machines")
    await page.get_by_label("Status").select_option("ready")
    await expect(page.locator("#machine-count")).to_have_text("0 of 1 machines")
    await page.get_by_label("Status").select_option("new")
    await expect(web1).to_be_visible()
    await tab.shot("machines")

    # A machine's page: interfaces, history, the actions its status allows.
    await web1.get_by_role("link", name="web1").click()
    await page.wait_for_selector("body[data-ready='true']")
    await expect(page.locator("#machine-interfaces tbody tr")).to_have_count(1)
    await expect(page.get_by_role("button", name="Deploy")).to_be_hidden()
    await page.get_by_role("button", name="Commission").click()
    await expect(page.locator("#machine-summary")).to_contain_text("commissioning")
    await expect(page.get_by_role("button", name="Abort")).to_be_visible()
    await expect(page.locator("#machine-history li").first).to_contain_text("new → commissioning")
    await tab.shot("machine")
    await page.get_by_role("button", name="Abort").click()
    await expect(page.get_by_role("button", name="Commission")).to_be_visible()

    # Subnets: utilisation bars and their ranges.
    await page.get_by_role("link", name="Subnets", exact=True).click()
    await page.wait_for_selector("body[data-ready='true']")
    maas = page.locator("article[data-subnet='192.168.123.0/24']")
    await expect(maas.get_by_role("meter", name="Addresses in use")).to_be_visible()
    await expect(maas).to_contain_text("192.168.123.100 \u2013 192.168.123.199")
    await expect(page.locator("article[data-subnet]")).to_have_count(4)
    await tab.shot("subnets")

    # Log out: the token is forgotten, pages send you to log in again.
    await page.get_by_role("button", name="Log out").click()
    await page.wait_for_url("**/ui/login")
    assert await page.evaluate("sessionStorage.length") == 0
    await page.goto(f"{system.url}/ui/pods")
    await page.wait_for_url("**/ui/login?next=*")
    tab.assert_clean()


async def test_phone_width_and_keyboard(system: UiSystem, open_tab: Any) -> None:
    pod = await add_host(system, correlate=True)
    tab = await open_tab(PHONE, "phone")
    page = tab.page
    await tab.login()
    await no_sideways_scroll(tab)
    await tab.shot("machines")

    # The keyboard: the first Tab lands on the skip link, which leads to the content.
    await tab.goto("/ui/pods")
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.textContent") == "Skip to content"
    await page.keyboard.press("Enter")
    assert await page.evaluate("document.activeElement.id") == "main"
    await no_sideways_scroll(tab)
    await tab.shot("pods")

    # The default macvlan mode, then a VM whose interface goes through macvtap with it.
    await tab.goto(f"/ui/pods/{pod['id']}")
    await no_sideways_scroll(tab)
    await page.get_by_label("Default macvlan mode").select_option("private")
    await page.get_by_role("button", name="Save settings").click()
    await expect(page.locator("#settings-saved")).to_have_text("Saved.")
    saved = await ok(await system.http.get(f"/pods/{pod['id']}"))
    assert saved["default_macvlan_mode"] == "private"

    # Compose from the keyboard at phone width: the dialog fits the screen.
    ssd_before = await promised(tab, "ssd")
    await page.get_by_role("button", name="Compose VM").focus()
    await page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name="Compose a VM")
    await expect(dialog).to_be_visible()
    box = await dialog.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
    assert await page.evaluate("document.activeElement.id") == "c-hostname"
    await page.keyboard.type("phone1")
    await page.keyboard.press("Escape")
    await expect(dialog).to_be_hidden()
    await page.get_by_role("button", name="Compose VM").click()
    await page.keyboard.type("phone1")
    await dialog.get_by_label("Size (GB)").fill("3")
    await dialog.get_by_label("Storage pool").select_option("ssd")
    await page.get_by_role("button", name="Add interface").click()
    await dialog.get_by_label("Constraints").fill("space=dmz")
    await tab.shot("compose-dialog")
    await dialog.get_by_label("Constraints").press("Enter")  # submits the form
    row = page.locator("#pod-vms tr[data-vm='phone1']")
    await expect(row).to_contain_text("eth0 macvlan:eth3 (private)")
    await expect(page.locator("[data-bar='pool-ssd']")).to_have_attribute(
        "data-promised", str(ssd_before + 3 * 10**9)
    )
    await no_sideways_scroll(tab)
    await tab.shot("composed")

    for path in ("/ui/machines", "/ui/subnets", "/ui/discoveries"):
        await tab.goto(path)
        await no_sideways_scroll(tab)
        await tab.shot(path.rsplit("/", 1)[1])
    tab.assert_clean()


async def test_machine_power_from_its_page(system: UiSystem, open_tab: Any) -> None:
    libvirt = pytest.importorskip("libvirt")
    # test:///default lives while a connection to it is open in this process; the power
    # service's virsh driver (in this process too) shares it.
    conn = libvirt.open("test:///default")
    try:
        domain = conn.lookupByName("test")
        if not domain.isActive():  # left off by an earlier test in this process
            domain.create()
        machine = await ok(
            await system.http.post(
                "/machines",
                json={
                    "hostname": "bm1",
                    "interfaces": [{"name": "eth0", "mac": "52:54:00:12:34:56"}],
                    "power": {
                        "driver": "virsh",
                        "settings": {"uri": "test:///default", "domain": "test"},
                    },
                },
            ),
            201,
        )
        tab = await open_tab(DESKTOP, "desktop")
        page = tab.page
        await tab.login()
        await tab.goto(f"/ui/machines/{machine['system_id']}")
        summary = page.locator("#machine-summary")
        await page.get_by_role("button", name="Check power").click()
        await expect(summary.locator(".power-on")).to_have_text("on")
        await page.get_by_role("button", name="Power off").click()
        await expect(summary.locator(".power-off")).to_have_text("off")
        assert not domain.isActive()
        await tab.shot("powered-off")

        # The list shows the state the power service learned; a change made elsewhere
        # (here: through the API) arrives from the event stream.
        await page.get_by_role("link", name="Machines", exact=True).click()
        await page.wait_for_selector("body[data-ready='true']")
        row = page.locator(f"#machines tr[data-system-id='{machine['system_id']}']")
        await expect(row.locator(".badge.power-off")).to_be_visible()
        bmc = machine["power"]["bmc_id"]
        await ok(await system.http.post(f"/power/bmcs/{bmc}/on"))
        await expect(row.locator(".badge.power-on")).to_be_visible()

        # The server cuts the stream (as it does to a client that falls behind): the page
        # reconnects with the id of the last event it saw, and the next change still arrives.
        streams: list[Any] = []
        page.on("request", lambda r: streams.append(r) if "/events/stream" in r.url else None)
        for listener in list(system.app.state.hub.listeners):
            listener.queue.put_nowait(None)
        await async_wait_for(lambda: streams, 10, "the page to reconnect to the event stream")
        assert streams[0].headers.get("last-event-id")
        await expect(page.locator("#live")).to_have_text("Live")
        await ok(await system.http.post(f"/power/bmcs/{bmc}/off"))
        await expect(row.locator(".badge.power-off")).to_be_visible()
        await tab.shot("machines")
        tab.assert_clean()
    finally:
        conn.close()
