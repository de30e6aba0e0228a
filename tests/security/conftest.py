"""The api under test (real app, ipam, nats-server, databases) from tests/api."""

from tests.api.conftest import api  # noqa: F401 (a fixture)
