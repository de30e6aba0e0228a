"""`make up` on a fresh checkout brings every service up and ready; Ctrl-C stops it."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import stat
import subprocess
import threading
from pathlib import Path

import httpx
import pytest

from metalbus.shared import bus_auth, subjects
from tests.helpers import wait_for

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def fresh_checkout(dest: Path) -> Path:
    """The repository's files as a clone has them (plus uncommitted edits): no venv, no var."""
    files = (
        subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
            cwd=REPO,
            check=True,
            capture_output=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, files):
        source = REPO / name
        if source.is_file():
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return dest


def test_make_up_starts_everything_and_ctrl_c_stops_it(tmp_path: Path) -> None:
    checkout = fresh_checkout(tmp_path / "metalbus")
    env = {
        k: v
        for k, v in os.environ.items()
        if k != "NATS_URL" and not k.startswith(("METALBUS_", "VIRTUAL_ENV"))
    }
    proc = subprocess.Popen(
        ["make", "up", "UP_ARGS=--api-port 0"],
        cwd=checkout,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    output: list[str] = []
    reader = threading.Thread(
        target=lambda: output.extend(line.decode() for line in proc.stdout or []), daemon=True
    )
    reader.start()
    try:
        wait_for(
            lambda: "Press Ctrl-C to stop.\n" in output or proc.poll() is not None,
            300,
            "metalbus is up",
        )
        text = "".join(output)
        assert proc.poll() is None, text
        assert "metalbus is up" in text
        api_url = re.search(r"API\s+(http://\S+)/api/v1", text).group(1)  # type: ignore[union-attr]
        token = re.search(r"admin token\s+(mb_\S+)", text).group(1)  # type: ignore[union-attr]
        assert not (checkout / "var" / "admin-token").exists()  # shown once, not left on disk
        # Secure by default: a NATS user per service, its passwords readable by the owner only
        # (tests/security/test_bus_auth.py checks the permissions and the reuse).
        credentials = checkout / "var" / bus_auth.CREDENTIALS_FILE
        assert stat.S_IMODE(credentials.stat().st_mode) == 0o600

        state = json.loads((checkout / "var" / "state.json").read_text())
        assert set(state["services"]) == set(subjects.SERVICES)
        for service, info in state["services"].items():
            ready = httpx.get(info["ready_url"], timeout=5)
            assert ready.status_code == 200 and ready.json()["ready"], (service, ready.text)
        listing = httpx.get(
            f"{api_url}/api/v1/services", headers={"Authorization": f"Bearer {token}"}, timeout=10
        )
        assert listing.status_code == 200
        assert {s["service"]: s["ready"] for s in listing.json()} == dict.fromkeys(
            subjects.SERVICES, True
        )

        # A service that dies is restarted by the launcher.
        ipam = state["services"]["ipam"]
        os.kill(ipam["pid"], signal.SIGKILL)
        wait_for(lambda: "ipam exited" in "".join(output), 30, "the launcher to notice ipam died")
        wait_for(lambda: is_ready(ipam["ready_url"]), 60, "ipam to be restarted and ready")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
        try:
            proc.wait(60)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            reader.join(5)
    assert "metalbus stopped" in "".join(output)
    assert processes_of(checkout) == [], "processes of the checkout outlived Ctrl-C"


def is_ready(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def processes_of(checkout: Path) -> list[str]:
    """Live processes started from the checkout (its venv's python and nats-server)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            if str(checkout) in cmdline and "State:\tZ" not in (proc / "status").read_text():
                found.append(cmdline)
        except OSError:
            continue
    return found
