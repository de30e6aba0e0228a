"""The hand-written docs stay true to the code."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

from metalbus.shared.settings import ServiceSettings
from metalbus.shared.subjects import SERVICES

REPO = Path(__file__).resolve().parents[1]


def test_configuration_doc_names_every_setting_and_no_other() -> None:
    """docs/configuration.md is written by hand: hold it to the settings classes."""
    text = (REPO / "docs" / "configuration.md").read_text()
    common = set(ServiceSettings.model_fields)
    for field in common:
        assert f"`{field.upper()}`" in text, f"{field} is not documented"
    documented = set(re.findall(r"^\| `([A-Z_]+)` \|", text, flags=re.M))
    for service in SERVICES:
        module = importlib.import_module(f"metalbus.{service}.settings")
        cls = next(
            v
            for v in vars(module).values()
            if isinstance(v, type) and issubclass(v, ServiceSettings) and v is not ServiceSettings
        )
        prefix = cls.model_config["env_prefix"]
        assert prefix == f"METALBUS_{service.upper()}_"
        for field in set(cls.model_fields) - common:
            assert f"`{prefix}{field.upper()}`" in text, (
                f"{prefix}{field.upper()} is not documented"
            )
    known = {f.upper() for f in common}
    for service in SERVICES:
        module = importlib.import_module(f"metalbus.{service}.settings")
        known |= {
            f"METALBUS_{service.upper()}_{f.upper()}"
            for c in vars(module).values()
            if isinstance(c, type) and issubclass(c, ServiceSettings)
            for f in c.model_fields
        }
    assert documented <= known, f"documented but not settings: {documented - known}"
