"""HTTP boot: the iPXE scripts and the boot files over HTTP (UEFI HTTP boot, iPXE)."""
