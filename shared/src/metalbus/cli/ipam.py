"""fabrics, vlans, spaces, subnets, static-routes and ipranges: ipam's objects.

They share one shape (list, show, create, update, delete), so each is declared once in
:data:`KINDS` and its group is made by :func:`crud_group`; ``subnets`` adds statistics.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import typer

from metalbus.client import ops

from . import kv
from .output import JsonOpt, done, session, show_list, show_one

Pairs = Annotated[list[str] | None, typer.Argument(help="key=value ...", show_default=False)]
Id = Annotated[int, typer.Argument(help="the object's id", min=1)]


@dataclass(frozen=True)
class Kind:
    name: str  # the group: "static-routes"
    noun: str  # "static route"
    resource: ops.Crud[Any]
    columns: tuple[str, ...]
    example: str  # key=value arguments of a create
    force: str | None = None  # what delete --force does, when it can


KINDS = (
    Kind("fabrics", "fabric", ops.fabrics, ("id", "name", "default_vlan_id", "description"),
         "name=dc1", "delete the fabric's subnets too"),
    Kind("vlans", "VLAN", ops.vlans,
         ("id", "fabric_id", "vid", "name", "mtu", "dhcp_on", "space_id"),
         "fabric_id=1 vid=20 name=storage", "delete the VLAN's subnets too"),
    Kind("spaces", "space", ops.spaces, ("id", "name", "description"), "name=dmz"),
    Kind("subnets", "subnet", ops.subnets, ("id", "cidr", "name", "vlan_id", "gateway_ip"),
         "cidr=10.0.0.0/24 vlan_id=1 gateway_ip=10.0.0.1", "release the subnet's addresses too"),
    Kind("static-routes", "static route", ops.static_routes,
         ("id", "source_subnet_id", "destination_subnet_id", "gateway_ip", "metric"),
         "source_subnet_id=1 destination_subnet_id=2 gateway_ip=10.0.0.254"),
    Kind("ipranges", "IP range", ops.ipranges,
         ("id", "subnet_id", "type", "start_ip", "end_ip", "comment"),
         "subnet_id=1 type=dynamic start_ip=10.0.0.100 end_ip=10.0.0.199"),
)  # fmt: skip


def crud_group(kind: Kind) -> typer.Typer:
    """The list/show/create/update/delete commands of one kind."""
    resource = kind.resource
    group = typer.Typer(
        name=kind.name,
        help=f"{kind.noun[0].upper()}{kind.noun[1:]}s (ipam).\n\n"
        f"Example: metalbus admin {kind.name} create {kind.example}",
        no_args_is_help=True,
    )
    filters = tuple(q for q in resource._list.query if q not in ("after", "limit"))

    @group.command("list")
    def list_(ctx: typer.Context, pairs: Pairs = None, json: JsonOpt = False) -> None:
        s = session(ctx)
        query = kv.parse(pairs, allowed=filters)
        show_list(list(s.client.each(resource.list, **query)), kind.columns, json)

    by = f" (filters: {', '.join(filters)})" if filters else ""
    example = f" {filters[0]}=1" if filters else " --json"
    list_.__doc__ = (
        f"List every {kind.noun}{by}.\n\nExample: metalbus admin {kind.name} list{example}"
    )

    @group.command("show")
    def show(ctx: typer.Context, id: Id, json: JsonOpt = False) -> None:
        show_one(session(ctx).send(resource.get(id)), json)

    show.__doc__ = f"Show one {kind.noun}.\n\nExample: metalbus admin {kind.name} show 1"

    @group.command("create")
    def create(ctx: typer.Context, pairs: Pairs = None, json: JsonOpt = False) -> None:
        body = kv.parse(pairs, resource.create_model)
        show_one(session(ctx).send(resource.create(body)), json)

    create.__doc__ = (
        f"Create a {kind.noun} from key=value fields.\n\n"
        f"Example: metalbus admin {kind.name} create {kind.example}"
    )

    @group.command("update")
    def update(ctx: typer.Context, id: Id, pairs: Pairs = None, json: JsonOpt = False) -> None:
        body = kv.parse(pairs, resource.update_model)
        show_one(session(ctx).send(resource.update(id, body)), json)

    update.__doc__ = (
        f"Change the fields given of a {kind.noun} (key= clears one).\n\n"
        f"Example: metalbus admin {kind.name} update 1 description=lab"
    )

    _delete_command(group, kind)
    return group


def _delete_command(group: typer.Typer, kind: Kind) -> None:
    resource = kind.resource
    example = f"Example: metalbus admin {kind.name} delete 1"
    if kind.force is None:

        def delete(ctx: typer.Context, id: Id, json: JsonOpt = False) -> None:
            session(ctx).send(resource.delete(id))
            done(f"deleted {kind.noun} {id}", json, {"deleted": id})

    else:
        Force = Annotated[bool, typer.Option("--force", help=kind.force)]

        def delete(  # type: ignore[misc]
            ctx: typer.Context, id: Id, force: Force = False, json: JsonOpt = False
        ) -> None:
            session(ctx).send(resource.delete(id, force=force))
            done(f"deleted {kind.noun} {id}", json, {"deleted": id})

    delete.__doc__ = f"Delete a {kind.noun}.\n\n{example}"
    group.command("delete")(delete)


def _statistics(group: typer.Typer) -> None:
    @group.command("statistics")
    def statistics(
        ctx: typer.Context,
        id: Id,
        free_blocks: Annotated[
            int | None, typer.Option(help="list at most this many free blocks")
        ] = None,
        json: JsonOpt = False,
    ) -> None:
        """Addresses used and free in a subnet, its free blocks and ranges.

        Example: metalbus admin subnets statistics 1 --free-blocks 5
        """
        show_one(session(ctx).send(ops.subnets.statistics(id, free_blocks)), json)


EXTRAS: dict[str, Callable[[typer.Typer], None]] = {"subnets": _statistics}


def groups() -> list[typer.Typer]:
    made = []
    for kind in KINDS:
        group = crud_group(kind)
        if extra := EXTRAS.get(kind.name):
            extra(group)
        made.append(group)
    return made
