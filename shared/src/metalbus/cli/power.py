"""``power``: BMCs, their drivers, and power actions (the power service)."""

from typing import Annotated

import typer

from metalbus.client import ops
from metalbus.shared.contract import power as p

from . import kv
from .output import JsonOpt, done, session, show_list, show_one

Pairs = Annotated[list[str] | None, typer.Argument(help="key=value ...", show_default=False)]
Id = Annotated[int, typer.Argument(help="the BMC's id", min=1)]
COLUMNS = ("id", "name", "driver", "host", "machine_id", "power_state", "reachable", "last_error")
RESULT = ("bmc_id", "action", "power_state", "changed", "attempts")

app = typer.Typer(
    name="power",
    help="BMCs and power actions.\n\n"
    "Example: metalbus admin power add name=node1 driver=ipmi settings.address=10.0.0.50 "
    "settings.username=admin settings.password=secret\n\n"
    "Example: metalbus admin power on 1 --boot pxe",
    no_args_is_help=True,
)


@app.command("drivers")
def drivers(ctx: typer.Context, json: JsonOpt = False) -> None:
    """The power drivers and what each can do (--json: their settings schemas).

    Example: metalbus admin power drivers --json
    """
    found = session(ctx).send(ops.power.drivers())
    show_list(found.drivers, ("name", "description", "secret_fields", "can_query"), json)


@app.command("list")
def list_(ctx: typer.Context, pairs: Pairs = None, json: JsonOpt = False) -> None:
    """List the BMCs (filters: driver, machine_id, power_state).

    Example: metalbus admin power list power_state=on
    """
    query = kv.parse(pairs, allowed=("driver", "machine_id", "power_state"))
    show_list(list(session(ctx).client.each(ops.power.list, **query)), COLUMNS, json)


@app.command("show")
def show(ctx: typer.Context, id: Id, json: JsonOpt = False) -> None:
    """Show one BMC (never its secrets).

    Example: metalbus admin power show 1
    """
    show_one(session(ctx).send(ops.power.get(id)), json)


@app.command("add")
def add(ctx: typer.Context, pairs: Pairs = None, json: JsonOpt = False) -> None:
    """Add a BMC: name, driver, settings.<key>=... (see `power drivers`), machine_id, poll.

    Example: metalbus admin power add name=vm1 driver=virsh settings.uri=qemu:///system
    settings.domain=vm1
    """
    show_one(session(ctx).send(ops.power.create(kv.parse(pairs, p.BmcCreate))), json)


@app.command("update")
def update(ctx: typer.Context, id: Id, pairs: Pairs = None, json: JsonOpt = False) -> None:
    """Change a BMC (settings not named are kept, secrets included).

    Example: metalbus admin power update 1 settings.password=new-secret poll=false
    """
    show_one(session(ctx).send(ops.power.update(id, kv.parse(pairs, p.BmcUpdate))), json)


@app.command("delete")
def delete(ctx: typer.Context, id: Id, json: JsonOpt = False) -> None:
    """Forget a BMC and its secrets.

    Example: metalbus admin power delete 1
    """
    session(ctx).send(ops.power.delete(id))
    done(f"deleted BMC {id}", json, {"deleted": id})


Boot = Annotated[p.BootDevice | None, typer.Option(help="set the boot device first")]


@app.command("on")
def on(ctx: typer.Context, id: Id, boot: Boot = None, json: JsonOpt = False) -> None:
    """Power on (a machine already on stays on).

    Example: metalbus admin power on 1 --boot pxe
    """
    override = {"device": boot.value} if boot else None
    show_one(session(ctx).send(ops.power.on(id, override)), json)


@app.command("off")
def off(
    ctx: typer.Context,
    id: Id,
    soft: Annotated[bool, typer.Option("--soft", help="ask the OS to shut down")] = False,
    json: JsonOpt = False,
) -> None:
    """Power off, at once or with --soft through the OS.

    Example: metalbus admin power off 1 --soft
    """
    show_one(session(ctx).send(ops.power.off(id, soft)), json)


@app.command("cycle")
def cycle(ctx: typer.Context, id: Id, json: JsonOpt = False) -> None:
    """Power cycle.

    Example: metalbus admin power cycle 1
    """
    show_one(session(ctx).send(ops.power.cycle(id)), json)


@app.command("query")
def query(ctx: typer.Context, id: Id, json: JsonOpt = False) -> None:
    """Ask the BMC for its power state now.

    Example: metalbus admin power query 1
    """
    show_one(session(ctx).send(ops.power.query(id)), json)


@app.command("boot-device")
def boot_device(
    ctx: typer.Context,
    id: Id,
    device: Annotated[p.BootDevice, typer.Argument(help="where it boots next")],
    persistent: Annotated[bool, typer.Option(help="every boot, not only the next")] = False,
    mode: Annotated[p.BootMode, typer.Option(help="firmware boot mode")] = p.BootMode.LEGACY,
    json: JsonOpt = False,
) -> None:
    """Set the next boot device without touching the power.

    Example: metalbus admin power boot-device 1 pxe --persistent
    """
    boot = {"device": device.value, "persistent": persistent, "mode": mode.value}
    show_one(session(ctx).send(ops.power.boot_device(id, boot)), json)
