"""The load generator of ``bench/discovery.py``: gratuitous ARP frames into an interface.

Run inside the benchmark's peer namespace as
``arp_sender.py INTERFACE RATE COUNT FIRST CYCLE BASE``: sends ``COUNT`` frames of
neighbours ``FIRST + i % CYCLE`` (address ``BASE + n``, MAC ``02:00:<n>``) at ``RATE``
frames/s (0: as fast as it goes), then prints what it sent and how long it took, as JSON.
Kept apart from the benchmark so that it starts quickly (no service imports).
"""

from __future__ import annotations

import ipaddress
import json
import socket
import sys
import time

from metalbus.discovery.frames import arp_request


def gratuitous(index: int, base: int) -> bytes:
    """A gratuitous ARP from neighbour ``index``: its own MAC (locally administered)."""
    mac = b"\x02\x00" + index.to_bytes(4, "big")
    address = ipaddress.IPv4Address(base + index)
    return arp_request(mac, address, address)


def send(interface: str, rate: int, count: int, first: int, cycle: int, base: int) -> None:
    """Send ``count`` frames of neighbours ``first + i % cycle`` at ``rate``/s (0: flat out);
    print what was sent and how long it took, as JSON."""
    frames = [gratuitous(first + i, base) for i in range(min(cycle, count))]
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    sock.bind((interface, 0))
    burst = max(1, rate // 1000) if rate else 256  # about 1 ms of frames between checks
    started = time.perf_counter()
    sent = 0
    while sent < count:
        for n in range(sent, min(sent + burst, count)):
            sock.send(frames[n % len(frames)])
        sent = min(sent + burst, count)
        if rate:
            ahead = started + sent / rate - time.perf_counter()
            if ahead > 0:
                time.sleep(ahead)  # deliberate pacing: this is the load generator
    print(json.dumps({"sent": sent, "seconds": time.perf_counter() - started}))


if __name__ == "__main__":
    send(sys.argv[1], *(int(a) for a in sys.argv[2:7]))
