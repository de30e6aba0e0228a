"""No NUL characters in input: PostgreSQL cannot store or compare text holding one.

An app-wide dependency, so every route's path and query parameters and JSON body are checked once,
and the answer is a 422 naming the parameter or body field rather than the database
driver's error (a 500). FastAPI has already read and parsed the body when dependencies run
(``request.json()`` is cached), so the check costs one walk of the parsed document.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request

from metalbus.shared.errors import ValidationFailed

NUL = "\x00"


async def no_nul_in_input(request: Request) -> None:
    """Raises ValidationFailed on ``path.<name>``, ``query.<name>`` or ``body.<path>``
    holding a NUL."""
    for name, value in request.path_params.items():
        if isinstance(value, str) and NUL in value:
            raise ValidationFailed("a path may not contain a NUL character", field=f"path.{name}")
    for name, value in request.query_params.multi_items():
        if NUL in value or NUL in name:
            raise ValidationFailed(
                "a query parameter may not contain a NUL character", field=f"query.{name}"
            )
    if "json" not in request.headers.get("content-type", ""):
        return
    try:
        document = await request.json()
    except (ValueError, UnicodeDecodeError):
        return  # not JSON: the route's own validation answers
    if (path := _nul_path(document, "body")) is not None:
        raise ValidationFailed("a text value may not contain a NUL character", field=path)


def _nul_path(value: Any, path: str) -> str | None:
    """The path of the first string (key or value) holding a NUL, or None."""
    if isinstance(value, str):
        return path if NUL in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            if NUL in key or (found := _nul_path(item, f"{path}.{key}")) is not None:
                return f"{path}.{key}" if NUL in key else found
    elif isinstance(value, list):
        for n, item in enumerate(value):
            if (found := _nul_path(item, f"{path}.{n}")) is not None:
                return found
    return None
