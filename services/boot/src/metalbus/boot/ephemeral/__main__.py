"""``python -m metalbus.boot.ephemeral [resources dir]``: build kernel and initrd.

The directory defaults to boot's ``BOOT_RESOURCES_DIR`` (``METALBUS_BOOT_BOOT_RESOURCES_DIR``).
"""

import sys
from pathlib import Path

from metalbus.boot.settings import BootSettings

from .build import BuildError, build


def main() -> int:
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else BootSettings().boot_resources_dir
    try:
        built = build(target)
    except BuildError as exc:
        print(f"ephemeral environment not built: {exc}", file=sys.stderr)
        return 1
    for path in (built.kernel, built.initrd):
        print(f"{path}  sha256 {built.sha256[path.name]}  ({path.stat().st_size} bytes)")
    print(f"kernel {built.kernel_version}")
    return 0


sys.exit(main())
