"""Every request the clients can send, by resource, as :class:`~.calls.Call` builders.

``ops.fabrics.create(name="dc1")`` builds the call; ``Client.send`` or ``await
AsyncClient.send`` sends it and returns the shared contract model the API answers with
(a ``Fabric`` here). Bodies may be the contract's input models or plain mappings (sent
as they are, for the API to validate and name the field at fault). Tokens and events are
not contract models (they live in the api service), nor are machines, zones and pools:
they come back as dicts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from metalbus.shared.contract import compose as cp
from metalbus.shared.contract import devices as dv
from metalbus.shared.contract import discovery as d
from metalbus.shared.contract import ipam as ip
from metalbus.shared.contract import power as p

from .calls import Call, Route, query_of, to_json

API = "/api/v1"
M = TypeVar("M", bound=BaseModel)
Body = BaseModel | Mapping[str, Any]
Json = dict[str, Any]
JsonList = list[Json]  # spelled here: in a class with a list() method, list means it


class Resource:
    """A group of routes; :meth:`routes` lists them (the tests check them against the
    OpenAPI document)."""

    def routes(self) -> list[Route]:
        return [v for v in vars(self).values() if isinstance(v, Route)]


class Crud(Resource, Generic[M]):
    """The five routes an object kind shares: list, create, get, update, delete."""

    def __init__(
        self,
        path: str,
        model: type[M],
        query: type[BaseModel],
        create: type[BaseModel] | None,
        update: type[BaseModel],
        *,
        id_name: str = "id",
        delete_query: tuple[str, ...] = (),
    ) -> None:
        self.model = model
        self.create_model = create
        self.update_model = update
        self.id_name = id_name
        self.collection = f"{API}{path}"
        self.one = f"{self.collection}/{{{id_name}}}"
        self._list = Route("GET", self.collection, query_of(query))
        self._create = Route("POST", self.collection, body=create) if create else None
        self._get = Route("GET", self.one)
        self._update = Route("PATCH", self.one, body=update)
        self._delete = Route("DELETE", self.one, delete_query)

    def list(self, **query: Any) -> Call[ip.Page[M]]:
        """One page (``after`` the last id seen, ``limit``), filtered by the query fields."""
        return Call(self._list, ip.Page[self.model], query=query)  # type: ignore[name-defined]

    def create(self, body: Body) -> Call[M]:
        if self._create is None:
            raise TypeError(f"{self.collection} has no create")
        return Call(self._create, self.model, body=to_json(body))

    def get(self, id: int) -> Call[M]:
        return Call(self._get, self.model, self._id(id))

    def update(self, id: int, changes: Body) -> Call[M]:
        """Change the fields given (a model sends only the fields that were set)."""
        return Call(self._update, self.model, self._id(id), body=to_json(changes))

    def delete(self, id: int, **query: Any) -> Call[None]:
        return Call(self._delete, None, self._id(id), query=query)

    def _id(self, id: int) -> dict[str, Any]:
        return {self.id_name: id}


def _crud(
    path: str,
    model: type[M],
    query: type[BaseModel],
    create: type[BaseModel],
    update: type[BaseModel],
    force: bool = False,
) -> Crud[M]:
    return Crud(path, model, query, create, update, delete_query=("force",) if force else ())


fabrics = _crud("/fabrics", ip.Fabric, ip.PageRequest, ip.FabricCreate, ip.FabricUpdate, True)
spaces = _crud("/spaces", ip.Space, ip.PageRequest, ip.SpaceCreate, ip.SpaceUpdate)
vlans = _crud("/vlans", ip.Vlan, ip.VlanQuery, ip.VlanCreate, ip.VlanUpdate, True)
static_routes = _crud(
    "/static-routes",
    ip.StaticRoute,
    ip.StaticRouteQuery,
    ip.StaticRouteCreate,
    ip.StaticRouteUpdate,
)
ipranges = _crud("/ipranges", ip.IpRange, ip.IpRangeQuery, ip.IpRangeCreate, ip.IpRangeUpdate)


class Subnets(Crud[ip.Subnet]):
    def __init__(self) -> None:
        super().__init__(
            "/subnets",
            ip.Subnet,
            ip.SubnetQuery,
            ip.SubnetCreate,
            ip.SubnetUpdate,
            delete_query=("force",),
        )
        self._statistics = Route("GET", f"{self.one}/statistics", ("free_block_limit",))

    def statistics(self, id: int, free_block_limit: int | None = None) -> Call[ip.SubnetStatistics]:
        """Usage of the subnet: addresses in use, free blocks, and its ranges."""
        query = {"free_block_limit": free_block_limit}
        return Call(self._statistics, ip.SubnetStatistics, {"id": id}, query=query)


subnets = Subnets()


class IpAddresses(Resource):
    """Addresses in use: allocate (a given or the next free one), release, look up."""

    def __init__(self) -> None:
        path = f"{API}/ipaddresses"
        self._list = Route("GET", path, query_of(ip.IpAddressQuery))
        key = ("Idempotency-Key",)
        self._allocate = Route("POST", path, body=ip.AllocateAddress, headers=key)
        self._release = Route("POST", f"{path}/release", body=ip.ReleaseAddress, headers=key)
        self._get = Route("GET", f"{path}/{{id}}")
        self._delete = Route("DELETE", f"{path}/{{id}}", headers=key)

    def list(self, **query: Any) -> Call[ip.Page[ip.IpAddress]]:
        return Call(self._list, ip.Page[ip.IpAddress], query=query)

    def allocate(self, body: Body, idempotency_key: str | None = None) -> Call[ip.IpAddress]:
        """Assign ``ip`` (or the next free address of ``subnet_id``); a retry with the same
        key gets the first answer."""
        return Call(self._allocate, ip.IpAddress, body=to_json(body), headers=_key(idempotency_key))

    def release(self, body: Body, idempotency_key: str | None = None) -> Call[ip.IpAddress]:
        return Call(self._release, ip.IpAddress, body=to_json(body), headers=_key(idempotency_key))

    def get(self, id: int) -> Call[ip.IpAddress]:
        return Call(self._get, ip.IpAddress, {"id": id})

    def delete(self, id: int, idempotency_key: str | None = None) -> Call[ip.IpAddress]:
        return Call(self._delete, ip.IpAddress, {"id": id}, headers=_key(idempotency_key))


def _key(idempotency_key: str | None) -> dict[str, str]:
    return {"Idempotency-Key": idempotency_key} if idempotency_key else {}


ipaddresses = IpAddresses()


class Pods(Crud[cp.KvmHost]):
    """KVM hosts (MAAS's pods): add, list, show, update, refresh, compose, delete."""

    def __init__(self) -> None:
        super().__init__(
            "/pods",
            cp.KvmHost,
            cp.KvmHostQuery,
            cp.KvmHostCreate,
            cp.KvmHostUpdate,
            delete_query=("decompose",),
        )
        self._refresh = Route("POST", f"{self.one}/refresh")
        self._compose = Route("POST", f"{self.one}/compose", body=cp.ComposeSpec)

    def refresh(self, id: int) -> Call[cp.KvmHost]:
        return Call(self._refresh, cp.KvmHost, {"id": id})

    def compose(self, id: int, spec: Body) -> Call[cp.ComposeResult]:
        return Call(self._compose, cp.ComposeResult, {"id": id}, body=to_json(spec))


pods = Pods()


class Vms(Resource):
    """VMs on KVM hosts: list, show, the domain XML, decompose."""

    def __init__(self) -> None:
        path = f"{API}/vms"
        self._list = Route("GET", path, query_of(cp.VmQuery))
        self._get = Route("GET", f"{path}/{{id}}")
        self._xml = Route("GET", f"{path}/{{id}}/xml")
        self._delete = Route("DELETE", f"{path}/{{id}}")

    def list(self, **query: Any) -> Call[ip.Page[cp.Vm]]:
        return Call(self._list, ip.Page[cp.Vm], query=query)

    def get(self, id: int) -> Call[cp.Vm]:
        return Call(self._get, cp.Vm, {"id": id})

    def xml(self, id: int) -> Call[cp.VmXml]:
        return Call(self._xml, cp.VmXml, {"id": id})

    def decompose(self, id: int) -> Call[cp.Vm]:
        return Call(self._delete, cp.Vm, {"id": id})


vms = Vms()


class Power(Crud[p.Bmc]):
    """BMCs (a Crud on ``/power/bmcs``), their drivers, and power actions."""

    def __init__(self) -> None:
        super().__init__(
            "/power/bmcs", p.Bmc, p.BmcQuery, p.BmcCreate, p.BmcUpdate, id_name="bmc_id"
        )
        self._drivers = Route("GET", f"{API}/power/drivers")
        self._on = Route("POST", f"{self.one}/on", body=("boot",))
        self._off = Route("POST", f"{self.one}/off", body=("soft",))
        self._cycle = Route("POST", f"{self.one}/cycle")
        self._query = Route("POST", f"{self.one}/query")
        self._boot = Route("POST", f"{self.one}/boot-device", body=("boot",))

    def drivers(self) -> Call[p.DriverList]:
        return Call(self._drivers, p.DriverList)

    def on(self, id: int, boot: Body | None = None) -> Call[p.PowerResult]:
        body = {"boot": to_json(boot)} if boot is not None else None
        return Call(self._on, p.PowerResult, self._id(id), body=body)

    def off(self, id: int, soft: bool = False) -> Call[p.PowerResult]:
        return Call(self._off, p.PowerResult, self._id(id), body={"soft": soft})

    def cycle(self, id: int) -> Call[p.PowerResult]:
        return Call(self._cycle, p.PowerResult, self._id(id))

    def query(self, id: int) -> Call[p.PowerResult]:
        """Ask the BMC for its power state now."""
        return Call(self._query, p.PowerResult, self._id(id))

    def boot_device(self, id: int, boot: Body) -> Call[p.PowerResult]:
        return Call(self._boot, p.PowerResult, self._id(id), body={"boot": to_json(boot)})


power = Power()


class Discovery(Resource):
    """What the discovery service saw, and active scans."""

    def __init__(self) -> None:
        path = f"{API}/discovery"
        self._list = Route("GET", f"{path}/discoveries", query_of(d.DiscoveryQuery))
        self._clear = Route("POST", f"{path}/discoveries/clear", body=d.ClearRequest)
        self._make_known = Route("POST", f"{path}/discoveries/make-known", body=dv.MakeKnownRequest)
        self._dhcp_probe = Route("POST", f"{path}/dhcp-probe", body=d.DhcpProbe)
        self._scan = Route("POST", f"{path}/scans", body=d.ScanRequest)
        self._scans = Route("GET", f"{path}/scans", query_of(d.ScanQuery))
        self._get_scan = Route("GET", f"{path}/scans/{{scan_id}}")

    def list(self, **query: Any) -> Call[ip.Page[d.Discovery]]:
        return Call(self._list, ip.Page[d.Discovery], query=query)

    def clear(self, body: Body) -> Call[d.ClearResult]:
        """Forget discoveries by ``mac`` and/or ``ip``, or every one with ``all``."""
        return Call(self._clear, d.ClearResult, body=to_json(body))

    def make_known(self, body: Body) -> Call[dv.MadeKnown]:
        """Make a discovery a device, or an interface of a machine or device."""
        return Call(self._make_known, dv.MadeKnown, body=to_json(body))

    def dhcp_probe(self, body: Body | None = None) -> Call[d.DhcpProbeResult]:
        return Call(self._dhcp_probe, d.DhcpProbeResult, body=to_json(body) or {})

    def scan(self, body: Body) -> Call[d.Scan]:
        """Start an ARP sweep of a directly attached subnet (202: it runs on)."""
        return Call(self._scan, d.Scan, body=to_json(body))

    def scans(self, **query: Any) -> Call[ip.Page[d.Scan]]:
        return Call(self._scans, ip.Page[d.Scan], query=query)

    def get_scan(self, id: int) -> Call[d.Scan]:
        return Call(self._get_scan, d.Scan, {"scan_id": id})


discovery = Discovery()


class Events(Resource):
    """The event log (paged) and the live stream (see ``Client.stream_events``)."""

    def __init__(self) -> None:
        self._list = Route("GET", f"{API}/events", ("type", "subject", "before", "after", "limit"))
        self._get = Route("GET", f"{API}/events/{{event_id}}")
        self.stream = Route("GET", f"{API}/events/stream", ("type",), headers=("Last-Event-ID",))

    def list(self, **query: Any) -> Call[Json]:
        """``{"items": [...], "next": seq}``: newest first, or oldest first ``after`` a seq."""
        return Call(self._list, Json, query=query)

    def get(self, event_id: str) -> Call[Json]:
        return Call(self._get, Json, {"event_id": event_id})


events = Events()


class Tokens(Resource):
    """API tokens (admin only) and the token in use."""

    def __init__(self) -> None:
        self._whoami = Route("GET", f"{API}/whoami")
        self._create = Route("POST", f"{API}/tokens", body=("name", "role", "expires_in_days"))
        self._list = Route("GET", f"{API}/tokens")
        self._revoke = Route("DELETE", f"{API}/tokens/{{token_id}}")

    def whoami(self) -> Call[Json]:
        return Call(self._whoami, Json)

    def create(self, body: Mapping[str, Any]) -> Call[Json]:
        """A new token (``name``, ``role``, ``expires_in_days``): its secret is shown once."""
        return Call(self._create, Json, body=dict(body))

    def list(self) -> Call[JsonList]:
        return Call(self._list, JsonList)

    def revoke(self, token_id: str) -> Call[None]:
        return Call(self._revoke, None, {"token_id": token_id})


tokens = Tokens()


class Named(Resource):
    """Zones or resource pools: a name and a description (the api's own objects: dicts)."""

    def __init__(self, path: str) -> None:
        collection, one = f"{API}{path}", f"{API}{path}/{{id}}"
        fields = ("name", "description")
        self._list = Route("GET", collection)
        self._create = Route("POST", collection, body=fields)
        self._get = Route("GET", one)
        self._update = Route("PATCH", one, body=fields)
        self._delete = Route("DELETE", one)

    def list(self) -> Call[JsonList]:
        return Call(self._list, JsonList)

    def create(self, body: Mapping[str, Any]) -> Call[Json]:
        return Call(self._create, Json, body=dict(body))

    def get(self, id: int) -> Call[Json]:
        return Call(self._get, Json, {"id": id})

    def update(self, id: int, changes: Mapping[str, Any]) -> Call[Json]:
        return Call(self._update, Json, {"id": id}, body=dict(changes))

    def delete(self, id: int) -> Call[None]:
        return Call(self._delete, None, {"id": id})


zones = Named("/zones")
pools = Named("/pools")

MACHINE_ACTIONS = (
    "commission", "release", "abort", "mark-broken", "mark-fixed", "rescue-mode",
    "exit-rescue-mode", "test",
)  # fmt: skip
"""The actions that take only the machine (deploy and allocate take a body)."""


class Machines(Resource):
    """Machines (the api's own objects: dicts), by ``system_id``; actions answer 202 with
    the machine as it is now, the work goes on (follow the events)."""

    def __init__(self) -> None:
        path, one = f"{API}/machines", f"{API}/machines/{{system_id}}"
        self._list = Route("GET", path, ("status", "zone", "pool", "hostname"))
        create = ("hostname", "domain", "architecture", "interfaces", "power", "zone", "pool")
        self._create = Route("POST", path, body=(*create, "tags"))
        self._get = Route("GET", one)
        self._history = Route("GET", f"{one}/history")
        update = ("hostname", "domain", "architecture", "power", "zone", "pool", "tags")
        self._update = Route("PATCH", one, body=update)
        self._delete = Route("DELETE", one)
        allocate = ("cores", "memory", "architecture", "tags", "zone", "pool", "storage")
        self._allocate = Route(
            "POST", f"{path}/allocate", body=(*allocate, "interfaces", "system_id", "compose")
        )
        self._deploy = Route("POST", f"{one}/deploy", body=("install_kvm",))
        self._actions = {a: Route("POST", f"{one}/{a}") for a in MACHINE_ACTIONS}

    def routes(self) -> list[Route]:
        return [*super().routes(), *self._actions.values()]

    def list(self, **query: Any) -> Call[JsonList]:
        return Call(self._list, JsonList, query=query)

    def get(self, system_id: str) -> Call[Json]:
        return Call(self._get, Json, {"system_id": system_id})

    def history(self, system_id: str) -> Call[JsonList]:
        return Call(self._history, JsonList, {"system_id": system_id})

    def create(self, body: Mapping[str, Any]) -> Call[Json]:
        return Call(self._create, Json, body=dict(body))

    def update(self, system_id: str, changes: Mapping[str, Any]) -> Call[Json]:
        return Call(self._update, Json, {"system_id": system_id}, body=dict(changes))

    def delete(self, system_id: str) -> Call[None]:
        return Call(self._delete, None, {"system_id": system_id})

    def allocate(self, constraints: Mapping[str, Any]) -> Call[Json]:
        """The first Ready machine that fits (or one composed for it)."""
        return Call(self._allocate, Json, body=dict(constraints))

    def deploy(self, system_id: str, install_kvm: bool = False) -> Call[Json]:
        body = {"install_kvm": install_kvm}
        return Call(self._deploy, Json, {"system_id": system_id}, body=body)

    def action(self, system_id: str, action: str) -> Call[Json]:
        """One of :data:`MACHINE_ACTIONS` (``commission``, ``release``...)."""
        return Call(self._actions[action], Json, {"system_id": system_id})


machines = Machines()


def all_resources() -> dict[str, Resource]:
    """Every resource of this module, by name (for the OpenAPI check and the docs)."""
    return {k: v for k, v in globals().items() if isinstance(v, Resource)}
