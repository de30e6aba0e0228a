"""``zones`` and ``pools``: names that group machines and KVM hosts (same shape, one module)."""

from typing import Annotated

import typer

from metalbus.client import ops

from . import kv
from .output import JsonOpt, done, session, show_list, show_one

Pairs = Annotated[list[str] | None, typer.Argument(help="key=value ...", show_default=False)]
Id = Annotated[int, typer.Argument(help="the id", min=1)]
COLUMNS = ("id", "name", "description")


def named_group(name: str, noun: str, resource: ops.Named) -> typer.Typer:
    group = typer.Typer(
        name=name,
        help=f"{noun[0].upper()}{noun[1:]}s.\n\nExample: metalbus admin {name} create name=lab",
        no_args_is_help=True,
    )

    def list_(ctx: typer.Context, json: JsonOpt = False) -> None:
        found = session(ctx).send(resource.list())
        show_list(found, COLUMNS, json)

    def show(ctx: typer.Context, id: Id, json: JsonOpt = False) -> None:
        show_one(session(ctx).send(resource.get(id)), json)

    def create(ctx: typer.Context, pairs: Pairs = None, json: JsonOpt = False) -> None:
        show_one(session(ctx).send(resource.create(kv.parse(pairs))), json)

    def update(ctx: typer.Context, id: Id, pairs: Pairs = None, json: JsonOpt = False) -> None:
        show_one(session(ctx).send(resource.update(id, kv.parse(pairs))), json)

    def delete(ctx: typer.Context, id: Id, json: JsonOpt = False) -> None:
        session(ctx).send(resource.delete(id))
        done(f"deleted {noun} {id}", json, {"deleted": id})

    for command, text in (
        (list_, f"List the {noun}s.\n\nExample: metalbus admin {name} list"),
        (show, f"Show one {noun}.\n\nExample: metalbus admin {name} show 1"),
        (create, f"Create a {noun}: name, description.\n\n"
                 f"Example: metalbus admin {name} create name=lab description='rack 4'"),
        (update, f"Change a {noun}'s name or description.\n\n"
                 f"Example: metalbus admin {name} update 2 description=spare"),
        (delete, f"Delete an empty {noun}.\n\nExample: metalbus admin {name} delete 2"),
    ):  # fmt: skip
        command.__doc__ = text
        group.command(command.__name__.rstrip("_"))(command)
    return group


zones = named_group("zones", "zone", ops.zones)
pools = named_group("pools", "resource pool", ops.pools)
