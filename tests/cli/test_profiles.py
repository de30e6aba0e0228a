"""login, logout, profiles: the token is kept 0600 and never printed."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from metalbus.cli.output import AUTH, UNREACHABLE, USAGE
from tests.cli.conftest import TOKEN, System


async def test_login_keeps_the_profile_private(system: System) -> None:
    ran = await system.cli("login", "admin", system.url + "/api/v1/", TOKEN)
    assert ran.code == 0, ran.stderr
    assert TOKEN not in ran.stdout + ran.stderr
    assert stat.S_IMODE(system.config.stat().st_mode) == 0o600
    assert TOKEN in system.config.read_text()

    listed = await system.cli("profiles", "--json")
    assert listed.json() == [{"name": "admin", "url": system.url, "role": "admin"}]
    assert TOKEN not in (await system.cli("profiles")).stdout
    me = await system.ok("admin", "tokens", "whoami")
    assert me["role"] == "admin"

    ran = await system.cli("logout", "admin")
    assert ran.code == 0
    assert (await system.cli("profiles", "--json")).json() == []


async def test_login_from_stdin_and_its_failures(system: System) -> None:
    ran = await system.cli("login", "ops", system.url, "-", input=TOKEN + "\n")
    assert ran.code == 0, ran.stderr
    bad = await system.cli("login", "bad", system.url, "mb_000000000001.wrong-secret")
    assert (
        bad.code == AUTH and bad.stderr.startswith("error: ") and len(bad.stderr.splitlines()) == 1
    )
    gone = await system.cli("login", "gone", "http://127.0.0.1:9", TOKEN)
    assert gone.code == UNREACHABLE and "cannot reach" in gone.stderr
    assert (await system.cli("login", "login", system.url, TOKEN)).code == USAGE
    # Nothing was saved for the failed logins.
    assert [p["name"] for p in (await system.cli("profiles", "--json")).json()] == ["ops"]
    unknown = await system.cli("nobody", "fabrics", "list")
    assert unknown.code == USAGE and "metalbus login nobody" in unknown.stderr
    assert (await system.cli("logout", "nobody")).code == USAGE


def test_shell_completion_offers_profiles_groups_and_actions(tmp_path: Path) -> None:
    config = tmp_path / "profiles.json"
    config.write_text('{"profiles": {"admin": {"url": "http://127.0.0.1:9", "token": "t"}}}')

    def complete(*words: str) -> list[str]:
        env = {
            **os.environ,
            "METALBUS_CONFIG": str(config),
            "_METALBUS_COMPLETE": "complete_bash",
            "COMP_WORDS": " ".join(("metalbus", *words)),
            "COMP_CWORD": str(len(words)),
        }
        script = Path(sys.executable).with_name("metalbus")
        ran = subprocess.run([script], env=env, capture_output=True, text=True, timeout=60)
        return ran.stdout.split()

    assert complete("ad") == ["admin"]
    assert complete("admin", "po") == ["pod", "power", "pools"]
    assert complete("admin", "pod", "up") == ["update"]
