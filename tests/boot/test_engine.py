"""DHCP decisions (RFC 2131 4.3) and PXE options, on crafted packets, without sockets."""

from __future__ import annotations

import ipaddress

import pytest

from metalbus.boot.dhcp.codec import ZERO_IP, MessageType, Opt, Packet, build, parse
from metalbus.boot.dhcp.engine import Decision, Engine, Interface
from metalbus.boot.dhcp.leases import LeaseTable
from metalbus.boot.dhcp.network import Network, Reservation, SubnetView, VlanView
from metalbus.boot.settings import BootSettings

IFACE = Interface("eth-test", "10.9.0.1")
NOW = 1_000_000.0
MAC = bytes.fromhex("525400aabb01")


def network(disabled: frozenset[str] = frozenset()) -> Network:
    net = Network(loaded=True)
    net.vlans[1] = VlanView(1, 9000, dhcp_on=True, relay_vlan_id=None)
    net.vlans[2] = VlanView(2, 1500, dhcp_on=False, relay_vlan_id=1)  # relays to VLAN 1
    net.vlans[3] = VlanView(3, 1500, dhcp_on=False, relay_vlan_id=None)
    for sid, cidr, vlan in ((1, "10.9.0.0/24", 1), (2, "10.8.0.0/24", 2), (3, "10.7.0.0/24", 3)):
        network_ = ipaddress.IPv4Network(cidr)
        base = int(network_.network_address)
        net.subnets[sid] = SubnetView(
            id=sid,
            network=network_,
            vlan_id=vlan,
            gateway=str(network_.network_address + 1),
            dns_servers=["10.0.0.53", "2001:db8::53"],
            ntp_servers=["10.0.0.123"],
            domain="maas.test",
            managed=True,
            disabled_boot_architectures=disabled,
            ranges={sid: (base + 100, base + 102)},
        )
    return net


def engine(mode: str = "full", disabled: frozenset[str] = frozenset()) -> Engine:
    settings = BootSettings(dhcp_mode=mode, lease_time_s=3600, pxe_lease_time_s=120)
    return Engine(settings, network(disabled), LeaseTable())


def request(kind: MessageType, mac: bytes = MAC, **fields: object) -> Packet:
    options = {Opt.MESSAGE_TYPE: bytes((kind,)), **fields.pop("options", {})}  # type: ignore[dict-item]
    packet = Packet(xid=7, chaddr=mac, options=options, **fields)  # type: ignore[arg-type]
    return parse(build(packet))  # every crafted packet goes through the wire form


def dora(e: Engine, mac: bytes = MAC) -> tuple[Decision, Decision]:
    return _pxe_dora(e, {}, mac)


def _ip(text: str) -> bytes:
    return ipaddress.IPv4Address(text).packed


def test_dora_gives_an_address_from_the_range_with_the_subnets_options() -> None:
    e = engine()
    offer, ack = dora(e)
    assert offer.reply is not None and ack.reply is not None
    assert offer.reply.message_type is MessageType.OFFER
    assert ack.reply.message_type is MessageType.ACK
    assert ack.reply.yiaddr == offer.reply.yiaddr == "10.9.0.100"
    opts = ack.reply.options
    assert opts[Opt.SUBNET_MASK] == bytes((255, 255, 255, 0))
    assert opts[Opt.ROUTERS] == _ip("10.9.0.1")
    assert opts[Opt.DNS_SERVERS] == _ip("10.0.0.53")  # the IPv6 one cannot go in option 6
    assert opts[Opt.DOMAIN_NAME] == b"maas.test"
    assert opts[Opt.INTERFACE_MTU] == (9000).to_bytes(2, "big")
    assert opts[Opt.NTP_SERVERS] == _ip("10.0.0.123")
    assert int.from_bytes(opts[Opt.LEASE_TIME], "big") == 3600
    assert opts[Opt.SERVER_ID] == _ip("10.9.0.1")
    assert ack.commit is not None and ack.commit.expires == NOW + 3600
    assert Opt.BOOTFILE_NAME not in opts  # not a network-booting client


def test_the_range_runs_out_and_a_second_client_gets_the_next_address() -> None:
    e = engine()
    macs = [bytes.fromhex(f"5254000000{i:02x}") for i in range(4)]
    got = [dora(e, mac)[1].reply for mac in macs[:3]]
    assert [r.yiaddr for r in got if r] == ["10.9.0.100", "10.9.0.101", "10.9.0.102"]
    exhausted = e.handle(request(MessageType.DISCOVER, macs[3]), IFACE, NOW)
    assert exhausted.reply is None and exhausted.dropped == "exhausted"


