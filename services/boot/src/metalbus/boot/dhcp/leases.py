"""The leases, in memory: who holds which address until when, what is on offer, what was
declined. Every decision DHCP makes about an address is made here, without I/O; the
durable copy (:mod:`metalbus.boot.dhcp.store`) follows.

Addresses are integers here (fast to compare and step through a range); clients are keyed
by their client identifier (option 61) when they send one, else by their MAC, as RFC 2131
says.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace

from .network import SubnetView


@dataclass(frozen=True)
class Lease:
    """A client's hold on an address; ``expires`` is a UNIX time."""

    ip: int
    mac: str
    client_key: str
    subnet_id: int
    expires: float
    hostname: str | None = None
    client_id: str | None = None

    @property
    def ip_text(self) -> str:
        """The address as dotted text."""
        return str(ipaddress.IPv4Address(self.ip))


@dataclass(frozen=True)
class Offer:
    """An address set aside for a client between OFFER and REQUEST."""

    ip: int
    client_key: str
    until: float


class LeaseTable:
    """Every lease, offer and declined address this server holds."""

    def __init__(self) -> None:
        self.by_ip: dict[int, Lease] = {}
        self.by_client: dict[str, Lease] = {}
        self.offers: dict[str, Offer] = {}
        self.offered_ips: dict[int, str] = {}
        self.declined: dict[int, float] = {}  # address -> until when it is not handed out
        self._cursor: dict[tuple[int, int], int] = {}  # per range: where the last search stopped

    def __len__(self) -> int:
        return len(self.by_ip)

    # -- reading -----------------------------------------------------------------------

    def of_client(self, client_key: str) -> Lease | None:
        """The client's lease, expired or not."""
        return self.by_client.get(client_key)

    def free_for(self, ip: int, client_key: str, now: float) -> bool:
        """Nobody else holds, is offered or declined this address."""
        lease = self.by_ip.get(ip)
        if lease is not None and lease.client_key != client_key and lease.expires > now:
            return False
        offered_to = self.offered_ips.get(ip)
        if offered_to is not None and offered_to != client_key:
            offer = self.offers.get(offered_to)
            if offer is not None and offer.until > now:
                return False
        return self.declined.get(ip, 0.0) <= now

    def find_free(self, subnets: list[SubnetView], client_key: str, now: float) -> int | None:
        """A free address from the subnets' dynamic ranges, or None when they are full.

        Each range keeps a cursor where its last search stopped, so a search is short while
        the range has room; an expired lease's address is taken again only when the search
        comes round to it (clients that come back within that time get their own back).
        """
        for subnet in subnets:
            for first, last in sorted(subnet.ranges.values()):
                size = last - first + 1
                start = self._cursor.get((first, last), first)
                for step in range(size):
                    ip = first + (start - first + step) % size
                    if self.free_for(ip, client_key, now):
                        self._cursor[(first, last)] = first + (ip - first + 1) % size
                        return ip
        return None

    def expired(self, now: float) -> list[Lease]:
        """The leases whose time is up."""
        return [lease for lease in self.by_ip.values() if lease.expires <= now]

    # -- changing ----------------------------------------------------------------------

    def offer(self, ip: int, client_key: str, until: float) -> None:
        """Set ``ip`` aside for the client until ``until``."""
        self.withdraw_offer(client_key)
        self.offers[client_key] = Offer(ip, client_key, until)
        self.offered_ips[ip] = client_key

    def withdraw_offer(self, client_key: str) -> None:
        """Forget the client's offer (it took another server's, or the lease is made)."""
        offer = self.offers.pop(client_key, None)
        if offer is not None and self.offered_ips.get(offer.ip) == client_key:
            del self.offered_ips[offer.ip]

    def put(self, lease: Lease) -> Lease | None:
        """Record a lease (new or renewed); returns the lease it replaced, if any."""
        self.withdraw_offer(lease.client_key)
        previous = self.by_client.get(lease.client_key)
        if previous is not None and previous.ip != lease.ip:
            self.by_ip.pop(previous.ip, None)
        other = self.by_ip.get(lease.ip)
        if other is not None and other.client_key != lease.client_key:
            self.by_client.pop(other.client_key, None)  # an expired lease taken over
        self.by_ip[lease.ip] = lease
        self.by_client[lease.client_key] = lease
        return previous

    def drop(self, lease: Lease) -> None:
        """Forget a lease (released, declined, expired), if it is still the one held."""
        if self.by_ip.get(lease.ip) == lease:
            del self.by_ip[lease.ip]
        if self.by_client.get(lease.client_key) == lease:
            del self.by_client[lease.client_key]

    def decline(self, ip: int, until: float) -> None:
        """Keep ``ip`` out of use until ``until`` (a client found it in use)."""
        self.declined[ip] = until

    def forget_stale(self, now: float) -> None:
        """Drop offers and declines whose time is up (housekeeping)."""
        for key, offer in list(self.offers.items()):
            if offer.until <= now:
                self.withdraw_offer(key)
        for ip, until in list(self.declined.items()):
            if until <= now:
                del self.declined[ip]


def renewed(lease: Lease, expires: float, hostname: str | None) -> Lease:
    """The same lease with a new expiry (and the hostname the client sent, if any)."""
    return replace(lease, expires=expires, hostname=hostname or lease.hostname)
