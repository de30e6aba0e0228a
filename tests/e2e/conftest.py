"""The ephemeral environment, built once per test session for the e2e tests."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from metalbus.boot.ephemeral.build import BuildError, Built, build
from tests.conftest import skip_or_fail
from tests.e2e.vm import QEMU


@pytest.fixture(scope="session")
def ephemeral(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Built]]:
    """(resources root, what was built): kernel and initrd under ``ephemeral/amd64``."""
    if shutil.which(QEMU) is None:
        skip_or_fail(f"{QEMU} is not installed (scripts/install-system-packages.sh)")
    root = tmp_path_factory.mktemp("boot-resources")
    started = time.monotonic()
    try:
        built = build(root)
    except BuildError as exc:
        skip_or_fail(f"the ephemeral environment cannot be built here: {exc}")
    print(f"ephemeral environment built in {time.monotonic() - started:.1f} s")
    yield root, built
