"""The boot service as the runtime runs it."""

from metalbus.shared.runtime import ServiceDefinition, run_service

from .settings import BootSettings

DEFINITION = ServiceDefinition(
    name="boot",
    description="PXE boot: DHCP, TFTP, HTTP boot, boot configs",
    settings_type=BootSettings,
)


def main() -> None:
    """Run the boot service until SIGTERM or SIGINT."""
    run_service(DEFINITION)
