"""The bus with per-service users: a real nats-server runs the config bus_auth renders.

Each service works with its own credentials; a service that tries to send what only the api
may send (power, compose, boot, discovery commands) is refused by the server and the command
never reaches its target; strangers cannot connect; TLS (NATS and HTTP) works with a CA
made here; ``metalbus up`` makes the credentials once and reuses them.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import os
import ssl
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import nats
import nats.errors
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from metalbus.api.app import create_app
from metalbus.api.settings import ApiSettings
from metalbus.cli.up import Launcher, free_port
from metalbus.discovery.service import DEFINITION as DISCOVERY
from metalbus.discovery.settings import DiscoverySettings
from metalbus.ipam.service import DEFINITION as IPAM
from metalbus.ipam.settings import IpamSettings
from metalbus.power.service import DEFINITION as POWER
from metalbus.power.settings import PowerSettings
from metalbus.shared import bus_auth, subjects
from metalbus.shared.bus import Bus
from metalbus.shared.contract import ipam, power
from metalbus.shared.errors import NotFound, RequestTimeout
from metalbus.shared.runtime import ServiceRuntime
from tests.helpers import InLoopServer, NatsServer, async_wait_for, wait_for

ADMIN_TOKEN = "mb_000000000001.admin-secret-for-tests-only-0123456789"
SPY = ("spy", "spy-password-for-tests")
# Commands only the api may send: they change what machines do.
LIFECYCLE = ("power", "compose", "boot", "discovery")


@dataclass
class SecuredBus:
    server: NatsServer
    credentials: dict[str, str]

    @property
    def url(self) -> str:
        return self.server.url

    def violations(self) -> str:
        return "\n".join(
            line for line in self.server.log.read_text().splitlines() if "Violation" in line
        )


def write_config(path: Path, credentials: dict[str, str], tls: Any = None) -> Path:
    """The rendered config plus a test-only spy with every permission (to observe subjects)."""
    config = json.loads(bus_auth.server_config(credentials, tls))
    config["authorization"]["users"].append({"user": SPY[0], "password": SPY[1]})
    path.write_text(json.dumps(config))
    return path


@pytest.fixture
def secured(tmp_path: Path) -> Any:
    credentials = bus_auth.new_credentials()
    store = tmp_path / "nats"
    store.mkdir()
    server = NatsServer(store, write_config(tmp_path / "nats.conf", credentials))
    server.start()
    try:
        yield SecuredBus(server, credentials)
    finally:
        server.stop()


async def connect_as(url: str, user: str, password: str, errors: list[str]) -> NatsClient:
    """A plain client with a service's identity, recording the errors the server sends."""

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    return await nats.connect(
        url,
        user=user,
        password=password,
        inbox_prefix=subjects.inbox_prefix(user),
        error_cb=on_error,
        allow_reconnect=False,
    )


async def spy_on(url: str, subject: str) -> tuple[NatsClient, list[Msg]]:
    seen: list[Msg] = []

    async def record(msg: Msg) -> None:
        seen.append(msg)

    spy = await nats.connect(url, user=SPY[0], password=SPY[1], allow_reconnect=False)
    await spy.subscribe(subject, cb=record)
    await spy.flush()
    return spy, seen


def service_settings(bus: SecuredBus, service: str, tmp_path: Path) -> dict[str, Any]:
    return {
        "nats_url": bus.url,
        "nats_user": service,
        "nats_password": bus.credentials[service],
        "database_url": f"sqlite:///{tmp_path / (service + '.db')}",
        "outbox_poll_s": 0.2,
    }


@pytest.fixture
async def stack(secured: SecuredBus, tmp_path: Path) -> AsyncIterator[dict[str, ServiceRuntime]]:
    """ipam, power and discovery, each connected as its own NATS user."""
    runtimes = {
        "ipam": ServiceRuntime(IPAM, IpamSettings(**service_settings(secured, "ipam", tmp_path))),
        "power": ServiceRuntime(
            POWER,
            PowerSettings(**service_settings(secured, "power", tmp_path), poll_enabled=False),
        ),
        "discovery": ServiceRuntime(
            DISCOVERY, DiscoverySettings(**service_settings(secured, "discovery", tmp_path))
        ),
    }
    started: list[ServiceRuntime] = []
    try:
        for runtime in runtimes.values():
            await runtime.start()
            started.append(runtime)
        yield runtimes
    finally:
        for runtime in reversed(started):
            await runtime.stop()


