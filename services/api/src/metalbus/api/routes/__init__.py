"""Versioned routes of the HTTP API (``/api/v1``)."""
