"""Who may say what on the bus: per-service NATS users and the server config that enforces it.

:data:`GRANTS` is the one table of which commands a service may send and which event
streams it reads. Everything else follows from the subject scheme in :mod:`subjects`:
a service serves only its own commands, publishes only its own events, manages only its own
stream, creates and reads consumers only on the streams it reads, answers ``$SRV`` pings
only for its own nats.micro service, and receives replies only on its own inbox prefix
(``_INBOX_<service>``, which :meth:`metalbus.shared.bus.Bus.connect` uses). Replies to
requests it received are allowed by ``allow_responses``.

Only the api may send lifecycle commands (power, compose, boot, discovery); the other
services ask ipam and nothing else.

``python -m metalbus.shared.bus_auth --credentials FILE`` prints the server config for a
production nats-server (creating the credentials file on first use); ``metalbus up`` does
the same under its state folder. See docs/security.md.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import subjects

CREDENTIALS_FILE = "bus-credentials.json"
SERVER_CONFIG_FILE = "nats-auth.conf"


@dataclass(frozen=True)
class Grant:
    """What one service may do beyond serving its own commands and publishing its events."""

    sends: tuple[str, ...] = ()  # services whose commands it may send
    consumes: tuple[str, ...] = ()  # services whose event streams it reads (durable)
    live_events: bool = False  # a plain subscription to every event (the api's live feed)


# The declared table. Keep it in step with the ``bus.request`` and ``rt.consumer`` calls of
# each service: tests/security/test_bus_auth.py runs the services with these permissions.
GRANTS: Mapping[str, Grant] = {
    "api": Grant(sends=subjects.SERVICES, consumes=subjects.SERVICES, live_events=True),
    "ipam": Grant(consumes=("boot", "discovery")),
    "compose": Grant(sends=("ipam",)),
    "boot": Grant(sends=("ipam",), consumes=("ipam",)),
    "power": Grant(),
    "discovery": Grant(sends=("ipam",), consumes=("boot", "api")),
}


def permissions(service: str) -> dict[str, Any]:
    """The NATS ``permissions`` block of a service's user."""
    grant = GRANTS[service]
    own_stream = subjects.stream_name(service)
    publish = [subjects.service_commands(target) for target in grant.sends]
    publish.append(subjects.service_events(service))
    publish += [f"$JS.API.STREAM.{verb}.{own_stream}" for verb in ("CREATE", "UPDATE", "INFO")]
    for source in grant.consumes:
        stream = subjects.stream_name(source)
        publish += [
            f"$JS.API.CONSUMER.INFO.{stream}.*",
            f"$JS.API.CONSUMER.CREATE.{stream}.>",
            f"$JS.API.CONSUMER.DURABLE.CREATE.{stream}.*",
            f"$JS.API.CONSUMER.MSG.NEXT.{stream}.*",
            f"$JS.ACK.{stream}.>",
        ]
    micro = subjects.queue_group(service)
    subscribe = [
        subjects.service_commands(service),
        "$SRV.*",
        f"$SRV.*.{micro}",
        f"$SRV.*.{micro}.*",
        f"{subjects.inbox_prefix(service)}.>",
    ]
    if grant.live_events:
        subscribe.append(subjects.ALL_EVENTS)
    return {
        "publish": {"allow": publish},
        "subscribe": {"allow": subscribe},
        # One reply per request received, with no time limit: power actions answer after
        # up to two minutes, and JetStream acks go back the same way.
        "allow_responses": True,
    }


def new_credentials() -> dict[str, str]:
    """A fresh random password for every service."""
    return {service: secrets.token_urlsafe(32) for service in GRANTS}


def load_or_create_credentials(path: Path) -> dict[str, str]:
    """The per-service passwords kept in ``path`` (mode 0600), made on first use."""
    stored: dict[str, str] = {}
    if path.exists():
        kept = json.loads(path.read_text())
        stored = {str(k): str(v) for k, v in kept.items() if k in GRANTS}
        if stored.keys() == GRANTS.keys():
            return stored
    # First start, or a service was added since: keep the passwords there are, add the rest.
    stored = {**new_credentials(), **stored}
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".tmp")
    write_private(partial, json.dumps(stored, indent=2))
    os.replace(partial, path)  # never a half-written credentials file
    return stored


@dataclass(frozen=True)
class ServerTls:
    """nats-server's TLS files; with ``ca_file`` and ``verify`` clients need certificates too."""

    cert_file: Path
    key_file: Path
    ca_file: Path | None = None
    verify: bool = False


def server_config(credentials: Mapping[str, str], tls: ServerTls | None = None) -> str:
    """nats-server config (JSON, which the server's config parser reads) with every user."""
    users = [
        {"user": service, "password": credentials[service], "permissions": permissions(service)}
        for service in GRANTS
    ]
    config: dict[str, Any] = {"authorization": {"users": users}}
    if tls is not None:
        block: dict[str, Any] = {"cert_file": str(tls.cert_file), "key_file": str(tls.key_file)}
        if tls.ca_file is not None:
            block["ca_file"] = str(tls.ca_file)
        block["verify"] = tls.verify
        config["tls"] = block
    return json.dumps(config, indent=2) + "\n"


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(text)
    os.chmod(path, 0o600)  # an existing file keeps its old mode through O_CREAT


def client_tls(
    ca_file: str | None, cert_file: str | None = None, key_file: str | None = None
) -> ssl.SSLContext | None:
    """The TLS context a service connects to NATS with (None: plain TCP)."""
    if not (ca_file or cert_file):
        return None
    context = ssl.create_default_context(cafile=ca_file)
    if cert_file:
        context.load_cert_chain(cert_file, key_file)
    return context


def main(argv: list[str] | None = None) -> None:
    """Print the nats-server authorization config for a production deployment."""
    parser = argparse.ArgumentParser(
        prog="python -m metalbus.shared.bus_auth", description=main.__doc__
    )
    parser.add_argument(
        "--credentials",
        type=Path,
        required=True,
        help="JSON file of per-service passwords (made, mode 0600, if missing)",
    )
    parser.add_argument("--tls-cert", type=Path, help="server certificate (PEM)")
    parser.add_argument("--tls-key", type=Path, help="server private key (PEM)")
    parser.add_argument("--tls-ca", type=Path, help="CA that signs client certificates")
    parser.add_argument(
        "--tls-verify", action="store_true", help="require client certificates signed by --tls-ca"
    )
    args = parser.parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    tls = (
        ServerTls(args.tls_cert, args.tls_key, args.tls_ca, args.tls_verify)
        if args.tls_cert
        else None
    )
    print(server_config(load_or_create_credentials(args.credentials), tls), end="")


if __name__ == "__main__":
    main()
