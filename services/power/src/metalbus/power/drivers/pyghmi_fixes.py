"""Fixes to pyghmi's shared session machinery, applied once before its first use.

pyghmi (1.6.19, the newest at the time of writing) runs every IPMI session of a process
over a few shared UDP sockets (up to 64 BMCs per socket) and one I/O thread; the calling
threads take turns processing each other's packets. With a few hundred BMCs polled by 64
threads, two of its races stopped every thread for good (the 1000-BMC benchmark hung):

1. **A socket's blocking flag is shared state.** ``_io_sendto`` sets the socket blocking
   before each send; the I/O thread sets it non-blocking, then reads until the socket is
   empty. A send from another thread between those two steps leaves the I/O thread in a
   *blocking* ``recvfrom`` on an empty socket: it waits there until some packet arrives,
   and every caller waits on it, so once the traffic stops nothing moves again. Here the
   read says ``MSG_DONTWAIT`` (never blocks, whatever the flag) and the send leaves the
   flag alone (a UDP send on loopback or a LAN does not block for long anyway).
2. **Two locks taken in both orders.** ``send_payload`` holds the keep-alive lock and then
   takes the waiting-sessions lock; the retry timer (``wait_for_rsp`` and ``awaitresponse``)
   holds the waiting-sessions lock and then sends, taking the keep-alive lock. Two threads
   doing one each deadlock (it shows once BMCs answer slowly and retries start). Both names
   are pointed at one re-entrant lock, so there is no order to get wrong.
3. **A logout is counted twice.** ``Session.logout`` takes the session off its socket's
   usage count once when it marks the session broken and once more unconditionally, so
   every logout or failed session drove the count down by two. Counts went negative (after
   a few muted BMCs, or sessions let go as idle) and pyghmi, which fills the least-used
   socket first, then put far more than its 64 BMCs on one socket. The extra decrement is
   given back after each logout.

All three fixes are in-process replacements of attributes that pyghmi looks up at each call;
nothing on the wire changes. The BMC simulator of the tests applies them as well: it
runs the same machinery as a server.
"""

from __future__ import annotations

import socket
import threading
from typing import Any

_lock = threading.Lock()
_applied = False


def _recvfrom(sock: Any, size: int) -> tuple[bytes, Any] | None:
    try:
        data, address = sock.recvfrom(size, socket.MSG_DONTWAIT)
    except OSError:  # nothing waiting (EAGAIN), or an ICMP error queued on the socket
        return None
    return data, address


def _sendto(sock: Any, packet: bytes, address: Any) -> None:
    try:
        sock.sendto(packet, address)
    except OSError:  # as pyghmi: a lost datagram is what its retry timers are for
        return


def apply() -> None:
    """Patch pyghmi's session module (idempotent, thread-safe)."""
    global _applied
    with _lock:
        if _applied:
            return
        from pyghmi.ipmi.private import session

        session._io_recvfrom = _recvfrom
        session._io_sendto = _sendto
        session.KEEPALIVE_SESSIONS = session.WAITING_SESSIONS
        session.Session.logout = _counted_once(session.Session.logout)
        _applied = True


def _counted_once(logout: Any) -> Any:
    """``Session.logout`` that takes the session off its socket's count once, not twice."""

    def wrapper(self: Any, sessionok: bool = True) -> Any:
        result = logout(self, sessionok)
        # logout's last line is an unconditional decrement: the one too many.
        if self.socket in self.socketpool:
            self.socketpool[self.socket] += 1
        return result

    return wrapper
