"""metalbus boot service: PXE boot: DHCP, TFTP, HTTP boot, boot configs."""