async def test_services_work_with_their_own_credentials(
    secured: SecuredBus, stack: dict[str, ServiceRuntime], tmp_path: Path
) -> None:
    settings = ApiSettings(
        **service_settings(secured, "api", tmp_path), port=0, bootstrap_token=ADMIN_TOKEN
    )
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with (
        InLoopServer(create_app(settings)) as base,
        httpx.AsyncClient(base_url=base, timeout=10, headers=auth) as client,
    ):
        # api -> each service's status command, over the bus.
        listing = await client.get("/api/v1/services")
        assert listing.status_code == 200, listing.text
        ready = {s["service"]: s["ready"] for s in listing.json()}
        assert all(ready[s] for s in ("api", "ipam", "power", "discovery")), ready

        # api -> ipam command; ipam's event -> the api's durable consumer on ipam's stream.
        created = await client.post("/api/v1/fabrics", json={"name": "secured"})
        assert created.status_code == 201, created.text
        fabric_created = subjects.event_type("ipam", "fabric", "created")

        async def logged() -> bool:
            page = await client.get("/api/v1/events", params={"types": fabric_created})
            return page.status_code == 200 and bool(page.json()["items"])

        await async_wait_for(logged, 20, "the api to record ipam's event")

    # Nothing the services did so far (streams, consumers, acks, replies) was refused.
    assert secured.violations() == ""

    # discovery -> ipam: allowed.
    discovery = stack["discovery"].bus
    subnets = await discovery.request(ipam.SUBNET_LIST, ipam.SubnetQuery(limit=1))
    assert subnets.items == []

    # discovery -> power: refused by the server, never delivered.
    spy, seen = await spy_on(secured.url, subjects.service_commands("power"))
    try:
        with pytest.raises(RequestTimeout):
            await discovery.request(power.POWER_QUERY, power.ById(id=1), timeout=1)
        assert (
            '"$G/user:discovery" - Publish Violation - Subject "metalbus.cmd.power.power_query"'
            in secured.violations()
        )
        # The api may: power answers (it knows no such BMC), and only that request got there.
        api = await Bus.connect(
            secured.url, service="api", user="api", password=secured.credentials["api"]
        )
        try:
            with pytest.raises(NotFound):
                await api.request(power.POWER_QUERY, power.ById(id=1))
        finally:
            await api.close()
        await spy.flush()
        assert len(seen) == 1
        assert (seen[0].reply or "").startswith(subjects.inbox_prefix("api") + ".")
    finally:
        await spy.close()


async def test_only_the_api_may_send_lifecycle_commands(secured: SecuredBus) -> None:
    spy, seen = await spy_on(secured.url, f"{subjects.ROOT}.cmd.>")
    clients: list[NatsClient] = []
    try:
        for service in bus_auth.GRANTS:
            if service == "api":
                continue
            errors: list[str] = []
            client = await connect_as(secured.url, service, secured.credentials[service], errors)
            clients.append(client)
            for target in LIFECYCLE:
                await client.publish(subjects.command_subject(target, "anything"), b"{}")
            # Nor may it pose as a lifecycle service to receive those commands.
            impersonated = next(t for t in LIFECYCLE if t != service)
            await client.subscribe(subjects.service_commands(impersonated))
            await client.flush()
            await async_wait_for(
                lambda errors=errors: len(errors) == len(LIFECYCLE) + 1,
                10,
                f"{service}'s permission violations",
            )
            assert all("permissions violation" in e.lower() for e in errors), errors
        # Every other service may ask ipam (who needs to, sends to it).
        for service, grant in bus_auth.GRANTS.items():
            assert set(grant.sends) <= {"ipam"} or service == "api", service
        api = await connect_as(secured.url, "api", secured.credentials["api"], [])
        clients.append(api)
        for target in LIFECYCLE:
            await api.publish(subjects.command_subject(target, "anything"), b"{}")
        await api.flush()
        await async_wait_for(lambda: len(seen) == len(LIFECYCLE), 10, "the api's commands")
        await spy.flush()
        assert len(seen) == len(LIFECYCLE)  # none of the refused ones got through
    finally:
        for client in clients:
            await client.close()
        await spy.close()


async def test_strangers_are_refused(secured: SecuredBus) -> None:
    for user, password in ((None, None), ("ipam", "wrong"), ("root", "root")):
        with pytest.raises(nats.errors.Error, match=r"[Aa]uthorization"):
            await nats.connect(
                secured.url,
                user=user,
                password=password,
                allow_reconnect=False,
                max_reconnect_attempts=0,
            )


