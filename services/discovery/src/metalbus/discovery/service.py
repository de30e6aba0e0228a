"""The discovery service as the runtime runs it."""

from metalbus.shared.runtime import ServiceDefinition, run_service

from .settings import DiscoverySettings

DEFINITION = ServiceDefinition(
    name="discovery",
    description="network discovery: ARP, NDP, mDNS, active scans",
    settings_type=DiscoverySettings,
)


def main() -> None:
    """Run the discovery service until SIGTERM or SIGINT."""
    run_service(DEFINITION)
