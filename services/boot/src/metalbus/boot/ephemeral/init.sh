#!/bin/busybox sh
# /init of metalbus's ephemeral environment (docs/commissioning.md).
#
# Kernel arguments read (the api's boot_config step puts them there):
#   metalbus.url=<api base URL>  metalbus.system_id=<id>  metalbus.token=<token>
#   metalbus.purpose=commissioning|deploy (any other, e.g. enlist or rescue: nothing posted)
#   metalbus.after=poweroff|wait   (default poweroff)
#   BOOTIF=01-<mac, dashes>        (pxelinux) or metalbus.bootif=<mac>: the NIC to use first
# Everything it does is logged on the console as "metalbus: ..." lines; the gathered
# hardware also as one "metalbus-hardware: {json}" line.

/bin/busybox mkdir -p /bin /sbin /usr/bin /usr/sbin /proc /sys /dev /tmp /run
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
[ -d /sys/firmware/efi ] && mount -t efivarfs efivarfs /sys/firmware/efi/efivars 2>/dev/null

log() { echo "metalbus: $*" >/dev/console; }

# Modules in dependency order (build.py wrote the list); built-in or missing ones are skipped.
while read -r module; do
    insmod "/lib/modules/$module" 2>/dev/null
done </etc/metalbus/modules

# The last of a repeated argument counts: the api puts metalbus.purpose=<its flow> first,
# boot appends metalbus.purpose=<the boot config's purpose> after it.
arg() {
    value=""
    for word in $(cat /proc/cmdline); do
        case "$word" in "$1="*) value=${word#*=} ;; esac
    done
    echo "$value"
}
URL=$(arg metalbus.url)
SYSTEM_ID=$(arg metalbus.system_id)
TOKEN=$(arg metalbus.token)
PURPOSE=$(arg metalbus.purpose)
AFTER=$(arg metalbus.after)
BOOTIF=$(arg metalbus.bootif)
if [ -z "$BOOTIF" ]; then
    # pxelinux's BOOTIF=01-aa-bb-cc-dd-ee-ff: drop the hardware type, dashes to colons.
    BOOTIF=$(arg BOOTIF | sed -e 's/^01-//' -e 's/-/:/g')
fi
log "purpose=${PURPOSE:-none} system_id=${SYSTEM_ID:-none}"

finish() {
    sync
    if [ "$AFTER" = wait ]; then
        log "waiting"
        while :; do sleep 3600; done
    fi
    log "powering off"
    poweroff -f
}

# Values read from sysfs go into JSON strings: quotes, backslashes and control characters
# are dropped (serials and models do not need them), surrounding blanks trimmed.
clean() { tr -d '"\\\000-\037' | sed -e 's/^ *//' -e 's/ *$//'; }
read_clean() { [ -r "$1" ] && clean <"$1"; }

# -- network: DHCP on the boot NIC first, then on every other one ---------------------------
nics() {
    for dev in /sys/class/net/*; do
        name=${dev##*/}
        [ "$name" = lo ] && continue
        [ "$(cat "$dev/type" 2>/dev/null)" = 1 ] || continue
        echo "$name"
    done
}
for name in $(nics); do ip link set "$name" up; done
ordered=""
for name in $(nics); do
    if [ -n "$BOOTIF" ] && [ "$(cat /sys/class/net/$name/address)" = "$BOOTIF" ]; then
        ordered="$name $ordered"
    else
        ordered="$ordered $name"
    fi
done
LEASED=""
for name in $ordered; do
    # -n: give up after the tries, -q: exit once leased; the script configures the NIC.
    if udhcpc -i "$name" -n -q -t 10 -T 2 -s /etc/metalbus/udhcpc.script >/dev/null 2>&1; then
        LEASED=$name
        break
    fi
done
if [ -n "$LEASED" ]; then
    log "leased $(ip -4 -o addr show dev "$LEASED" | awk '{print $4}') on $LEASED"
else
    log "no DHCP lease on any NIC"
fi

# -- hardware ------------------------------------------------------------------------------
CORES=$(grep -c '^processor' /proc/cpuinfo)
# Memory from the hot-plug memory blocks (the size the machine was given, in whole blocks);
# MemTotal is smaller by what the kernel keeps for itself, so it is only the fallback.
MEMORY=""
if [ -r /sys/devices/system/memory/block_size_bytes ]; then
    block=$(printf '%d' "0x$(cat /sys/devices/system/memory/block_size_bytes)")
    online=0
    for state in /sys/devices/system/memory/memory*/state; do
        [ "$(cat "$state")" = online ] && online=$((online + 1))
    done
    [ "$online" -gt 0 ] && MEMORY=$((online * block / 1048576))