def test_a_reservation_wins_and_another_address_is_naked() -> None:
    e = engine()
    e.network.reservations["52:54:00:aa:bb:01"] = Reservation(
        9, "10.9.0.20", "52:54:00:aa:bb:01", "node1", 1
    )
    offer, ack = dora(e)
    assert offer.reply is not None and offer.reply.yiaddr == "10.9.0.20"
    assert ack.reply is not None and ack.reply.options[Opt.HOSTNAME] == b"node1"
    reboot = request(MessageType.REQUEST, options={Opt.REQUESTED_IP: _ip("10.9.0.100")})
    nak = e.handle(reboot, IFACE, NOW)
    assert nak.reply is not None and nak.reply.message_type is MessageType.NAK


def test_renew_rebind_release_decline_inform() -> None:
    e = engine()
    _, ack = dora(e)
    assert ack.reply is not None
    ip = ack.reply.yiaddr
    renew = e.handle(request(MessageType.REQUEST, ciaddr=ip), IFACE, NOW + 100)
    assert renew.reply is not None and renew.reply.message_type is MessageType.ACK
    assert renew.commit is not None and renew.commit.expires == NOW + 100 + 3600
    # another client asking for it (INIT-REBOOT) is refused while the lease lasts
    other = bytes.fromhex("525400aabb02")
    taken = e.handle(
        request(MessageType.REQUEST, other, options={Opt.REQUESTED_IP: _ip(ip)}), IFACE, NOW
    )
    assert taken.reply is not None and taken.reply.message_type is MessageType.NAK
    info = e.handle(request(MessageType.INFORM, ciaddr=ip), IFACE, NOW)
    assert info.reply is not None and info.reply.yiaddr == ZERO_IP
    assert Opt.LEASE_TIME not in info.reply.options and Opt.ROUTERS in info.reply.options
    released = e.handle(request(MessageType.RELEASE, ciaddr=ip), IFACE, NOW)
    assert released.reply is None and [r for _, r in released.ended] == ["released"]
    _, again = dora(e)
    assert again.reply is not None
    declined = e.handle(
        request(MessageType.DECLINE, options={Opt.REQUESTED_IP: _ip(again.reply.yiaddr)}),
        IFACE,
        NOW,
    )
    assert [r for _, r in declined.ended] == ["declined"]
    offer, _ = dora(e)
    assert offer.reply is not None and offer.reply.yiaddr != again.reply.yiaddr  # resting


def test_a_request_for_another_servers_offer_withdraws_ours() -> None:
    e = engine()
    e.handle(request(MessageType.DISCOVER), IFACE, NOW)
    elsewhere = {Opt.SERVER_ID: _ip("10.9.0.254"), Opt.REQUESTED_IP: _ip("10.9.0.100")}
    d = e.handle(request(MessageType.REQUEST, options=elsewhere), IFACE, NOW)
    assert d.reply is None and d.dropped == "chose_another_server"
    assert e.leases.offers == {}


def test_relay_giaddr_picks_the_subnet_and_option_82_is_echoed_last() -> None:
    e = engine()
    info = b"\x01\x06port-7\x02\x04ab12"
    relayed = request(
        MessageType.DISCOVER, giaddr="10.8.0.1", hops=1, options={Opt.RELAY_AGENT_INFO: info}
    )
    d = e.handle(relayed, IFACE, NOW)
    assert d.reply is not None and d.reply.yiaddr == "10.8.0.100"
    assert d.reply.giaddr == "10.8.0.1"
    assert d.reply.options[Opt.ROUTERS] == _ip("10.8.0.1")
    assert list(d.reply.options)[-1] == Opt.RELAY_AGENT_INFO
    assert d.reply.options[Opt.RELAY_AGENT_INFO] == info
    # a VLAN neither serving nor relaying to one that does gets nothing
    off = e.handle(request(MessageType.DISCOVER, giaddr="10.7.0.1"), IFACE, NOW)
    assert off.reply is None and off.dropped == "not_served"


def _arch(code: int) -> dict[int, bytes]:
    return {
        Opt.CLIENT_ARCH: code.to_bytes(2, "big"),
        Opt.VENDOR_CLASS: b"PXEClient:Arch:%05d" % code,
    }


