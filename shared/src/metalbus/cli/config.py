"""Named profiles (a URL and a token each), as ``maas login`` keeps them.

Stored in ``~/.config/metalbus/profiles.json`` (or ``$METALBUS_CONFIG``), mode 0600: the
file holds bearer tokens. It is rewritten whole through a temporary file in the same
directory, so a crash never leaves half a file.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass
class Profile:
    name: str
    url: str
    token: str
    role: str | None = None


def config_path() -> Path:
    if env := os.environ.get("METALBUS_CONFIG"):
        return Path(env)
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "metalbus" / "profiles.json"


def load() -> dict[str, Profile]:
    path = config_path()
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read the profiles in {path}: {exc}") from exc
    return {name: Profile(name=name, **fields) for name, fields in raw.get("profiles", {}).items()}


def save(profiles: dict[str, Profile]) -> Path:
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    body = {
        "profiles": {
            p.name: {k: v for k, v in asdict(p).items() if k != "name"} for p in profiles.values()
        }
    }
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as out:
            os.fchmod(out.fileno(), 0o600)  # even if the file existed with a wider mode
            json.dump(body, out, indent=2, sort_keys=True)
            out.write("\n")
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path
