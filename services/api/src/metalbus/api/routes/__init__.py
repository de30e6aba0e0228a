"""Versioned routes of the HTTP API.

Each router carries the ``/api/v1`` prefix itself (rather than getting it from
``include_router``), so the matched route's ``path`` is the full template that traces and
metrics name the request by.
"""

API_PREFIX = "/api/v1"
