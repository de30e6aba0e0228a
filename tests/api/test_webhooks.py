"""Outbound webhooks against real receivers: a real api (uvicorn, NATS, SQLite/PostgreSQL)
POSTs to a real HTTP server in the test, which checks every signature."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet
from sqlmodel import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from metalbus.api.app import create_app
from metalbus.api.settings import ApiSettings
from metalbus.api.webhooks import signing
from metalbus.api.webhooks.engine import load_box
from metalbus.api.webhooks.models import DeliveryStatus, WebhookAttempt, WebhookDelivery
from metalbus.shared.bus import Bus
from metalbus.shared.contract.power import PowerState, PowerStateChanged
from metalbus.shared.db import Database
from metalbus.shared.events import new_event, utcnow
from tests.api.conftest import ADMIN_TOKEN
from tests.conftest import DatabaseFactory
from tests.helpers import InLoopServer, NatsServer, async_wait_for, postgres_url

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
TOKEN_EVENTS = ["api.token.*"]


@dataclass
class Receiver:
    """A webhook receiver: records every request, answers as the test says."""

    fail_first: int = 0  # answer 503 to the first N attempts of each event
    gate: asyncio.Event | None = None  # when set up, hold every request until it is set
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    accepted: Counter[str] = field(default_factory=Counter)  # event id -> 2xx answers
    held: int = 0
    url: str = ""

    async def hook(self, request: Request) -> Response:
        body = await request.body()
        headers = dict(request.headers)
        self.requests.append((headers, body))
        event_id = headers[signing.EVENT_ID_HEADER.lower()]
        tries = sum(1 for h, _ in self.requests if h[signing.EVENT_ID_HEADER.lower()] == event_id)
        if tries <= self.fail_first:
            return Response(status_code=503)
        if self.gate is not None:
            self.held += 1
            try:
                await self.gate.wait()
            finally:
                self.held -= 1
        self.accepted[event_id] += 1
        return Response(status_code=204)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/hook", self.hook, methods=["POST"])])


@asynccontextmanager
async def receiving(receiver: Receiver) -> AsyncIterator[Receiver]:
    async with InLoopServer(receiver.app()) as base:
        receiver.url = f"{base}/hook"
        yield receiver


@dataclass
class Env:
    """What an api needs to start, and start again on the same database, bus and key."""

    nats: NatsServer
    database_url: str
    schema: str | None
    key: str = field(default_factory=lambda: Fernet.generate_key().decode())

    def settings(self, **overrides: Any) -> ApiSettings:
        values: dict[str, Any] = {
            "nats_url": self.nats.url,
            "database_url": self.database_url,
            "database_schema": self.schema,
            "port": 0,
            "bootstrap_token": ADMIN_TOKEN,
            "secret_key": self.key,
            "webhook_backoff_s": 0.05,
            "webhook_backoff_max_s": 0.2,
            "webhook_poll_s": 0.05,
            "webhook_timeout_s": 5,
            **overrides,
        }
        return ApiSettings(**values)

    @asynccontextmanager
    async def api(self, **overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
        async with (
            InLoopServer(create_app(self.settings(**overrides))) as base,
            httpx.AsyncClient(base_url=base, headers=AUTH, timeout=10) as client,
        ):
            yield client


@pytest.fixture
def env(nats_server: NatsServer, db_factory: DatabaseFactory) -> Env:
    url, schema = db_factory()
    return Env(nats_server, url, schema)


async def subscribe(client: httpx.AsyncClient, url: str, patterns: list[str], **extra: Any) -> Any:
    response = await client.post(
        "/api/v1/webhooks", json={"url": url, "event_types": patterns, **extra}
    )
    assert response.status_code == 201, response.text
    return response.json()


async def make_tokens(client: httpx.AsyncClient, count: int) -> list[str]:
    ids = []
    for n in range(count):
        response = await client.post("/api/v1/tokens", json={"name": f"t{n}", "role": "readonly"})
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    return ids


async def deliveries(client: httpx.AsyncClient, webhook_id: str) -> list[dict[str, Any]]:
    response = await client.get(f"/api/v1/webhooks/{webhook_id}/deliveries?limit=500")
    assert response.status_code == 200, response.text
    return response.json()["items"]  # type: ignore[no-any-return]


async def settled(
    client: httpx.AsyncClient, webhook_id: str, count: int, status: str, deadline: float = 30
) -> list[dict[str, Any]]:
    """Wait until the webhook has ``count`` deliveries, all in ``status``."""

    async def check() -> list[dict[str, Any]] | None:
        items = await deliveries(client, webhook_id)
        done = len(items) == count and all(d["status"] == status for d in items)
        return items if done else None

    return await async_wait_for(check, deadline, f"{count} deliveries {status}")  # type: ignore[no-any-return]


def verified(receiver: Receiver, secret: str) -> list[dict[str, Any]]:
    """Every request the receiver got, each checked as a receiver would; their envelopes."""
    envelopes = []
    for headers, body in receiver.requests:
        assert signing.verify(secret, headers[signing.SIGNATURE_HEADER.lower()], body)
        assert not signing.verify("whsec_wrong", headers[signing.SIGNATURE_HEADER.lower()], body)
        assert not signing.verify(secret, headers[signing.SIGNATURE_HEADER.lower()], body + b" ")
        timestamp = headers[signing.TIMESTAMP_HEADER.lower()]
        assert headers[signing.SIGNATURE_HEADER.lower()].startswith(f"t={timestamp},v1=")
        envelope = json.loads(body)
        assert headers[signing.EVENT_ID_HEADER.lower()] == envelope["id"]
        assert headers[signing.EVENT_TYPE_HEADER.lower()] == envelope["type"]
        assert headers["content-type"].startswith("application/cloudevents+json")
        envelopes.append(envelope)
    return envelopes


async def publish_power_event(nats: NatsServer) -> str:
    """An event of another service, straight onto its stream."""
    bus = await Bus.connect(nats.url, service="power")
    try:
        await bus.ensure_stream("power")
        event = new_event(
            PowerStateChanged(
                bmc_id=1,
                machine_id=None,
                previous=PowerState.OFF,
                state=PowerState.ON,
                cause="poll",
            ),
            subject="1",
        )
        await bus.publish(event)
    finally:
        await bus.close()
    return event.id


async def test_a_receiver_gets_every_event_once_signed(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with receiving(Receiver()) as receiver, receiving(Receiver()) as other:
        async with env.api() as api:
            hook = await subscribe(
                api, receiver.url, [*TOKEN_EVENTS, "power.state.*"], description="audit"
            )
            secret = hook["secret"]
            assert secret.startswith("whsec_")
            # One that wants other events, one that is off: neither gets anything.
            await subscribe(api, other.url, ["ipam.*"])
            await subscribe(api, other.url, ["*"], active=False)

            token_ids = await make_tokens(api, 10)
            for token_id in token_ids[:3]:
                assert (await api.delete(f"/api/v1/tokens/{token_id}")).status_code == 204
            power_event = await publish_power_event(env.nats)

            items = await settled(api, hook["id"], 14, "succeeded")
            await async_wait_for(lambda: len(receiver.requests) >= 14, 10, "14 requests")
            envelopes = verified(receiver, secret)
            ids = [e["id"] for e in envelopes]
            assert len(ids) == len(set(ids)) == 14  # each event once
            assert set(receiver.accepted.values()) == {1}

            async def token_log() -> list[dict[str, Any]] | None:
                page = await api.get("/api/v1/events", params={"type": "io.metalbus.api.token.*"})
                items = page.json()["items"]
                return items if len(items) == 14 else None  # 13 and the bootstrap admin's

            log = await async_wait_for(token_log, 10, "the token events in the log")
            bootstrap = [e["id"] for e in log if e["data"].get("name") == "admin (bootstrap)"]
            made_since = {e["id"] for e in log} - set(bootstrap)
            assert set(ids) == made_since | {power_event}  # and nothing from before it existed
            assert (
                sorted(e["type"] for e in envelopes).count("io.metalbus.api.token.revoked.v1") == 3
            )
            assert {d["event_id"] for d in items} == set(ids)
            assert all(d["attempts"] == 1 for d in items)
            assert all(d["attempt_log"][0]["status_code"] == 204 for d in items)
            assert other.requests == []

            # The secret was shown once: nowhere else, not in the logs either.
            listing = await api.get("/api/v1/webhooks")
            one = await api.get(f"/api/v1/webhooks/{hook['id']}")
            delivered = await api.get(f"/api/v1/webhooks/{hook['id']}/deliveries")
            for response in (listing, one, delivered):
                assert response.status_code == 200
                assert secret not in response.text and '"secret"' not in response.text
            assert [h["description"] for h in listing.json()] == ["audit", "", ""]
        assert secret not in caplog.text


async def test_a_failing_receiver_gets_the_delivery_after_retries(env: Env) -> None:
    async with receiving(Receiver(fail_first=2)) as receiver, env.api() as api:
        hook = await subscribe(api, receiver.url, TOKEN_EVENTS)
        await make_tokens(api, 3)
        items = await settled(api, hook["id"], 3, "succeeded")
        for delivery in items:
            assert delivery["attempts"] == 3
            log = delivery["attempt_log"]
            assert [a["status_code"] for a in log] == [503, 503, 204]
            assert [a["number"] for a in log] == [1, 2, 3]
            assert "503" in log[0]["error"] and log[2]["error"] is None
            assert all(a["duration_ms"] >= 0 for a in log)
            assert delivery["last_status_code"] == 204 and delivery["last_error"] is None
        assert len(receiver.accepted) == 3 and set(receiver.accepted.values()) == {1}
        verified(receiver, hook["secret"])


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_dead_receiver_ends_failed_and_can_be_redelivered(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    dead = f"http://127.0.0.1:{closed_port()}/hook/path-token-s3cr3t?key=q-s3cr3t"
    async with env.api(webhook_max_attempts=3) as api:
        hook = await subscribe(api, dead, TOKEN_EVENTS)
        await make_tokens(api, 1)
        [delivery] = await settled(api, hook["id"], 1, "failed")
        assert delivery["attempts"] == 3 and delivery["completed_at"] is not None
        assert delivery["next_attempt_at"] is None
        assert all(a["status_code"] is None and a["error"] for a in delivery["attempt_log"])
        ours = [r.getMessage() for r in caplog.records if r.name.startswith("metalbus")]
        assert any("failed (attempt 3)" in m for m in ours)
        assert not any("s3cr3t" in m for m in ours)  # a URL's path and query stay out

        path = f"/api/v1/webhooks/{hook['id']}/deliveries/{delivery['id']}/redeliver"
        async with receiving(Receiver()) as receiver:
            moved = await api.patch(f"/api/v1/webhooks/{hook['id']}", json={"url": receiver.url})
            assert moved.status_code == 200 and moved.json()["url"] == receiver.url
            assert "secret" not in moved.json()
            again = await api.post(path)
            assert again.status_code == 202, again.text
            assert again.json()["status"] in ("pending", "succeeded")
            [delivery] = await settled(api, hook["id"], 1, "succeeded")
            assert delivery["attempts"] == 4
            assert delivery["attempt_log"][-1]["status_code"] == 204
            verified(receiver, hook["secret"])
            assert list(receiver.accepted.values()) == [1]

            # A new secret signs the next attempts; it is echoed once, like on creation.
            rotated = "whsec_" + "r" * 40
            changed = await api.patch(f"/api/v1/webhooks/{hook['id']}", json={"secret": rotated})
            assert changed.json()["secret"] == rotated
            assert (await api.post(path)).status_code == 202
            await async_wait_for(lambda: len(receiver.requests) == 2, 10, "the redelivery")
            headers, body = receiver.requests[1]
            assert signing.verify(rotated, headers[signing.SIGNATURE_HEADER.lower()], body)


BAD_BODIES: list[tuple[dict[str, Any], str]] = [
    ({"event_types": ["api.*"]}, "body.url"),
    ({"url": "ftp://example.test/x", "event_types": ["api.*"]}, "body.url"),
    ({"url": "http://user:pw@example.test/x", "event_types": ["api.*"]}, "body.url"),
    ({"url": "not a url", "event_types": ["api.*"]}, "body.url"),
    ({"url": "http://example.test/x"}, "body.event_types"),
    ({"url": "http://example.test/x", "event_types": []}, "body.event_types"),
    (
        {"url": "http://example.test/x", "event_types": ["api.*", "api.nosuch.*"]},
        "body.event_types.1",
    ),
    ({"url": "http://example.test/x", "event_types": ["io.*.x"]}, "body.event_types.0"),
    ({"url": "http://example.test/x", "event_types": ["api.*"], "secret": "short"}, "body.secret"),
    ({"url": "http://example.test/x", "event_types": ["api.*"], "colour": "red"}, "body.colour"),
]


async def test_bad_input_is_a_problem_naming_the_field_and_creates_nothing(env: Env) -> None:
    async with env.api() as api:
        for body, field_name in BAD_BODIES:
            response = await api.post("/api/v1/webhooks", json=body)
            assert response.status_code == 422, (body, response.text)
            assert response.headers["content-type"] == "application/problem+json"
            assert response.json()["field"] == field_name, (body, response.json())
        assert (await api.get("/api/v1/webhooks")).json() == []

        hook = await subscribe(api, "http://example.test/x", ["api.*"], active=False)
        bad = await api.patch(f"/api/v1/webhooks/{hook['id']}", json={"event_types": ["x.*"]})
        assert bad.status_code == 422 and bad.json()["field"] == "body.event_types.0"
        assert (await api.get(f"/api/v1/webhooks/{hook['id']}")).json()["event_types"] == ["api.*"]
        missing = await api.patch("/api/v1/webhooks/nope", json={"active": True})
        assert missing.status_code == 404 and missing.json()["field"] == "webhook_id"
        gone = await api.get(f"/api/v1/webhooks/{hook['id']}/deliveries/12345")
        assert gone.status_code == 404 and gone.json()["field"] == "delivery_id"

        operator = (
            await api.post("/api/v1/tokens", json={"name": "op", "role": "operator"})
        ).json()["token"]
        as_operator = {"Authorization": f"Bearer {operator}"}
        for method, path in (("GET", "/api/v1/webhooks"), ("POST", "/api/v1/webhooks")):
            refused = await api.request(
                method, path, headers=as_operator, json={"url": "http://x/", "event_types": ["*"]}
            )
            assert refused.status_code == 403
        assert len((await api.get("/api/v1/webhooks")).json()) == 1

        assert (await api.delete(f"/api/v1/webhooks/{hook['id']}")).status_code == 204
        assert (await api.get(f"/api/v1/webhooks/{hook['id']}")).status_code == 404


async def test_a_slow_receiver_does_not_hold_up_the_others(env: Env) -> None:
    slow_gate = asyncio.Event()
    async with (
        receiving(Receiver(gate=slow_gate)) as slow,
        receiving(Receiver()) as fast,
        env.api(webhook_per_subscription=2, webhook_concurrency=4, webhook_timeout_s=30) as api,
    ):
        slow_hook = await subscribe(api, slow.url, TOKEN_EVENTS)
        fast_hook = await subscribe(api, fast.url, TOKEN_EVENTS)
        await make_tokens(api, 6)
        await settled(api, fast_hook["id"], 6, "succeeded")
        await async_wait_for(lambda: slow.held == 2, 10, "the slow receiver's share")
        assert len(slow.requests) == 2 and not slow.accepted  # its share of senders, no more
        waiting = await deliveries(api, slow_hook["id"])
        assert [d["status"] for d in waiting] == ["pending"] * 6
        pending = f"/api/v1/webhooks/{slow_hook['id']}/deliveries/{waiting[0]['id']}/redeliver"
        conflict = await api.post(pending)
        assert conflict.status_code == 409 and conflict.json()["field"] == "delivery_id"
        slow_gate.set()
        await settled(api, slow_hook["id"], 6, "succeeded")
        assert set(slow.accepted.values()) == {1} and len(slow.accepted) == 6


async def test_an_api_restart_mid_delivery_loses_and_duplicates_nothing(env: Env) -> None:
    gate = asyncio.Event()
    async with receiving(Receiver(gate=gate)) as receiver:
        app = create_app(env.settings(webhook_per_subscription=2))
        server = InLoopServer(app)
        base = await server.__aenter__()
        async with httpx.AsyncClient(base_url=base, headers=AUTH, timeout=10) as api:
            hook = await subscribe(api, receiver.url, [*TOKEN_EVENTS, "power.*"])
            await make_tokens(api, 5)
        await async_wait_for(lambda: receiver.held == 2, 10, "two deliveries in flight")
        # Stop the api while the receiver holds two requests; they get their answers only
        # once the sender has stopped taking new work.
        stopping = asyncio.create_task(server.__aexit__(None, None, None))
        engine = app.state.webhooks
        await async_wait_for(lambda: not engine.running, 10, "the sender to stop")
        gate.set()
        await stopping
        assert sum(receiver.accepted.values()) == 2
        # While the api is away, another service's event waits on its stream.
        power_event = await publish_power_event(env.nats)

        async with env.api() as api:
            items = await settled(api, hook["id"], 6, "succeeded")
        assert power_event in {d["event_id"] for d in items}
        ids = [h[signing.EVENT_ID_HEADER.lower()] for h, _ in receiver.requests]
        assert len(ids) == len(set(ids)) == 6  # every event, each sent once
        assert set(receiver.accepted.values()) == {1}
        verified(receiver, hook["secret"])


def test_without_a_key_on_a_shared_database_webhooks_are_refused() -> None:
    """The rest of the api runs; a malformed key stops it at start."""
    assert load_box(ApiSettings(database_url=postgres_url())) is None
    key = Fernet.generate_key().decode()
    assert load_box(ApiSettings(database_url=postgres_url(), secret_key=key)) is not None
    with pytest.raises(ValueError, match="SECRET_KEY"):
        load_box(ApiSettings(database_url=postgres_url(), secret_key="not-a-key"))


async def test_two_replicas_share_the_work_and_send_each_event_once(env: Env) -> None:
    async with (
        receiving(Receiver()) as receiver,
        env.api() as one,
        env.api() as two,
    ):
        hook = await subscribe(one, receiver.url, TOKEN_EVENTS)
        for api in (one, two):
            await make_tokens(api, 10)
        await settled(two, hook["id"], 20, "succeeded")
        ids = [h[signing.EVENT_ID_HEADER.lower()] for h, _ in receiver.requests]
        assert len(ids) == len(set(ids)) == 20
        verified(receiver, hook["secret"])


async def test_a_lease_left_by_a_crashed_replica_runs_out_and_is_sent(env: Env) -> None:
    """A replica that died mid-attempt leaves its lease; the delivery waits for it to run
    out, then another replica sends it."""
    async with receiving(Receiver()) as receiver:
        async with env.api(webhook_max_attempts=1) as api:
            hook = await subscribe(api, f"http://127.0.0.1:{closed_port()}/", TOKEN_EVENTS)
            await make_tokens(api, 2)
            first, second = await settled(api, hook["id"], 2, "failed")
            moved = await api.patch(f"/api/v1/webhooks/{hook['id']}", json={"url": receiver.url})
            assert moved.status_code == 200
        # As a crashed replica leaves them: pending, one lease still running, one run out.
        db = Database(env.database_url, schema=env.schema)
        try:
            now = utcnow()
            async with db.transaction() as session:
                for delivery_id, until in ((first["id"], 3600), (second["id"], -1)):
                    row = await session.get(WebhookDelivery, delivery_id)
                    assert row is not None
                    row.status = DeliveryStatus.PENDING
                    row.attempt_limit = 5
                    row.expires_at = now + timedelta(hours=1)
                    row.leased_by = "crashed-replica"
                    row.leased_until = now + timedelta(seconds=until)
                    session.add(row)
            async with env.api() as api:
                await async_wait_for(
                    lambda: len(receiver.requests) == 1, 10, "the expired lease's delivery"
                )
                still = (
                    await api.get(f"/api/v1/webhooks/{hook['id']}/deliveries/{first['id']}")
                ).json()
                assert still["status"] == "pending" and still["attempts"] == 1
                async with db.transaction() as session:
                    row = await session.get(WebhookDelivery, first["id"])
                    assert row is not None and row.leased_by == "crashed-replica"
                    row.leased_until = utcnow() - timedelta(seconds=1)
                    session.add(row)
                items = await settled(api, hook["id"], 2, "succeeded")
        finally:
            await db.dispose()
        assert all(d["attempts"] == 2 for d in items)
        ids = [h[signing.EVENT_ID_HEADER.lower()] for h, _ in receiver.requests]
        assert sorted(ids) == sorted(d["event_id"] for d in items)


async def test_finished_deliveries_are_forgotten_after_the_keep_time(env: Env) -> None:
    async with receiving(Receiver()) as receiver, env.api(webhook_keep_days=2e-5) as api:
        hook = await subscribe(api, receiver.url, TOKEN_EVENTS)  # kept ~1.7 s
        await make_tokens(api, 2)
        await async_wait_for(lambda: len(receiver.accepted) == 2, 10, "two deliveries")
        await async_wait_for(
            lambda: _none_left(api, hook["id"]), 20, "the finished deliveries to be swept"
        )
        db = Database(env.database_url, schema=env.schema)
        try:
            async with db.read() as session:
                left = (await session.exec(select(WebhookAttempt))).all()
        finally:
            await db.dispose()
        assert left == []


async def _none_left(api: httpx.AsyncClient, webhook_id: str) -> bool:
    return await deliveries(api, webhook_id) == []


async def test_a_receiver_that_does_not_answer_in_time_fails_the_attempt(env: Env) -> None:
    gate = asyncio.Event()
    async with receiving(Receiver(gate=gate)) as receiver:
        try:
            async with env.api(webhook_timeout_s=0.3, webhook_max_attempts=2) as api:
                hook = await subscribe(api, receiver.url, TOKEN_EVENTS)
                await make_tokens(api, 1)
                [delivery] = await settled(api, hook["id"], 1, "failed")
                assert [a["error"] for a in delivery["attempt_log"]] == [
                    "no answer within 0.3s"
                ] * 2
                assert all(a["duration_ms"] < 3000 for a in delivery["attempt_log"])
        finally:
            gate.set()
        assert len(receiver.requests) == 2
