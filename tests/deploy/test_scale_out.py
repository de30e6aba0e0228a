"""Scale-out under failure, without containers: bench/scale_out.py runs a 3-node NATS
cluster on loopback (JetStream on each, streams with 3 replicas), two ipam and two api
replicas on PostgreSQL, 1000 allocations from concurrent clients (over the bus and through
both api replicas) that retry with their idempotency key, and kills (SIGKILL) the NATS node
leading ipam's stream and one ipam replica mid-load. Nothing may be lost or doubled."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import _postgres_reachable, skip_or_fail
from tests.helpers import postgres_url

REPO = Path(__file__).resolve().parents[2]
ALLOCATIONS = 1000
pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def test_no_request_event_or_address_is_lost_or_doubled(tmp_path: Path) -> None:
    if not asyncio.run(_postgres_reachable()):
        skip_or_fail(f"PostgreSQL not reachable at {postgres_url()}")
    out = tmp_path / "report.json"
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "scale_out.py"),
         "--allocations", str(ALLOCATIONS), "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=170, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    report = json.loads(out.read_text())
    print(result.stdout)
    # Both failures really happened mid-load.
    assert 0 < report["chaos"]["nats_killed"]["answered"] < ALLOCATIONS
    assert 0 < report["chaos"]["ipam_killed"]["answered"] < ALLOCATIONS
    assert report["stream_replicas"] == 3
    # Every request answered (after its retries), each with its own address, made once.
    assert report["answered"] == ALLOCATIONS and report["lost"] == 0
    assert report["duplicate_ips"] == 0
    assert report["rows"] == ALLOCATIONS
    # Exactly one address.allocated event per address, none for anything else.
    assert report["events"] == ALLOCATIONS
    assert report["events_missing"] == report["events_duplicated"] == 0
    assert report["events_unknown"] == 0
