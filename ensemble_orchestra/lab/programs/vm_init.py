"""The QEMU lab system's ``/init``: the installer and the installed system in one busybox shell script.

``lab/vm_image.py`` puts it into the initramfs the VM boots (a new script makes a new cached initrd). The kernel
command line chooses the part: with ``url=`` (what Cobbler's PXE config hands the installer) it installs —
fetches the rendered autoinstall, runs the preseed's late command against the disk mounted on ``/target``,
reboots; with ``ensemble.boot=disk`` (what the disk's boot loader passes) it is the installed system, which reads
its NoCloud seed and phones home (``phone_home``). Stdlib only, like every program here.
"""

from __future__ import annotations

__all__ = ["INIT"]

# /init: the installer (url= on the command line) or the installed system (ensemble.boot=disk).
# Its lines starting "ensemble-lab:" on the serial console are what the lab and the tests read.
INIT = r"""#!/bin/sh
# ensemble lab system: installer and installed system in one (ensemble_orchestra/lab/programs/vm_init.py)
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
say() { echo "ensemble-lab: $*"; }
for m in $(cat /modules.order); do insmod "/lib/modules/$m.ko" || say "insmod $m failed"; done
URL=; BOOT=; PHONE=
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    url=*) URL="${arg#url=}" ;;
    ensemble.boot=*) BOOT="${arg#ensemble.boot=}" ;;
    ensemble.phonehome=*) PHONE="${arg#ensemble.phonehome=}" ;;
  esac
done
n=0; while [ ! -e /sys/class/net/eth0 ] && [ $n -lt 100 ]; do sleep 0.05; n=$((n+1)); done
ip link set lo up; ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0; ip route add default via 10.0.2.2
idle() { while :; do sleep 3600; done; }
disk() {
  n=0; while [ ! -b /dev/vda ] && [ $n -lt 100 ]; do sleep 0.05; n=$((n+1)); done
  mkdir -p "$1"; mount -t vfat $2 /dev/vda "$1"
}
if [ -n "$URL" ]; then
  say "installing from $URL"
  disk /target "-o rw"
  if wget -q -O /tmp/autoinstall "$URL"; then
    sed -n 's/^d-i[[:space:]][[:space:]]*preseed\/late_command[[:space:]][[:space:]]*string[[:space:]][[:space:]]*//p' \
      /tmp/autoinstall > /tmp/late_command
    if [ -s /tmp/late_command ]; then
      sh /tmp/late_command; say "installed late_command rc=$?"
    else
      say "installed no late_command"
    fi
  else
    say "install failed: cannot fetch $URL"
  fi
  sync; umount /target
  say "rebooting"
  reboot -f
  idle
fi
if [ "$BOOT" = disk ]; then
  disk /disk "-o ro"
  seed=/disk/var/lib/cloud/seed/nocloud-net
  if [ -f "$seed/user-data" ] && [ -f "$seed/meta-data" ]; then
    iid=$(sed -n 's/^instance-id:[[:space:]]*//p' "$seed/meta-data")
    host=$(sed -n 's/^local-hostname:[[:space:]]*//p' "$seed/meta-data")
    sum=$(sha256sum "$seed/user-data" | cut -d' ' -f1)
    query="from=disk&instance-id=$iid&hostname=$host&user-data-sha256=$sum"
  else
    query="from=disk&seed=none"
  fi
else
  query="from=network"
fi
say "booted: $query"
if [ -n "$PHONE" ]; then
  n=0
  until wget -q -O /dev/null "$PHONE?$query"; do
    n=$((n+1)); [ $n -ge 20 ] && { say "phone home failed"; break; }; sleep 0.5
  done
  say "phoned home"
fi
idle
"""
