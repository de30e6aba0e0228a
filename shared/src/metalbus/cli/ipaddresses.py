"""``ipaddresses``: addresses in use; reserve a given or the next free one, release."""

from typing import Annotated

import typer

from metalbus.client import ops
from metalbus.shared.contract import ipam as ip

from . import kv
from .output import JsonOpt, session, show_list, show_one

Pairs = Annotated[list[str] | None, typer.Argument(help="key=value ...", show_default=False)]
Key = Annotated[str | None, typer.Option(help="a retry with the same key gets the first answer")]
COLUMNS = ("id", "ip", "subnet_id", "alloc_type", "owner_type", "owner_id", "hostname", "mac")
FILTERS = tuple(q for q in ops.ipaddresses._list.query if q not in ("after", "limit"))

app = typer.Typer(
    name="ipaddresses",
    help="IP addresses in use (ipam).\n\n"
    "Example: metalbus admin ipaddresses reserve subnet_id=1 hostname=printer",
    no_args_is_help=True,
)


@app.command("list")
def list_(ctx: typer.Context, pairs: Pairs = None, json: JsonOpt = False) -> None:
    """List the addresses in use (filters: subnet_id, alloc_type, owner_type, owner_id,
    mac, ip).

    Example: metalbus admin ipaddresses list subnet_id=1 alloc_type=sticky
    """
    query = kv.parse(pairs, allowed=FILTERS)
    show_list(list(session(ctx).client.each(ops.ipaddresses.list, **query)), COLUMNS, json)


@app.command("show")
def show(
    ctx: typer.Context, id: Annotated[int, typer.Argument(min=1)], json: JsonOpt = False
) -> None:
    """Show one address by id.

    Example: metalbus admin ipaddresses show 7
    """
    show_one(session(ctx).send(ops.ipaddresses.get(id)), json)


@app.command("reserve")
def reserve(
    ctx: typer.Context, pairs: Pairs = None, idempotency_key: Key = None, json: JsonOpt = False
) -> None:
    """Reserve an address: ``ip=`` a given one, or ``subnet_id=`` the next free one.

    Fields: ip, subnet_id, alloc_type (default user_reserved), owner_type, owner_id,
    hostname, mac.

    Example: metalbus admin ipaddresses reserve subnet_id=1 hostname=printer
    """
    body = kv.parse(pairs, ip.AllocateAddress)
    body.setdefault("alloc_type", "user_reserved")
    show_one(session(ctx).send(ops.ipaddresses.allocate(body, idempotency_key)), json)


@app.command("release")
def release(
    ctx: typer.Context, pairs: Pairs = None, idempotency_key: Key = None, json: JsonOpt = False
) -> None:
    """Release an address by ``ip=`` (or ``id=``).

    Example: metalbus admin ipaddresses release ip=10.0.0.7
    """
    body = kv.parse(pairs, ip.ReleaseAddress)
    show_one(session(ctx).send(ops.ipaddresses.release(body, idempotency_key)), json)
