"""The compose service as the runtime runs it."""

from metalbus.shared.runtime import ServiceDefinition, run_service

from .settings import ComposeSettings

DEFINITION = ServiceDefinition(
    name="compose",
    description="KVM hosts (pods) and VM composition through libvirt",
    settings_type=ComposeSettings,
)


def main() -> None:
    """Run the compose service until SIGTERM or SIGINT."""
    run_service(DEFINITION)
