"""The command groups under a profile: ``metalbus <profile> <group> <action> ...``.

Each group lives in its own module; the ipam object kinds share one (:mod:`.ipam`).
Aliases follow MAAS (``pod``/``pods``/``vm-host``/``kvm-host``) and singular/plural.
"""

import typer

from . import discoveries, events, ipaddresses, ipam, machines, named, pods, power, tokens, vms
from .dispatch import ResourceGroup

app = typer.Typer(
    cls=ResourceGroup,
    no_args_is_help=True,
    help="Operate metalbus with a logged-in profile.",
    epilog="Example: metalbus admin subnets list --json",
)


def _add(group: typer.Typer, name: str, *aliases: str) -> None:
    app.add_typer(group, name=name)
    for alias in aliases:
        app.add_typer(group, name=alias, hidden=True)


for _group in ipam.groups():
    _name = _group.info.name
    assert isinstance(_name, str)
    _add(_group, _name, _name.rstrip("s"))
_add(ipaddresses.app, "ipaddresses", "ipaddress")
_add(pods.app, "pod", "pods", "kvm-host", "kvm-hosts", "vm-host", "vm-hosts")
_add(vms.app, "vms", "vm")
_add(power.app, "power")
_add(discoveries.app, "discoveries", "discovery")
_add(events.app, "events")
_add(tokens.app, "tokens", "token")
_add(machines.app, "machines", "machine")
_add(named.zones, "zones", "zone")
_add(named.pools, "pools", "pool", "resource-pools", "resource-pool")
