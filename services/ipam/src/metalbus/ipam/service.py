"""The ipam service as the runtime runs it."""

from metalbus.shared.runtime import ServiceDefinition, run_service

from .settings import IpamSettings

DEFINITION = ServiceDefinition(
    name="ipam",
    description="IP address management: fabrics, VLANs, spaces, subnets, ranges, addresses",
    settings_type=IpamSettings,
)


def main() -> None:
    """Run the ipam service until SIGTERM or SIGINT."""
    run_service(DEFINITION)