def make_ca_and_server_cert(folder: Path) -> tuple[Path, Path, Path]:
    """A self-signed CA and a certificate it signs for 127.0.0.1 and localhost."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "metalbus test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nats")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, cert_file, key_file = folder / "ca.pem", folder / "nats.pem", folder / "nats.key"
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_file, cert_file, key_file


async def test_nats_over_tls_with_the_test_ca(tmp_path: Path) -> None:
    ca_file, cert_file, key_file = make_ca_and_server_cert(tmp_path)
    credentials = bus_auth.new_credentials()
    config = write_config(
        tmp_path / "nats.conf", credentials, bus_auth.ServerTls(cert_file, key_file)
    )
    store = tmp_path / "nats"
    store.mkdir()
    server = NatsServer(store, config)
    server.start()
    ipam_runtime = ServiceRuntime(
        IPAM,
        IpamSettings(
            nats_url=server.url,
            nats_user="ipam",
            nats_password=credentials["ipam"],
            nats_tls_ca_file=str(ca_file),
            database_url=f"sqlite:///{tmp_path / 'ipam.db'}",
        ),
    )
    try:
        # A service configured with the CA connects over TLS and serves.
        await ipam_runtime.start()
        client = await Bus.connect(
            server.url,
            service="api",
            user="api",
            password=credentials["api"],
            tls=bus_auth.client_tls(str(ca_file)),
        )
        try:
            page = await client.request(ipam.SUBNET_LIST, ipam.SubnetQuery(limit=1))
            assert page.items == []
        finally:
            await client.close()
        # Plain TCP, or TLS that does not trust the CA, is refused.
        for tls in (None, ssl.create_default_context()):
            with pytest.raises((nats.errors.Error, OSError)):
                await nats.connect(
                    server.url,
                    user="api",
                    password=credentials["api"],
                    tls=tls,
                    allow_reconnect=False,
                    max_reconnect_attempts=0,
                    connect_timeout=2,
                )
    finally:
        await ipam_runtime.stop()
        server.stop()


def test_up_makes_credentials_once_and_reuses_them(tmp_path: Path) -> None:
    out: list[str] = []

    def up() -> dict[str, Any]:
        launcher = Launcher(
            var_dir=tmp_path / "var", api_port=0, services=("ipam",), out=out.append
        )
        try:
            assert launcher.start(), "\n".join(out)
            state = json.loads((tmp_path / "var" / "state.json").read_text())
            url = state["nats_url"]
            refused = _connect_refused(url)
            creds = tmp_path / "var" / bus_auth.CREDENTIALS_FILE
            conf = tmp_path / "var" / bus_auth.SERVER_CONFIG_FILE
            return {
                "credentials": creds.read_text(),
                "modes": {stat.S_IMODE(p.stat().st_mode) for p in (creds, conf)},
                "refused": refused,
            }
        finally:
            launcher.stop()

    first = up()
    second = up()
    assert first["modes"] == second["modes"] == {0o600}
    assert first["refused"] and second["refused"]  # the embedded bus is not open
    assert json.loads(first["credentials"]).keys() == bus_auth.GRANTS.keys()
    assert first["credentials"] == second["credentials"]  # made once, reused


def _connect_refused(url: str) -> bool:
    async def attempt() -> bool:
        try:
            client = await nats.connect(url, allow_reconnect=False, max_reconnect_attempts=0)
        except nats.errors.Error:
            return True
        await client.close()
        return False

    return asyncio.run(attempt())


def test_service_http_over_tls(nats_server: NatsServer, tmp_path: Path) -> None:
    ca_file, cert_file, key_file = make_ca_and_server_cert(tmp_path)
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("METALBUS_")},
        "METALBUS_IPAM_NATS_URL": nats_server.url,
        "METALBUS_IPAM_DATABASE_URL": f"sqlite:///{tmp_path / 'ipam.db'}",
        "METALBUS_IPAM_HEALTH_PORT": str(port),
        "METALBUS_IPAM_HTTP_TLS_CERT_FILE": str(cert_file),
        "METALBUS_IPAM_HTTP_TLS_KEY_FILE": str(key_file),
    }
    log = (tmp_path / "ipam.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "metalbus.ipam"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    trust = ssl.create_default_context(cafile=str(ca_file))
    try:

        def healthy() -> bool:
            assert process.poll() is None, (tmp_path / "ipam.log").read_text()
            try:
                return httpx.get(f"https://127.0.0.1:{port}/healthz", verify=trust).is_success
            except httpx.TransportError:
                return False

        wait_for(healthy, 60, "ipam to answer over HTTPS")
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
    finally:
        process.terminate()
        process.wait(30)
        log.close()
