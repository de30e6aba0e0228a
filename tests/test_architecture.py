"""The rules that keep metalbus a set of services and not a distributed monolith."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import pytest

from metalbus.shared import subjects

REPO = Path(__file__).resolve().parents[1]
SERVICES = subjects.SERVICES


def python_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*.py") if "migrations" not in p.parts]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_never_imports_another(service: str) -> None:
    others = {f"metalbus.{s}" for s in SERVICES if s != service}
    for path in python_files(REPO / "services" / service / "src"):
        for module in imported_modules(path):
            assert not any(module == o or module.startswith(o + ".") for o in others), (
                f"{path.relative_to(REPO)} imports {module}"
            )


def test_shared_imports_no_service() -> None:
    for path in python_files(REPO / "shared" / "src"):
        for module in imported_modules(path):
            assert not any(module.startswith(f"metalbus.{s}") for s in SERVICES), (
                f"{path.relative_to(REPO)} imports {module}"
            )


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_installs_only_its_own_dependencies(service: str) -> None:
    project = tomllib.loads((REPO / "services" / service / "pyproject.toml").read_text())["project"]
    names = {re.split(r"[<>=!~\[ ;]", dep, maxsplit=1)[0] for dep in project["dependencies"]}
    assert "metalbus-shared" in names
    assert not names & {f"metalbus-{s}" for s in SERVICES}, names
    if service != "api":
        assert "fastapi" not in names  # only the front door needs the web framework


_SUBJECT = re.compile(r"""["']metalbus\.(cmd|evt)\.""")


def test_subjects_are_spelled_only_in_shared() -> None:
    offenders = [
        str(path.relative_to(REPO))
        for root in (REPO / "services",)
        for path in python_files(root)
        if _SUBJECT.search(path.read_text())
    ]
    assert offenders == []


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_runs_as_a_module(service: str) -> None:
    package = REPO / "services" / service / "src" / "metalbus" / service
    assert (package / "__main__.py").exists()
    assert (package / "service.py").exists()
