"""The commissioning image: a busybox initramfs whose ``/init`` reports the hardware and powers off.

It is built like the QEMU lab's initramfs (``lab/vm_image.py``: Debian's kernel, busybox-static, a newc cpio
written by Python), with :data:`INIT` as ``/init``. Booted by PXE with the commissioning profile, it:

1. brings up networking with busybox ``udhcpc`` on each Ethernet interface in turn;
2. gathers the report (format 1, ``report.py``) from ``/proc/cpuinfo``, the kernel's memory blocks (else
   ``/proc/meminfo``), ``/sys/block`` and ``/sys/class/net``;
3. PUTs it to ``<ensemble.report><ensemble.token>.json`` with HTTP digest authentication as the
   commissioning user (busybox has no HTTP client that can PUT, so :data:`FUNCTIONS` speaks HTTP/1.1 over
   ``nc``: one unauthenticated request for the challenge, then the authenticated PUT), retrying for a minute;
4. powers off (``poweroff -f``), which is how the command learns it is done.

Booted without ``ensemble.token`` (an unknown server that took the PXE menu's default: enlistment, see
``enlistment.py``), it reports as ``enlist-<MAC of the interface that got DHCP, no colons>`` instead.

Its kernel command line carries ``ensemble.report`` (the report area's URL as systems reach it),
``ensemble.report_user`` and ``ensemble.report_pass`` from the commissioning profile, and
``ensemble.token`` from the system (set by ``ensemble-orchestra commission`` for this run). Nothing else:
no Cobbler credential, no storage credential (docs/commissioning.md says why that is enough).
Its console lines start ``ensemble-commissioning:``.

:data:`FUNCTIONS` is also what the lab's process and container systems run (``busybox sh``) to report their
configured hardware, so every lab system kind sends its report the same way.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["CONSOLE_PREFIX", "FUNCTIONS", "INIT", "build_commissioning_image"]

CONSOLE_PREFIX = "ensemble-commissioning:"

# Shell functions (busybox ash): the report and the authenticated PUT. No secret is ever echoed.
FUNCTIONS = r"""
json_text() { printf '%s' "$1" | tr -cd ' -~' | tr -d '"\\' | cut -c1-200; }
md5() { printf '%s' "$1" | md5sum | cut -d' ' -f1; }
memory_mb() {
  blocks=/sys/devices/system/memory
  if [ -r $blocks/block_size_bytes ]; then
    size=$((0x$(cat $blocks/block_size_bytes))); n=0
    for b in $blocks/memory*; do [ "$(cat $b/online 2>/dev/null)" = 1 ] && n=$((n+1)); done
    if [ $n -gt 0 ]; then echo $((n * size / 1048576)); return; fi
  fi
  kb=$(sed -n 's/^MemTotal:[[:space:]]*\([0-9]*\).*/\1/p' /proc/meminfo)
  echo $(((kb + 1023) / 1024))
}
hw_report() {  # TOKEN: the report (format 1) of this machine
  model=$(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo | head -n 1)
  printf '{"format":1,"token":"%s","arch":"%s","cpus":%d,"cpu_model":"%s","memory_mb":%d,"disks":[' \
    "$1" "$(uname -m)" "$(grep -c '^processor' /proc/cpuinfo)" "$(json_text "$model")" "$(memory_mb)"
  sep=
  for d in /sys/block/*; do
    name=${d##*/}
    case "$name" in loop*|ram*|zram*|sr*|fd*|dm-*|md*|nbd*) continue ;; esac
    [ -r "$d/size" ] || continue
    printf '%s{"name":"%s","size_bytes":%s}' "$sep" "$name" "$(($(cat "$d/size") * 512))"; sep=,
  done
  printf '],"interfaces":['
  sep=
  for n in /sys/class/net/*; do
    [ "$(cat "$n/type" 2>/dev/null)" = 1 ] || continue
    mac=$(cat "$n/address"); [ "$mac" = 00:00:00:00:00:00 ] && continue
    printf '%s{"name":"%s","mac":"%s"}' "$sep" "${n##*/}" "$mac"; sep=,
  done
  printf ']}\n'
}
http_put() {  # URL FILE USER PASS: PUT FILE with digest auth; prints the HTTP status (000: no answer)
  rest=${1#http://}; hostport=${rest%%/*}; path=/${rest#*/}
  host=${hostport%:*}; port=${hostport##*:}; [ "$port" = "$hostport" ] && port=80
  head="PUT $path HTTP/1.1\r\nHost: $hostport\r\nConnection: close\r\n"
  challenge=$(printf "${head}Content-Length: 0\r\n\r\n" | timeout 20 nc "$host" "$port" | tr -d '\r' \
    | sed -n 's/^[Ww][Ww][Ww]-[Aa]uthenticate: *[Dd]igest //p')
  if [ -z "$challenge" ]; then echo 000; return; fi
  field() { printf '%s' "$challenge" | sed -n "s/.*$1=\"\([^\"]*\)\".*/\1/p"; }
  realm=$(field realm); nonce=$(field nonce); opaque=$(field opaque)
  cnonce=$(head -c 16 /dev/urandom | md5sum | cut -c1-16)
  ha1=$(md5 "$3:$realm:$4"); ha2=$(md5 "PUT:$path")
  response=$(md5 "$ha1:$nonce:00000001:$cnonce:auth:$ha2")
  auth="Digest username=\"$3\", realm=\"$realm\", nonce=\"$nonce\", uri=\"$path\", algorithm=MD5"
  auth="$auth, response=\"$response\", qop=auth, nc=00000001, cnonce=\"$cnonce\""
  [ -n "$opaque" ] && auth="$auth, opaque=\"$opaque\""
  status=$({ printf "${head}Authorization: %s\r\nContent-Type: application/json\r\nContent-Length: %s\r\n\r\n" \
    "$auth" "$(wc -c < "$2")"; cat "$2"; } | timeout 20 nc "$host" "$port" | head -n 1 | cut -d' ' -f2)
  echo "${status:-000}"
}
"""

INIT = (
    r"""#!/bin/sh
# ensemble commissioning image: report the hardware, power off (ensemble_orchestra/commissioning/image.py)
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
say() { echo "ensemble-commissioning: $*"; }
for m in $(cat /modules.order); do insmod "/lib/modules/$m.ko" 2>/dev/null || say "insmod $m failed"; done
"""
    + FUNCTIONS
    + r"""
REPORT=; RUSER=; RPASS=; TOKEN=
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    ensemble.report=*) REPORT="${arg#ensemble.report=}" ;;
    ensemble.report_user=*) RUSER="${arg#ensemble.report_user=}" ;;
    ensemble.report_pass=*) RPASS="${arg#ensemble.report_pass=}" ;;
    ensemble.token=*) TOKEN="${arg#ensemble.token=}" ;;
  esac
