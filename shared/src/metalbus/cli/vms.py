"""``vms``: the VMs on KVM hosts (composed or found there); decompose."""

from typing import Annotated

import typer

from metalbus.client import ops

from .output import JsonOpt, out, session, show_list, show_one

Id = Annotated[int, typer.Argument(help="the VM's id", min=1)]
COLUMNS = ("id", "host_id", "name", "cores", "memory", "status", "power_state", "composed")

app = typer.Typer(
    name="vms",
    help="VMs on KVM hosts.\n\nExample: metalbus admin vms list --host 1",
    no_args_is_help=True,
)


@app.command("list")
def list_(
    ctx: typer.Context,
    host: Annotated[int | None, typer.Option(min=1, help="only this KVM host's VMs")] = None,
    json: JsonOpt = False,
) -> None:
    """List the VMs.

    Example: metalbus admin vms list --host 1
    """
    show_list(list(session(ctx).client.each(ops.vms.list, host_id=host)), COLUMNS, json)


@app.command("show")
def show(ctx: typer.Context, id: Id, json: JsonOpt = False) -> None:
    """Show one VM.

    Example: metalbus admin vms show 4
    """
    show_one(session(ctx).send(ops.vms.get(id)), json)


@app.command("xml")
def xml(ctx: typer.Context, id: Id) -> None:
    """Print a VM's libvirt domain XML.

    Example: metalbus admin vms xml 4 > vm4.xml
    """
    out.file.write(session(ctx).send(ops.vms.xml(id)).xml + "\n")


@app.command("decompose")
def decompose(ctx: typer.Context, id: Id, json: JsonOpt = False) -> None:
    """Destroy a VM, undefine it with its storage, release its addresses.

    Example: metalbus admin vms decompose 4
    """
    show_one(session(ctx).send(ops.vms.decompose(id)), json)
