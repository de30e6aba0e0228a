"""``discoveries``: neighbours seen on the wire, active scans, and making them known."""

from typing import Annotated

import typer

from metalbus.client import ops
from metalbus.shared.contract import devices as dv
from metalbus.shared.contract import discovery as d

from . import kv
from .output import Fail, JsonOpt, session, show_list, show_one

Pairs = Annotated[list[str] | None, typer.Argument(help="key=value ...", show_default=False)]
COLUMNS = (
    "id", "ip", "mac", "vendor", "hostname", "interface", "subnet_cidr", "last_seen",
    "ip_known", "mac_known",
)  # fmt: skip
SCAN_COLUMNS = ("id", "cidr", "interface", "state", "probes", "sent", "answered", "error")

app = typer.Typer(
    name="discoveries",
    help="Devices discovery saw on the network, and ARP scans.\n\n"
    "Example: metalbus admin discoveries list unknown=ip\n\n"
    "Example: metalbus admin discoveries add-device ip=10.0.0.9 mac=52:54:00:12:34:56 "
    "hostname=printer",
    no_args_is_help=True,
)


@app.command("list")
def list_(ctx: typer.Context, pairs: Pairs = None, json: JsonOpt = False) -> None:
    """List discoveries (filters: unknown=ip|mac|both, subnet_id, mac, ip).

    Example: metalbus admin discoveries list unknown=both subnet_id=1
    """
    query = kv.parse(pairs, allowed=("unknown", "subnet_id", "mac", "ip"))
    show_list(list(session(ctx).client.each(ops.discovery.list, **query)), COLUMNS, json)


@app.command("clear")
def clear(
    ctx: typer.Context,
    pairs: Pairs = None,
    all_: Annotated[bool, typer.Option("--all", help="forget every discovery")] = False,
    json: JsonOpt = False,
) -> None:
    """Forget discoveries by mac= and/or ip=, or all of them with --all.

    Example: metalbus admin discoveries clear mac=52:54:00:12:34:56
    """
    body = kv.parse(pairs, d.ClearRequest)
    if all_:
        body["all"] = True
    if not body:
        raise Fail("mac: say which discoveries to clear (mac=..., ip=...) or --all", usage=True)
    result = session(ctx).send(ops.discovery.clear(body))
    show_one(result, json)


@app.command("add-device")
def add_device(ctx: typer.Context, pairs: Pairs = None, json: JsonOpt = False) -> None:
    """Make a discovery known: a new device (ip, mac, hostname, domain, description,
    ip_assignment=static|external|dynamic, parent, zone), or with as=interface an
    interface of machine= or device= (name=).

    Example: metalbus admin discoveries add-device ip=10.0.0.9 mac=52:54:00:12:34:56
    hostname=printer

    Example: metalbus admin discoveries add-device as=interface machine=7k1cyr
    ip=10.0.0.9 mac=52:54:00:12:34:56
    """
    body = kv.parse(pairs, dv.MakeKnownRequest)
    show_one(session(ctx).send(ops.discovery.make_known(body)), json)


@app.command("scan")
def scan(ctx: typer.Context, pairs: Pairs = None, json: JsonOpt = False) -> None:
    """Start an ARP sweep of a directly attached IPv4 subnet (cidr=, interface=).

    Example: metalbus admin discoveries scan cidr=10.0.0.0/24
    """
    show_one(session(ctx).send(ops.discovery.scan(kv.parse(pairs, d.ScanRequest))), json)


@app.command("scans")
def scans(ctx: typer.Context, json: JsonOpt = False) -> None:
    """List the scans and their progress.

    Example: metalbus admin discoveries scans
    """
    show_list(list(session(ctx).client.each(ops.discovery.scans)), SCAN_COLUMNS, json)


@app.command("scan-status")
def scan_status(
    ctx: typer.Context, id: Annotated[int, typer.Argument(min=1)], json: JsonOpt = False
) -> None:
    """Show one scan.

    Example: metalbus admin discoveries scan-status 3
    """
    show_one(session(ctx).send(ops.discovery.get_scan(id)), json)


@app.command("dhcp-probe")
def dhcp_probe(ctx: typer.Context, pairs: Pairs = None, json: JsonOpt = False) -> None:
    """Look for DHCP servers on an interface (interface=; default: the service's own).

    Example: metalbus admin discoveries dhcp-probe interface=eth0
    """
    result = session(ctx).send(ops.discovery.dhcp_probe(kv.parse(pairs, d.DhcpProbe)))
    if json:
        show_one(result, json)
    else:
        show_list(result.servers, ("server_ip", "server_mac", "offered_ip", "external"), False)
