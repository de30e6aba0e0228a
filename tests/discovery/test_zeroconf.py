"""A real mDNS responder (python-zeroconf) announces a host name inside the peer namespace.

The responder is a separate Python process started in the namespace with ``ip netns exec``;
it registers a service whose server is ``zc-peer.local`` at the peer's address, which makes
zeroconf announce the service and the host's A record on the link, the way a printer or a
workstation running avahi does. discovery, listening on the host's end, takes the name.
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys

from metalbus.shared.contract import discovery as d
from tests.conftest import skip_or_fail
from tests.discovery.conftest import Link, Stack, announce, ip
from tests.helpers import async_wait_for

PEER_IP = "10.213.9.10"

# Announces until its standard input closes, then unregisters (a goodbye, TTL 0).
RESPONDER = """
import socket, sys
from zeroconf import IPVersion, ServiceInfo, Zeroconf

address = sys.argv[1]
zc = Zeroconf(interfaces=[address], ip_version=IPVersion.V4Only)
info = ServiceInfo(
    "_http._tcp.local.",
    "metalbus peer._http._tcp.local.",
    addresses=[socket.inet_aton(address)],
    port=80,
    server="zc-peer.local.",
)
zc.register_service(info)
print("registered", flush=True)
sys.stdin.read()
zc.unregister_service(info)
zc.close()
"""


async def test_zeroconf_announcement_names_the_discovery(stack: Stack, link: Link) -> None:
    if importlib.util.find_spec("zeroconf") is None:
        skip_or_fail("python-zeroconf is not installed (the root pyproject's dev group)")
    ip("-n", link.namespace, "addr", "add", f"{PEER_IP}/24", "dev", link.peer)
    await stack.start_discovery(interfaces=[link.host])
    await announce(link, PEER_IP)  # the neighbour the name will be joined with
    responder = await asyncio.create_subprocess_exec(
        "ip",
        "netns",
        "exec",
        link.namespace,
        sys.executable,
        "-c",
        RESPONDER,
        PEER_IP,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert responder.stdout is not None and responder.stdin is not None
        line = await asyncio.wait_for(responder.stdout.readline(), 30)
        assert line == b"registered\n", line
        named = await async_wait_for(
            lambda: stack.seen(d.MdnsNameSeen, ip=PEER_IP), 10, "the zeroconf host name"
        )
        assert named[0].hostname == "zc-peer" and named[0].interface == link.host

        async def hostname() -> str | None:
            page = await stack.call(d.DISCOVERY_LIST, ip=PEER_IP)
            return page.items[0].hostname if page.items else None

        assert await async_wait_for(hostname, 10, "the discovery's hostname") == "zc-peer"
        assert (await stack.call(d.DISCOVERY_LIST, ip=PEER_IP)).items[0].mac == link.peer_mac
        responder.stdin.close()  # the responder says goodbye, which changes nothing here
        _, err = await asyncio.wait_for(responder.communicate(), 30)
        assert responder.returncode == 0, err.decode(errors="replace")
    finally:
        if responder.returncode is None:
            responder.kill()
            await responder.wait()