done
n=0; while [ -z "$(ls /sys/class/net | grep -v '^lo$')" ] && [ $n -lt 100 ]; do sleep 0.05; n=$((n+1)); done
printf '#!/bin/sh\ncase "$1" in bound|renew)\n  ip addr flush dev "$interface"\n' > /tmp/dhcp
printf '  ip addr add "$ip/${mask:-24}" dev "$interface"\n' >> /tmp/dhcp
printf '  [ -n "$router" ] && ip route add default via "${router%%%% *}" dev "$interface";;\nesac\n' >> /tmp/dhcp
chmod +x /tmp/dhcp
ip link set lo up
NET=
for i in /sys/class/net/*; do
  [ "$(cat "$i/type")" = 1 ] || continue
  ip link set "${i##*/}" up
  if udhcpc -i "${i##*/}" -n -q -t 5 -T 2 -s /tmp/dhcp >/dev/null 2>&1; then
    NET=${i##*/}; say "network on $NET"; break
  fi
done
if [ -z "$TOKEN" ] && [ -n "$NET" ]; then  # booted by no system's token: an unknown server, enlisting
  TOKEN="enlist-$(tr -d ':' < "/sys/class/net/$NET/address")"
  say "enlisting as $TOKEN"
fi
hw_report "$TOKEN" > /tmp/report.json
say "report: $(cat /tmp/report.json)"
if [ -z "$REPORT" ] || [ -z "$TOKEN" ]; then
  say "report failed: no ensemble.report or ensemble.token on the kernel command line"
else
  n=0
  while :; do
    status=$(http_put "$REPORT$TOKEN.json" /tmp/report.json "$RUSER" "$RPASS")
    case "$status" in 201|204) say "reported (HTTP $status)"; break ;; esac
    n=$((n+1)); [ $n -ge 30 ] && { say "report failed (HTTP $status)"; break; }
    sleep 2
  done
fi
say "powering off"
sync
poweroff -f
while :; do sleep 3600; done
"""
)


def build_commissioning_image(cache: Path | None = None) -> tuple[Path, Path]:
    """(kernel, initrd) of the commissioning image, built and cached like the lab's (first time ~10 s)."""
    from ..lab.vm_image import build_boot_files

    boot = build_boot_files(cache, init=INIT)
    return boot.kernel, boot.initrd
