"""What every benchmark here shares: saving its JSON report and its argument types.

The benchmarks run as scripts (``python bench/<name>.py``), so this directory is on
``sys.path`` and they import this module by its bare name.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def save_report(report: dict[str, Any], results_dir: Path, name: str) -> Path:
    """Write ``report`` as ``<results_dir>/<name>-<UTC timestamp>.json``; returns the path."""
    results_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = results_dir / f"{name}-{stamp}.json"
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    return path


def positive(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value
