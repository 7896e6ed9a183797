# Sourced by every hook of the probe charm (see metadata.yaml).
set -eu
hook=$(basename "$0")
log=/var/lib/probe/hooks.log
mkdir -p /var/lib/probe
case "$hook" in
    *-relation-*) echo "begin $hook ${JUJU_REMOTE_UNIT:--} ${JUJU_RELATION_ID:-}" >> "$log" ;;
    *) echo "begin $hook" >> "$log" ;;
esac
if [ "$(config-get fail-hook)" = "$hook" ]; then
    echo "$hook refuses: fail-hook is $hook"
    exit 1
fi
if [ "$(config-get slow-hook)" = "$hook" ]; then
    sleep "$(config-get slow-seconds)"
fi
case "$hook" in
    start) open-port 8000/tcp ;;
    stop) close-port 8000/tcp ;;
    db-relation-changed) echo "saw database=$(relation-get database) members=$(relation-list | tr '\n' ' ')" >> "$log" ;;
esac
juju-log "probe: $hook done on $(unit-get private-address)"
echo "end $hook" >> "$log"
