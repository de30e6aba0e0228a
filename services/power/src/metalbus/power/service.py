"""The power service as the runtime runs it."""

from metalbus.shared.runtime import ServiceDefinition, run_service

from .settings import PowerSettings

DEFINITION = ServiceDefinition(
    name="power",
    description="BMC power control and polling",
    settings_type=PowerSettings,
)


def main() -> None:
    """Run the power service until SIGTERM or SIGINT."""
    run_service(DEFINITION)