fi
[ -n "$MEMORY" ] || MEMORY=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)
case "$(uname -m)" in
    x86_64) ARCH=amd64/generic ;;
    aarch64) ARCH=arm64/generic ;;
    i?86) ARCH=i386/generic ;;
    *) ARCH="" ;;
esac
if [ -d /sys/firmware/efi ]; then BOOT_MODE=uefi; else BOOT_MODE=bios; fi

DISKS=""
FIRST_DISK=""
for dev in /sys/block/*; do
    name=${dev##*/}
    case "$name" in loop* | ram* | sr* | fd* | zram* | dm-* | md*) continue ;; esac
    [ -e "$dev/device" ] || continue
    size=$(($(cat "$dev/size") * 512))
    model=$(read_clean "$dev/device/model")
    serial=$(read_clean "$dev/serial")
    [ -n "$serial" ] || serial=$(read_clean "$dev/device/serial")
    [ -n "$FIRST_DISK" ] || FIRST_DISK=$name
    DISKS="$DISKS${DISKS:+,}{\"name\":\"$name\",\"size\":$size,\"model\":\"$model\",\"serial\":\"$serial\"}"
done

NICS=""
NIC_STATES=""
for name in $(nics); do
    mac=$(cat "/sys/class/net/$name/address")
    if [ "$(cat "/sys/class/net/$name/carrier" 2>/dev/null)" = 1 ]; then link=up; else link=down; fi
    NICS="$NICS${NICS:+,}{\"name\":\"$name\",\"mac\":\"$mac\"}"
    NIC_STATES="$NIC_STATES${NIC_STATES:+,}{\"name\":\"$name\",\"mac\":\"$mac\",\"link\":\"$link\"}"
done

dmi() { read_clean "/sys/class/dmi/id/$1"; }
DMI="{\"sys_vendor\":\"$(dmi sys_vendor)\",\"product_name\":\"$(dmi product_name)\",\
\"product_serial\":\"$(dmi product_serial)\",\"product_uuid\":\"$(dmi product_uuid)\",\
\"board_vendor\":\"$(dmi board_vendor)\",\"bios_version\":\"$(dmi bios_version)\"}"

# What the api's commissioning route takes (CommissioningReport: it refuses other fields).
REPORT="{\"cores\":$CORES,\"memory\":$MEMORY${ARCH:+,\"architecture\":\"$ARCH\"},\
\"disks\":[$DISKS],\"interfaces\":[$NICS]}"
# Everything gathered, DMI, boot mode and link states included, on the console.
echo "metalbus-hardware: {\"report\":$REPORT,\"boot_mode\":\"$BOOT_MODE\",\
\"dmi\":$DMI,\"nics\":[$NIC_STATES]}" >/dev/console

# -- callbacks -----------------------------------------------------------------------------
post() {
    # POST $2 (JSON) to $URL$1 with the machine's token; up to 10 tries, 3 s apart (the api
    # may be restarting). busybox wget exits non-zero on any status other than 2xx; its own
    # -T crashes the static build, so busybox timeout bounds it.
    tries=0
    while [ $tries -lt 10 ]; do
        if timeout 30 wget -q -O /tmp/answer \
            --header "Authorization: Bearer $TOKEN" \
            --header "Content-Type: application/json" \
            --post-data "$2" "$URL$1" 2>/tmp/wget.err; then
            log "posted $1"
            return 0
        fi
        tries=$((tries + 1))
        log "POST $1 failed ($(cat /tmp/wget.err)), try $tries"
        sleep 3
    done
    return 1
}

if [ -z "$URL" ] || [ -z "$SYSTEM_ID" ] || [ -z "$TOKEN" ]; then
    log "no metalbus.url, metalbus.system_id or metalbus.token: nothing to report"
    finish
fi
base="/api/v1/machines/$SYSTEM_ID/callback"

case "$PURPOSE" in
    commissioning | commission)
        post "$base/commissioning" "$REPORT"
        ;;
    deploy)
        # The minimal deploy: a marker at the start of the first disk, read back to check.
        marker="metalbus-deployed system_id=$SYSTEM_ID"
        if [ -n "$FIRST_DISK" ] && printf '%s\n' "$marker" | dd of="/dev/$FIRST_DISK" bs=512 conv=notrunc,sync 2>/dev/null \
            && sync && [ "$(head -c ${#marker} "/dev/$FIRST_DISK")" = "$marker" ]; then
            log "marker written to /dev/$FIRST_DISK"
            post "$base/result" "{\"result\":\"success\",\"message\":\"marker written to /dev/$FIRST_DISK\"}"
        else
            log "no disk to write the marker to"
            post "$base/result" "{\"result\":\"failure\",\"message\":\"no disk to write the marker to\"}"
        fi
        ;;
    *)
        log "purpose ${PURPOSE:-none}: nothing to report"
        ;;
esac
finish
