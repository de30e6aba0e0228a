#!/usr/bin/env bash
# Debian packages metalbus needs beyond Python: installed when missing, as root only.
#
# - libvirt-dev, pkg-config, gcc: libvirt-python (power's virsh driver) builds from source.
# - libvirt0: the libvirt library itself (its test:///default driver backs the tests).
# - openipmi, ipmitool: the tests run OpenIPMI's ipmi_sim as a real BMC and cross-check
#   it with ipmitool.
# - libvirt-daemon, libvirt-daemon-driver-qemu, libvirt-clients, qemu-system-x86, qemu-utils,
#   ipxe-qemu: compose's test against a real libvirtd (qemu:///system) runs a small VM under
#   QEMU (TCG, or KVM where /dev/kvm works): the daemon and its qemu driver, virsh (the
#   fixture waits on `virsh version`), qemu-img for qcow2 volumes, iPXE for the NIC's boot
#   ROM. Without libvirt-daemon-system (no systemd here): the fixture starts libvirtd and
#   virtlogd itself, and this script sets up what that package would (below).
# - busybox-static, isc-dhcp-client, iproute2: the boot tests run real DHCP clients (busybox
#   udhcpc, ISC dhclient) in network namespaces joined by veth pairs (ip netns, ip link).
#   The static build (it replaces Debian's `busybox`, same /bin/busybox) is also the whole
#   userland of the commissioning environment's initramfs (scripts/build-ephemeral.sh).
# - linux-image-amd64: the commissioning environment's kernel (/boot/vmlinuz-*) and the
#   virtio/e1000 modules its initramfs loads (/lib/modules); docs/commissioning.md.
# - ieee-data: the IEEE MAC registries (/usr/share/ieee-data/oui.csv, mam.csv, oui36.csv)
#   the discovery service names MAC vendors from.
# - iputils-arping: the discovery tests make real (gratuitous) ARP traffic with arping inside
#   the network namespaces they create.
# - curl, atftp, tftp-hpa: the boot tests fetch files from metalbus's TFTP server with real
#   clients (curl and tftp-hpa: RFC 1350/2348; atftp: windowsize, RFC 7440; busybox tftp
#   comes with busybox above).
# - tftpd-hpa: the peer server bench/boot_tftp.py compares metalbus with (started there as
#   `in.tftpd -L` on a loopback port). atftpd would conflict with it as a Debian package, so
#   the atftp client is used with tftpd-hpa. Its postinst would start a daemon on port 69:
#   that start is refused below (policy-rc.d), and any in.tftpd still left is stopped.
# - nmap: the peer bench/discovery.py compares discovery's active scan with (`nmap -sn`, an
#   ARP ping sweep of the same /24 in the benchmark's own network namespaces, same run).
# - chromium, fonts-dejavu-core: tests/ui drive the web UI in Debian's headless Chromium
#   (through playwright's Python package, which is told to use /usr/bin/chromium and never
#   downloads a browser of its own); the fonts give the screenshots legible text.
# - kea-dhcp4-server, kea-admin: the peer bench/boot_dhcp.py compares metalbus's DHCP with
#   (kea-dhcp4, started there in a network namespace) and its load generator perfdhcp (in
#   kea-admin). The package enables and would start kea-dhcp4 on the host's interfaces: the
#   start is refused (policy-rc.d) and the service stopped and disabled below.
#
# Not root, or not Debian: say what is missing and carry on (the build of libvirt-python
# then fails with its own message, and the tests that need ipmi_sim skip, or fail in CI).
set -euo pipefail

PACKAGES=(
    libvirt0 libvirt-dev pkg-config gcc openipmi ipmitool
    libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86 qemu-utils ipxe-qemu
    busybox-static isc-dhcp-client iproute2 linux-image-amd64
    ieee-data iputils-arping
    curl atftp tftp-hpa tftpd-hpa
    nmap
    chromium fonts-dejavu-core
    kea-dhcp4-server kea-admin
)

command -v dpkg-query >/dev/null 2>&1 || { echo "not Debian: install ${PACKAGES[*]} yourself" >&2; exit 0; }

missing=()
for pkg in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    [[ "$status" == "install ok installed" ]] || missing+=("$pkg")
done

if [[ ${#missing[@]} -gt 0 ]]; then
    if [[ $(id -u) -ne 0 ]]; then
        echo "missing Debian packages (run as root to install them): ${missing[*]}" >&2
        exit 0
    fi
    echo "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # No daemon started by a postinst (tftpd-hpa would listen on port 69): exit 101 from
    # policy-rc.d tells invoke-rc.d not to start services; only while installing.
    policy=/usr/sbin/policy-rc.d
    own_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && own_policy=1
    fi
    apt-get install -y -qq --no-install-recommends "${missing[@]}" || { [[ $own_policy -eq 1 ]] && rm -f "$policy"; exit 1; }
    [[ $own_policy -eq 1 ]] && rm -f "$policy"
    # Belt and braces: nothing of tftpd-hpa's keeps port 69 (the tests and the benchmark run
    # their own servers on loopback ports).
    if [[ " ${missing[*]} " == *" tftpd-hpa "* ]] && command -v service >/dev/null 2>&1; then
        service tftpd-hpa stop >/dev/null 2>&1 || true
    fi
    # No DHCP server of Kea's answers on the host's networks, now or after a reboot.
    if [[ " ${missing[*]} " == *" kea-dhcp4-server "* ]]; then
        service kea-dhcp4-server stop >/dev/null 2>&1 || true
        systemctl disable kea-dhcp4-server >/dev/null 2>&1 || true
        update-rc.d kea-dhcp4-server disable >/dev/null 2>&1 || true
    fi
fi

# libvirtd's qemu driver, installed bare (without libvirt-daemon-system, which would make the
# libvirt-qemu user and ship /etc/libvirt/qemu.conf), does not start: it resolves its
# built-in default user libvirt-qemu even when qemu.conf names another. Make the user (no
# login, no home) and run guests as root, as on a host where no one else runs libvirt; where
# libvirt-daemon-system is installed, its own setup is left alone. Idempotent: nothing
# changes once done.
[[ $(id -u) -eq 0 ]] || exit 0
status=$(dpkg-query -W -f='${Status}' libvirt-daemon-system 2>/dev/null || true)
[[ "$status" == "install ok installed" ]] && exit 0
status=$(dpkg-query -W -f='${Status}' libvirt-daemon-driver-qemu 2>/dev/null || true)
[[ "$status" == "install ok installed" ]] || exit 0
id -u libvirt-qemu >/dev/null 2>&1 ||
    useradd --system --no-create-home --home-dir /var/lib/libvirt --shell /usr/sbin/nologin libvirt-qemu
if ! grep -Eqs '^[[:space:]]*user[[:space:]]*=' /etc/libvirt/qemu.conf; then
    mkdir -p /etc/libvirt
    printf '# metalbus (scripts/install-system-packages.sh): guests run as root\nuser = "root"\ngroup = "root"\n' \
        >>/etc/libvirt/qemu.conf
fi
