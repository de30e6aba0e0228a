"""The compose rules, one test per rule, on libvirt's test driver with the host in
``hosts/kvm.xml`` (and ``hosts/nonet.xml``), a real ipam, SQLite and PostgreSQL.

Every composed VM's domain XML is read back from libvirt (``vm_xml``) and checked.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import pytest
from sqlmodel import select

from metalbus.compose.models import HostRow
from metalbus.shared.contract import compose as c
from metalbus.shared.contract import ipam as ip
from metalbus.shared.errors import Conflict, MetalbusError, NotFound, ValidationFailed
from tests.compose.conftest import KVM, NONET, ComposeUnderTest

GB = 1000**3
GIB = 1024**3


async def add_host(cx: ComposeUnderTest, uri: str = KVM, **fields: Any) -> c.KvmHost:
    host: c.KvmHost = await cx.call(c.HOST_CREATE, uri=uri, **fields)
    return host


async def compose_vm(cx: ComposeUnderTest, host: c.KvmHost, **fields: Any) -> c.ComposeResult:
    result: c.ComposeResult = await cx.call(c.VM_COMPOSE, host_id=host.id, **fields)
    return result


async def domain(cx: ComposeUnderTest, vm: c.Vm) -> ET.Element:
    answer = await cx.call(c.VM_XML, id=vm.id)
    return ET.fromstring(answer.xml)


def nics(root: ET.Element) -> list[tuple[str, dict[str, str]]]:
    return [
        (i.get("type", ""), dict(i.find("source").attrib))  # type: ignore[union-attr]
        for i in root.iterfind("devices/interface")
    ]


async def domains(cx: ComposeUnderTest) -> list[str]:
    return sorted(await cx.virsh(KVM, lambda conn: [d.name() for d in conn.listAllDomains(0)]))


async def volumes(cx: ComposeUnderTest) -> dict[str, list[str]]:
    def read(conn: Any) -> dict[str, list[str]]:
        return {p.name(): sorted(p.listVolumes()) for p in conn.listAllStoragePools(0)}

    return await cx.virsh(KVM, read)


async def refused(
    cx: ComposeUnderTest, error: type[MetalbusError], field: str, **fields: Any
) -> str:
    with pytest.raises(error) as caught:
        await cx.call(c.VM_COMPOSE, **fields)
    assert caught.value.field == field, caught.value
    return caught.value.message


# -- hosts --------------------------------------------------------------------------------


async def test_adding_a_host_discovers_what_it_has(compose: ComposeUnderTest) -> None:
    host = await add_host(compose, password="pw-123", zone="z1", tags=["fast"])
    assert (host.architecture, host.cores, host.cpu_speed, host.memory) == (
        "amd64/generic", 8, 2400, 16384,
    )  # fmt: skip
    pools = {p.name: p for p in host.storage_pools}
    assert set(pools) == {"default", "ssd", "vg0"}
    assert (pools["ssd"].type, pools["ssd"].path, pools["ssd"].total) == (
        "dir",
        "/srv/ssd",
        100 * GIB,
    )
    assert (pools["ssd"].used, pools["ssd"].available) == (90 * GIB, 10 * GIB)
    assert pools["vg0"].type == "logical"
    nets = {n.name: n for n in host.networks}
    assert (nets["maas"].bridge, nets["maas"].dhcp) == ("virbr1", False)
    assert (nets["default"].bridge, nets["default"].dhcp) == ("virbr0", True)
    ifaces = {i.name: i for i in host.interfaces}
    assert {n: i.type.value for n, i in ifaces.items()} == {
        "br0": "bridge", "br1": "bridge", "bond0": "bond", "eth3": "physical",
        "eth4": "physical", "eth3.100": "vlan",
    }  # fmt: skip
    assert ifaces["br0"].mac == "aa:bb:cc:00:00:01" and ifaces["br0"].members == ["eth0"]
    assert ifaces["bond0"].members == ["eth1", "eth2"]
    assert ifaces["eth3"].mac == "aa:bb:cc:00:00:06"
    assert [link.address for link in ifaces["eth3"].links] == ["10.2.0.2/24"]
    assert ifaces["eth3.100"].members == ["eth3"]
    vms = (await compose.call(c.VM_LIST, host_id=host.id)).items
    assert [(v.name, v.composed, v.cores, v.memory) for v in vms] == [("existing", False, 2, 1024)]
    assert vms[0].interfaces[0].mac == "52:54:00:aa:00:01"
    assert host.usage.cores_used == 2 and host.usage.memory_used == 1024
    # The password is sealed at rest and never shown.
    assert host.secrets_set == ["password"]
    async with compose.rt.db.read() as session:
        row = (await session.exec(select(HostRow))).one()
    assert "pw-123" not in row.secrets and row.secrets
    event = (await compose.wait_event("host.added"))[0]
    assert event.data["host"]["name"] == host.name and "pw-123" not in str(event.data)


async def test_a_correlated_host_has_its_interfaces_mapped_by_ipam(
    compose: ComposeUnderTest,
) -> None:
    net = await compose.network()
    await compose.correlate()
    host = await add_host(compose)
    assert host.correlated and host.correlated_with == "machine:kvm-machine-1 at 10.0.0.2"
    eth3 = next(i for i in host.interfaces if i.name == "eth3")
    link = eth3.links[0]
    assert (link.cidr, link.vlan_id, link.vid, link.fabric_id) == (
        "10.2.0.0/24",
        net.dmz,
        30,
        net.fabric,
    )
    assert link.subnet_id == net.subnets["10.2.0.0/24"] and link.space_id is not None


async def test_an_uncorrelated_host_refuses_interface_constraints_saying_why(
    compose: ComposeUnderTest,
) -> None:
    await compose.network()
    host = await add_host(compose)
    assert not host.correlated
    assert all(link.subnet_id is None for i in host.interfaces for link in i.links)
    message = await refused(
        compose, ValidationFailed, "interfaces", host_id=host.id, interfaces="eth0:space=dmz"
    )
    assert "not correlated" in message and "interface constraints" in message
    assert await domains(compose) == ["existing"]


async def test_update_changes_settings_and_checks_them(compose: ComposeUnderTest) -> None:
    host = await add_host(compose)
    changes = {"default_macvlan_mode": "vepa", "cpu_over_commit_ratio": 2.5}
    changes["default_storage_pool"] = "ssd"
    changed = await compose.call(c.HOST_UPDATE, id=host.id, changes=changes)
    assert changed.default_macvlan_mode == "vepa" and changed.usage.cores_total == 20
    assert changed.default_storage_pool == "ssd"
    for changes, field in (
        ({"cpu_over_commit_ratio": 0}, "changes.cpu_over_commit_ratio"),
        ({"memory_over_commit_ratio": -1}, "changes.memory_over_commit_ratio"),
        ({"default_macvlan_mode": "wild"}, "changes.default_macvlan_mode"),
        ({"default_storage_pool": "nope"}, "changes.default_storage_pool"),
        ({"name": None}, "changes.name"),
    ):
        with pytest.raises(ValidationFailed) as caught:
            await compose.call(c.HOST_UPDATE, id=host.id, changes=changes)
        assert caught.value.field == field, caught.value
    await compose.wait_event("host.updated")


async def test_bad_host_input_is_refused_with_the_field(compose: ComposeUnderTest) -> None:
    with pytest.raises(ValidationFailed) as caught:
        await add_host(compose, cpu_over_commit_ratio=0)
    assert caught.value.field == "cpu_over_commit_ratio"
    with pytest.raises(ValidationFailed) as caught:
        await add_host(compose, default_storage_pool="missing")
    assert caught.value.field == "default_storage_pool"
    with pytest.raises(MetalbusError) as caught:
        await add_host(compose, uri="test:///nowhere/at/all.xml")
    assert caught.value.field == "uri"
    await add_host(compose, name="kvm1")
    with pytest.raises(Conflict) as caught:
        await add_host(compose, name="kvm1")
    assert caught.value.field == "name"


async def test_refresh_reports_new_and_vanished_vms(compose: ComposeUnderTest) -> None:
    host = await add_host(compose)
    xml = (
        "<domain type='test'><name>sneaky</name><memory unit='MiB'>512</memory><vcpu>1</vcpu>"
        "<os><type arch='x86_64'>hvm</type></os><devices><interface type='bridge'>"
        "<mac address='52:54:00:bb:00:01'/><source bridge='br0'/></interface></devices></domain>"
    )
    await compose.virsh(KVM, lambda conn: conn.defineXML(xml))
    await compose.call(c.HOST_REFRESH, id=host.id)
    event = (await compose.wait_event("host.refreshed"))[0]
    assert [v["name"] for v in event.data["new_vms"]] == ["sneaky"]
    assert event.data["new_vms"][0]["interfaces"][0]["mac"] == "52:54:00:bb:00:01"

    def remove(conn: Any) -> None:
        dom = conn.lookupByName("existing")
        dom.destroy()
        dom.undefine()

    await compose.virsh(KVM, remove)
    await compose.call(c.HOST_REFRESH, id=host.id)
    event = (await compose.wait_event("host.refreshed", 2))[1]
    assert [v["name"] for v in event.data["vanished_vms"]] == ["existing"]
    names = [v.name for v in (await compose.call(c.VM_LIST, host_id=host.id)).items]
    assert names == ["sneaky"]


# -- composing ----------------------------------------------------------------------------


async def test_the_domain_xml_is_virtio_boots_network_then_disk_logs_its_console(
    compose: ComposeUnderTest,
) -> None:
    await compose.network()
    host = await add_host(compose, origin="deployed")
    await compose.correlate()
    await compose.call(c.HOST_REFRESH, id=host.id)
    result = await compose_vm(compose, host, hostname="vm1", cores=2, memory=1024)
    vm = result.vms[0]
    root = await domain(compose, vm)
    assert root.findtext("name") == "vm1" and root.findtext("uuid") == vm.uuid
    assert root.findtext("vcpu") == "2" and root.find("memory").text == str(1024 * 1024)  # type: ignore[union-attr]
    assert [b.get("dev") for b in root.iterfind("os/boot")] == ["network", "hd"]
    disk = root.find("devices/disk")
    assert disk is not None and disk.find("target").attrib == {"dev": "vda", "bus": "virtio"}  # type: ignore[union-attr]
    assert disk.find("source").attrib == {"pool": "default", "volume": "vm1-root"}  # type: ignore[union-attr]
    assert [m.get("type") for m in root.iterfind("devices/interface/model")] == ["virtio"]
    log = root.find("devices/serial/log")
    assert log is not None and log.get("file") == "/var/log/libvirt/qemu/vm1-serial0.log"
    assert root.find("devices/console/target").get("type") == "serial"  # type: ignore[union-attr]
    assert await compose.virsh(KVM, lambda conn: conn.lookupByName("vm1").autostart()) == 1

    # The default disk: one 8 GB root volume in the default pool.
    def root_size(conn: Any) -> int:
        pool = conn.storagePoolLookupByName("default")
        return int(pool.storageVolLookupByName("vm1-root").info()[1])

    size = await compose.virsh(KVM, root_size)
    assert size == 8 * GB
    event = (await compose.wait_event("vm.composed"))[0]
    assert event.data["vm"]["power"] == {"uri": KVM, "domain": vm.uuid}


async def test_storage_goes_to_the_tagged_pool_else_the_default(compose: ComposeUnderTest) -> None:
    host = await add_host(compose, default_storage_pool="vg0")
    await compose.network(untagged_dhcp=False, maas_dhcp=True)
    result = await compose_vm(
        compose, host, hostname="s1", storage="root:5(ssd),data:20,logs:1(dir)"
    )
    disks = {d.label: (d.pool, d.size) for d in result.vms[0].disks}
    assert disks == {"root": ("ssd", 5 * GB), "data": ("vg0", 20 * GB), "logs": ("default", 1 * GB)}
    root = await domain(compose, result.vms[0])
    sources = [
        (d.find("source").get("pool"), d.find("target").get("dev"))
        for d in root.iterfind("devices/disk")
    ]  # type: ignore[union-attr]
    assert sources == [("ssd", "vda"), ("vg0", "vdb"), ("default", "vdc")]
    assert "s1-root" in (await volumes(compose))["ssd"]


async def test_a_refusal_names_what_is_short_and_by_how_much(compose: ComposeUnderTest) -> None:
    host = await add_host(compose, cpu_over_commit_ratio=1.5)
    before = (await domains(compose), await volumes(compose))
    # 8 cores x 1.5 = 12, the existing VM holds 2: 10 left.
    message = await refused(compose, Conflict, "cores", host_id=host.id, cores=6, count=2)
    assert "12 asked" in message and "10 available" in message and "short by 2" in message
    message = await refused(compose, Conflict, "memory", host_id=host.id, memory=16000)
    assert "16000 MiB asked" in message and "15360 MiB available" in message
    assert "short by 640 MiB" in message
    message = await refused(compose, Conflict, "storage", host_id=host.id, storage="root:20(ssd)")
    assert "pool ssd" in message and "short by" in message
    message = await refused(
        compose, ValidationFailed, "storage", host_id=host.id, storage="root:5(nvme)"
    )
    assert "nvme" in message
    assert (await domains(compose), await volumes(compose)) == before
    assert compose.of_type("vm.failed") == []


async def test_constraints_attach_to_a_bridge_as_a_bridge(compose: ComposeUnderTest) -> None:
    await compose.network()
    await compose.correlate()
    host = await add_host(compose)
    result = await compose_vm(compose, host, interfaces="eth0:subnet=10.1.0.0/24")
    vm = result.vms[0]
    assert [(i.name, i.attach_type.value, i.source) for i in vm.interfaces] == [
        ("eth0", "bridge", "br1")
    ]
    assert nics(await domain(compose, vm)) == [("bridge", {"bridge": "br1"})]


async def test_constraints_prefer_a_bond_to_a_physical_interface_via_macvtap(
    compose: ComposeUnderTest,
) -> None:
    await compose.network()
    await compose.correlate()
    host = await add_host(compose, default_macvlan_mode="private")
    result = await compose_vm(compose, host, interfaces="eth0:space=storage,type=macvlan")
    assert nics(await domain(compose, result.vms[0])) == [
        ("direct", {"dev": "bond0", "mode": "private"})
    ]
    result = await compose_vm(compose, host, interfaces="eth0:name=eth4,mode=vepa")
    assert nics(await domain(compose, result.vms[0])) == [
        ("direct", {"dev": "eth4", "mode": "vepa"})
    ]


async def test_constraints_by_space_vid_and_fabric_use_the_default_macvlan_mode(
    compose: ComposeUnderTest,
) -> None:
    await compose.network()
    await compose.correlate()
    host = await add_host(compose, default_macvlan_mode="passthru")
    result = await compose_vm(compose, host, interfaces="eth0:space=dmz;eth1:vid=0,fabric=dc1")
    root = await domain(compose, result.vms[0])
    assert nics(root) == [
        ("direct", {"dev": "eth3", "mode": "passthrough"}),
        ("bridge", {"bridge": "br0"}),
    ]
    assert [i.name for i in result.vms[0].interfaces] == ["eth0", "eth1"]
    message = await refused(
        compose,
        ValidationFailed,
        "interfaces",
        host_id=host.id,
        interfaces="eth0:space=dmz,type=bridge",
    )
    assert "eth0" in message and "no interface" in message


async def test_an_ip_is_allocated_sticky_to_the_vm_and_released_on_decompose(
    compose: ComposeUnderTest,
) -> None:
    await compose.network()
    await compose.correlate()
    host = await add_host(compose)
    result = await compose_vm(
        compose, host, hostname="web", interfaces="eth0:space=dmz,ip=10.2.0.5"
    )
    vm = result.vms[0]
    assert vm.interfaces[0].ip == "10.2.0.5"
    held = (await compose.call(ip.ADDRESS_LIST, ip="10.2.0.5")).items
    assert [(a.alloc_type, a.owner_type, a.owner_id, a.mac) for a in held] == [
        ("sticky", "machine", vm.uuid, vm.interfaces[0].mac)
    ]
    # The address is now in use: a second request for it is refused before libvirt.
    message = await refused(
        compose, Conflict, "interfaces", host_id=host.id, interfaces="eth0:ip=10.2.0.5"
    )
    assert "in use" in message
    await compose.call(c.VM_DECOMPOSE, id=vm.id)
    assert (await compose.call(ip.ADDRESS_LIST, ip="10.2.0.5")).items == []
    event = (await compose.wait_event("vm.decomposed"))[0]
    assert event.data["released"] == ["10.2.0.5"]


async def test_no_constraints_on_a_deployed_host_prefers_a_bridge_on_a_dhcp_vlan(
    compose: ComposeUnderTest,
) -> None:
    await compose.network(untagged_dhcp=True, maas_dhcp=True)
    await compose.correlate()
    host = await add_host(compose, origin="deployed")
    result = await compose_vm(compose, host)
    assert nics(await domain(compose, result.vms[0])) == [("bridge", {"bridge": "br0"})]
    assert result.vms[0].network_boot and result.warnings == []


async def test_no_constraints_on_a_deployed_host_uses_maas_only_when_metalbus_serves_it(
    compose: ComposeUnderTest,
) -> None:
    await compose.network(untagged_dhcp=False, maas_dhcp=True)
    await compose.correlate()
    host = await add_host(compose, origin="deployed")
    result = await compose_vm(compose, host)
    assert nics(await domain(compose, result.vms[0])) == [("network", {"network": "maas"})]


async def test_no_constraints_on_a_deployed_host_without_metalbus_dhcp_is_refused(
    compose: ComposeUnderTest,
) -> None:
    await compose.network(untagged_dhcp=False, maas_dhcp=False)
    await compose.correlate()
    host = await add_host(compose, origin="deployed")
    # `default` has libvirt's DHCP and `maas` is not served: both are skipped.
    message = await refused(compose, Conflict, "interfaces", host_id=host.id)
    assert "metalbus DHCP" in message
    assert await domains(compose) == ["existing"]


async def test_no_constraints_on_a_hand_installed_host_attaches_to_maas(
    compose: ComposeUnderTest,
) -> None:
    await compose.network(untagged_dhcp=False, maas_dhcp=True)
    host = await add_host(compose)
    result = await compose_vm(compose, host)
    root = await domain(compose, result.vms[0])
    assert nics(root) == [("network", {"network": "maas"})]
    assert [b.get("dev") for b in root.iterfind("os/boot")] == ["network", "hd"]
    assert result.warnings == []


async def test_no_constraints_on_a_hand_installed_host_without_maas_warns_about_libvirt_dhcp(
    compose: ComposeUnderTest,
) -> None:
    await compose.network()
    host = await add_host(compose)
    await compose.virsh(KVM, lambda conn: conn.networkLookupByName("maas").destroy())
    await compose.virsh(KVM, lambda conn: conn.networkLookupByName("maas").undefine())
    await compose.call(c.HOST_REFRESH, id=host.id)
    result = await compose_vm(compose, host)
    root = await domain(compose, result.vms[0])
    assert nics(root) == [("network", {"network": "default"})]
    # metalbus DHCP does not serve `default`: no network boot.
    assert [b.get("dev") for b in root.iterfind("os/boot")] == ["hd"]
    pxe = next(w for w in result.warnings if "PXE will not work" in w)
    assert "turn libvirt's DHCP off" in pxe and "'maas'" in pxe
    event = (await compose.wait_event("vm.composed"))[0]
    assert any("PXE will not work" in w for w in event.data["warnings"])


async def test_a_hand_installed_host_without_maas_or_default_is_refused(
    compose: ComposeUnderTest,
) -> None:
    host = await add_host(compose, uri=NONET)
    message = await refused(compose, Conflict, "interfaces", host_id=host.id)
    assert "maas" in message and "default" in message


async def test_a_failure_midway_rolls_back_volumes_domain_and_addresses(
    compose: ComposeUnderTest,
) -> None:
    await compose.network()
    await compose.correlate()
    host = await add_host(compose, default_storage_pool="default")
    clash = "<volume><name>bad-data</name><capacity unit='G'>1</capacity></volume>"
    await compose.virsh(
        KVM, lambda conn: conn.storagePoolLookupByName("default").createXML(clash, 0)
    )
    before_domains, before_volumes = await domains(compose), await volumes(compose)
    with pytest.raises(Conflict):
        await compose_vm(compose, host, hostname="bad", storage="root:2,data:2",
                      interfaces="eth0:space=dmz,ip=10.2.0.9")  # fmt: skip
    assert (await domains(compose), await volumes(compose)) == (before_domains, before_volumes)
    assert (await compose.call(ip.ADDRESS_LIST, ip="10.2.0.9")).items == []
    assert [v.name for v in (await compose.call(c.VM_LIST, host_id=host.id)).items] == ["existing"]
    event = (await compose.wait_event("vm.failed"))[0]
    assert event.data["stage"] == "volume_create"
    assert event.data["rolled_back"] == ["volume default/bad-root", "address 10.2.0.9"]


async def test_decompose_destroys_undefines_and_deletes_storage(compose: ComposeUnderTest) -> None:
    await compose.network(untagged_dhcp=False, maas_dhcp=True)
    host = await add_host(compose)
    result = await compose_vm(
        compose, host, hostname="gone", storage="root:3,data:2(ssd)", start=True
    )
    vm = result.vms[0]
    assert vm.power_state == "on"
    assert await compose.virsh(KVM, lambda conn: conn.lookupByName("gone").isActive()) == 1
    await compose.call(c.VM_DECOMPOSE, id=vm.id)
    assert await domains(compose) == ["existing"]
    vols = await volumes(compose)
    assert "gone-root" not in vols["default"] and "gone-data" not in vols["ssd"]
    with pytest.raises(NotFound):
        await compose.call(c.VM_GET, id=vm.id)
    after = await compose.call(c.HOST_GET, id=host.id)
    assert next(p for p in after.storage_pools if p.name == "ssd").available == 10 * GIB


async def test_deleting_a_host_can_decompose_its_vms(compose: ComposeUnderTest) -> None:
    await compose.network(untagged_dhcp=False, maas_dhcp=True)
    host = await add_host(compose)
    result = await compose_vm(compose, host, count=2, hostname="many")
    assert [v.name for v in result.vms] == ["many-1", "many-2"]
    await compose.call(c.HOST_DELETE, id=host.id, decompose=True)
    event = (await compose.wait_event("host.deleted"))[0]
    assert sorted(event.data["decomposed"]) == sorted(v.id for v in result.vms)
    assert len(compose.of_type("vm.decomposed")) == 2
    with pytest.raises(NotFound):
        await compose.call(c.HOST_GET, id=host.id)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"storage": "root:abc"}, "storage"),
        ({"storage": "root:0"}, "storage"),
        ({"storage": "a:1,a:2"}, "storage"),
        ({"interfaces": "eth0:colour=blue"}, "interfaces"),
        ({"interfaces": "eth0:ip=10.0.0.999"}, "interfaces"),
        ({"interfaces": "eth0:type=bridge,mode=vepa"}, "interfaces"),
        ({"interfaces": "eth0:mode=sideways"}, "interfaces"),
        ({"architecture": "arm64/generic"}, "architecture"),
        ({"cores": 0}, "cores"),
        ({"count": 0}, "count"),
    ],
)
async def test_bad_compose_input_names_the_field(
    compose: ComposeUnderTest, fields: dict[str, Any], field: str
) -> None:
    host = await add_host(compose)
    await refused(compose, ValidationFailed, field, host_id=host.id, **fields)
    with pytest.raises(NotFound) as caught:
        await compose.call(c.VM_COMPOSE, host_id=999)
    assert caught.value.field == "host_id"
