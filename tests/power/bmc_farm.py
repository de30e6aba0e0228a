"""Many IPMI BMCs in one process: pyghmi's own BMC server class, on loopback UDP ports.

Run as a program (the tests and ``bench/power.py`` do)::

    python tests/power/bmc_farm.py --count 250 [--user admin --password password]

It prints ``ready <port> <port> ...`` once every BMC listens (BMC ``i`` starts on when ``i``
is even, off when odd), then obeys one command per line on stdin, answering ``ok`` (or the
value asked for) on stdout:

- ``mute <port>`` / ``unmute <port>``: the BMC stops answering anything (as a dead BMC
  would), or answers again;
- ``set <port> on|off``: someone pressed the power button;
- ``get <port>``: the power state and boot device, e.g. ``on network``.

It exits when stdin closes.
"""

from __future__ import annotations

import argparse
import os
import select
import socket
import sys
import threading
from typing import Any

import pyghmi.ipmi.bmc as bmc
import pyghmi.ipmi.private.serversession as serversession
import pyghmi.ipmi.private.session as ipmisession

from metalbus.power.drivers import pyghmi_fixes

_NO_CIPHER_SUITE_MATCH = 0x11


class Suite3Session(serversession.ServerSession):
    """pyghmi's server session, with three of its faults fixed.

    - It speaks cipher suite 3 only, but answers an open-session request for suite 17 as if
      it had accepted it, and pyghmi's client then fails to log in. Say no instead, as a
      suite-3-only BMC (OpenIPMI's ipmi_sim among them) does, so the client falls back to 3.
    - Sessions are filed under ``bmc_handlers[client address][BMC port]``. When a client
      starts a new login from a socket that already had a session with this BMC (pyghmi's
      client shares one socket among up to 64 BMCs and logs in again after a timeout),
      pyghmi drops ``bmc_handlers[client address]`` whole: the sessions of that client
      socket with *every* BMC of this process. Only this BMC's entry is dropped here.
    - A packet queued for a session that was dropped meanwhile went to
      ``self.sessionless_data``, which server sessions lack: the AttributeError stopped the
      farm's event loop, and with it all its BMCs. It goes to the BMC's server instead.
    """

    def create_open_session_response(self, request: Any) -> Any:
        if len(request) > 12 and request[12] != 1:  # authentication algorithm: not HMAC-SHA1
            return bytearray([request[0], _NO_CIPHER_SUITE_MATCH, 0, 0]) + request[4:8]
        return super().create_open_session_response(request)

    def _handle_ipmi_packet(self, data: Any, sockaddr: Any = None, qent: Any = None) -> Any:
        handlers = ipmisession.Session.bmc_handlers
        if (
            data[4] in (0, 2)  # IPMI 1.5 framing: the start of a login
            and bytes(data[5:13]) == bytes(8)  # sequence number 0, session id 0
            and qent is not None
            and qent[2] in handlers
        ):
            mine = handlers.get(sockaddr, {})
            port = qent[2].getsockname()[1]
            if mine.get(port) is self:
                del mine[port]
            self._to_server(qent)
            return None
        return super()._handle_ipmi_packet(data, sockaddr=sockaddr, qent=qent)

    def process_pktqueue(self) -> None:
        handlers = ipmisession.Session.bmc_handlers
        while self.pktqueue:
            pkt = self.pktqueue.popleft()
            if pkt[1] in handlers and pkt[2].getsockname()[1] in handlers[pkt[1]]:
                data = bytearray(pkt[0])
                if data[0] == 6 and data[2:4] == b"\xff\x07":
                    self._handle_ipmi_packet(data, sockaddr=pkt[1], qent=pkt)
            elif pkt[2] in handlers:
                self._to_server(pkt)

    @staticmethod
    def _to_server(pkt: Any) -> None:
        server = ipmisession.Session.bmc_handlers[pkt[2]][0]
        server.pktqueue.append(pkt)
        server.process_pktqueue()


serversession.ServerSession = Suite3Session  # type: ignore[misc]
# The farm's event loop and its I/O thread share sockets the same way a client's do.
pyghmi_fixes.apply()


class _ReadableOnly:
    """pyghmi's I/O thread selects on every socket, then tries ``recvfrom`` on *every* socket
    (each empty one raising and catching an error): with hundreds of BMCs in one process
    that scan, per packet, was most of the farm's CPU. Remember what select found readable
    and read only those."""

    readable: list[Any] = []

    @classmethod
    def select(cls, rlist: Any, wlist: Any, xlist: Any, timeout: float) -> Any:
        ready = select.select(rlist, wlist, xlist, timeout)
        cls.readable = ready[0]
        return ready