@pytest.mark.parametrize(
    ("options", "file", "vendor"),
    [
        (_arch(0), b"lpxelinux.0", None),
        (_arch(7), b"bootx64.efi", None),
        (_arch(9), b"bootx64.efi", None),
        (_arch(11), b"bootaa64.efi", None),
        (
            {Opt.CLIENT_ARCH: b"\x00\x10", Opt.VENDOR_CLASS: b"HTTPClient:Arch:00016"},
            b"http://10.9.0.1:5248/boot/bootx64.efi",
            b"HTTPClient",
        ),
        (
            {**_arch(7), Opt.USER_CLASS: b"iPXE"},
            b"http://10.9.0.1:5248/boot/ipxe.cfg",
            None,
        ),
    ],
    ids=["bios", "uefi-x64", "uefi-bc", "uefi-arm64", "uefi-http", "ipxe"],
)
def test_pxe_boot_options_follow_option_93(
    options: dict[int, bytes], file: bytes, vendor: bytes | None
) -> None:
    e = engine()
    offer, ack = (
        dora(e, **{str(k): v for k, v in options.items()}) if False else _pxe_dora(e, options)
    )
    for d in (offer, ack):
        assert d.reply is not None
        assert d.reply.file == file and d.reply.options[Opt.BOOTFILE_NAME] == file
        assert d.reply.siaddr == "10.9.0.1"
        assert d.reply.options.get(Opt.VENDOR_CLASS) == vendor
        if not file.startswith(b"http"):
            assert d.reply.options[Opt.TFTP_SERVER_NAME] == b"10.9.0.1"
    assert ack.reply is not None and int.from_bytes(ack.reply.options[Opt.LEASE_TIME], "big") == 120
    assert offer.pxe is not None and offer.pxe.mac == "52:54:00:aa:bb:01"


def _pxe_dora(e: Engine, options: dict[int, bytes], mac: bytes = MAC) -> tuple[Decision, Decision]:
    offer = e.handle(request(MessageType.DISCOVER, mac, options=options), IFACE, NOW)
    assert offer.reply is not None
    chosen = {Opt.SERVER_ID: _ip("10.9.0.1"), Opt.REQUESTED_IP: _ip(offer.reply.yiaddr)}
    ack = e.handle(request(MessageType.REQUEST, mac, options={**options, **chosen}), IFACE, NOW)
    return offer, ack


def test_a_disabled_boot_architecture_gets_an_address_and_no_boot_file() -> None:
    e = engine(disabled=frozenset({"uefi_amd64_tftp"}))
    offer, _ = _pxe_dora(e, _arch(7))
    assert offer.reply is not None and offer.reply.yiaddr == "10.9.0.100"
    assert offer.reply.file == b"" and Opt.BOOTFILE_NAME not in offer.reply.options
    bios, _ = _pxe_dora(e, _arch(0))
    assert bios.reply is not None and bios.reply.file == b"lpxelinux.0"


def test_a_known_mac_is_not_reported_as_unknown() -> None:
    e = engine()
    e.network.reservations["52:54:00:aa:bb:01"] = Reservation(
        9, "10.9.0.20", "52:54:00:aa:bb:01", None, 1
    )
    offer, _ = _pxe_dora(e, _arch(0))
    assert offer.pxe is None


def test_proxy_mode_answers_pxe_clients_with_boot_options_and_no_address() -> None:
    e = engine(mode="proxy")
    plain = e.handle(request(MessageType.DISCOVER), IFACE, NOW)
    assert plain.reply is None and plain.dropped == "proxy_not_pxe"
    d = e.handle(request(MessageType.DISCOVER, options=_arch(0)), IFACE, NOW)
    assert d.reply is not None and d.reply.message_type is MessageType.OFFER
    assert d.reply.yiaddr == ZERO_IP and d.reply.file == b"lpxelinux.0"
    assert d.reply.options[Opt.VENDOR_CLASS] == b"PXEClient"
    assert d.reply.options[Opt.VENDOR_SPECIFIC] == bytes((6, 1, 8, 255))
    assert d.commit is None and len(e.leases) == 0


def test_packets_that_are_not_requests_are_dropped() -> None:
    e = engine()
    reply = parse(build(Packet(op=2, options={Opt.MESSAGE_TYPE: b"\x02"})))
    assert e.handle(reply, IFACE, NOW).dropped == "not_a_request"
    bootp = parse(build(Packet(chaddr=MAC)))
    assert e.handle(bootp, IFACE, NOW).dropped == "no_message_type"
