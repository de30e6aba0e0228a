"""ruff on the whole tree and mypy --strict on the wire contract, as part of the suite."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300)


def test_ruff_is_clean() -> None:
    lint = run(str(BIN / "ruff"), "check", "shared", "services", "tests", "bench")
    assert lint.returncode == 0, lint.stdout + lint.stderr
    fmt = run(str(BIN / "ruff"), "format", "--check", "shared", "services", "tests", "bench")
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def test_shared_is_strictly_typed() -> None:
    result = run(str(BIN / "mypy"), "shared/src/metalbus/shared")
    assert result.returncode == 0, result.stdout + result.stderr
