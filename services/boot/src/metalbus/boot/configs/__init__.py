"""Per-machine boot configs: what a MAC boots, rendered for pxelinux, GRUB and iPXE."""
