"""metalbus compose service: KVM hosts (pods) and VM composition through libvirt."""
