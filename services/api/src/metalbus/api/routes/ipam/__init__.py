"""``/api/v1`` routes of the ipam service: the api forwards them over the bus, keeping nothing.

- :mod:`.network`: fabrics, VLANs, spaces, subnets (and their statistics), static routes,
  IP ranges;
- :mod:`.addresses`: IP addresses (allocate, release) and the DHCP configuration;
- :mod:`.crud`: the five routes every kind of object shares, made from its commands;
- :mod:`..forwarding` (shared by every forwarded service): the one call to the bus, naming a
  fault's field where the client put it.

Reads need the ``readonly`` role, writes ``operator``. Create answers 201, deleting a fabric,
VLAN, space, subnet, static route or IP range 204, releasing an address 200 with the address.
"""

from . import addresses, network

routers = (*network.routers, *addresses.routers)

__all__ = ["routers"]
