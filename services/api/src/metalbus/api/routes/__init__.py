"""Versioned routes of the HTTP API.

Each router carries the ``/api/v1`` prefix itself (rather than getting it from
``include_router``), so the matched route's ``path`` is the full template that traces and
metrics name the request by.
"""

from typing import Any

API_PREFIX = "/api/v1"


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the problem+json answers a group of routes can give.

    The schema is referenced, not given as ``model``: with a model FastAPI would also
    document ``application/json``, which these answers never are. The app adds the
    ``Problem`` schema to the document's components.
    """
    schema = {"$ref": "#/components/schemas/Problem"}
    return {
        status: {
            "description": _DESCRIPTIONS[status],
            "content": {"application/problem+json": {"schema": schema}},
        }
        for status in statuses
    }


_DESCRIPTIONS = {
    401: "No token, or a token that is malformed, unknown, expired or revoked",
    403: "The token's role does not allow this",
    404: "No such object",
    409: "The request collides with the current state (taken, overlapping, in use, exhausted)",
    422: "The request does not validate; `field` names the input at fault",
    503: "The service that owns this is not answering (or the bus is down)",
    504: "The service that owns this did not answer in time",
}