_graball = ipmisession._io_graball
ipmisession.select = _ReadableOnly  # type: ignore[assignment]
ipmisession._io_graball = lambda _sockets, waiters: _graball(_ReadableOnly.readable, waiters)


class SimBmc(bmc.Bmc):
    """A BMC whose machine is a flag, and that can be made to play dead."""

    def __init__(self, authdata: dict[str, str], address: str, port: int, on: bool) -> None:
        super().__init__(authdata, port=port, address=address)
        self.port = self.serversocket.getsockname()[1]
        self.powerstate = "on" if on else "off"
        self.bootdevice = "default"
        self.mute = False
        self.address = address

    def sessionless_data(self, data: Any, sockaddr: Any) -> None:
        if not self.mute:
            super().sessionless_data(data, sockaddr)

    def handle_raw_request(self, request: Any, session: Any) -> None:
        if not self.mute:
            super().handle_raw_request(request, session)

    def get_power_state(self) -> str:
        return self.powerstate

    def power_on(self) -> None:
        self.powerstate = "on"

    def power_off(self) -> None:
        self.powerstate = "off"

    def power_shutdown(self) -> None:
        self.powerstate = "off"

    def power_cycle(self) -> None:
        self.powerstate = "on"

    def power_reset(self) -> None:
        self.powerstate = "on"

    def get_boot_device(self) -> str:
        return self.bootdevice

    def set_boot_device(self, bootdevice: str) -> None:
        self.bootdevice = bootdevice


def _unique_port(address: str, taken: set[int]) -> int:
    """A free UDP port on ``address`` that no other BMC of this process has.

    pyghmi files a server session under (client address, *port* of the BMC's socket), not
    the BMC's address: two BMCs of one process on different addresses but the same port
    would share their sessions with one client socket, and a packet for one reaches the
    other (pyghmi then fails with AttributeError in its event loop and the whole farm
    stops). Ports are unique per process, so that never happens.
    """
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind((address, 0))
            port = int(probe.getsockname()[1])
        if port not in taken:
            return port


def obey(bmcs: list[SimBmc]) -> None:
    try:
        _obey(bmcs)
    finally:
        # stdin closed (the parent is done with us, or gone), or a bad command: stop.
        os._exit(0)


def _obey(bmcs: list[SimBmc]) -> None:
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        verb, port = words[0], int(words[1])
        target = next(b for b in bmcs if b.port == port)  # ports are unique on one address
        if verb == "mute":
            target.mute = True
        elif verb == "unmute":
            target.mute = False
        elif verb == "set":
            target.powerstate = words[2]
        elif verb == "get":
            print(f"{target.powerstate} {target.bootdevice}", flush=True)
            continue
        print("ok", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument(
        "--spread",
        type=int,
        default=None,
        metavar="N",
        help="give BMC i its own loopback address 127.N.<i // 250>.<i % 250 + 1> (one host each)",
    )
    parser.add_argument("--user", default="admin")
    parser.add_argument("--password", default="password")
    args = parser.parse_args()
    authdata = {args.user: args.password}
    bmcs: list[SimBmc] = []
    taken: set[int] = set()
    for i in range(args.count):
        address = args.address
        if args.spread is not None:
            address = f"127.{args.spread}.{i // 250}.{i % 250 + 1}"
        sim = SimBmc(authdata, address, _unique_port(address, taken), on=i % 2 == 0)
        taken.add(sim.port)
        bmcs.append(sim)
    print("ready " + " ".join(str(b.port) for b in bmcs), flush=True)
    if args.spread is not None:
        print("addresses " + " ".join(b.address for b in bmcs), flush=True)
    threading.Thread(target=obey, args=(bmcs,), daemon=True).start()
    # pyghmi wakes its I/O thread by sending a byte to its first socket at ``myself``, which
    # it guesses as ::1 or ::ffff:127.0.0.1; the farm's sockets are IPv4 on 127.N.x.y, so
    # the wake-up went nowhere. Point it at the first BMC's own address.
    ipmisession.myself = ipmisession.iosockets[0].getsockname()[0]
    while True:
        # Short waits: a packet that lands between pyghmi's check of its queue and its wait
        # would otherwise sit until the next packet (or the client's retransmission, 0.5-1 s
        # later, which then confuses the session); this bounds that delay to 20 ms.
        ipmisession.Session.wait_for_rsp(0.02)


if __name__ == "__main__":
    main()
