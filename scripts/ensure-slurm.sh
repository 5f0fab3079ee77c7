#!/usr/bin/env bash
# Make sure this machine can run a throw-away Slurm cluster for the tests (testbeds/slurmcluster.py), as root.
# Installs Debian's slurm-wlm 22.05 daemons and clients, munge and runc if absent, makes sure a munge key exists and
# munged answers. No systemd is assumed: munged is started by hand, as the munge user, after clearing a stale pid
# file or socket a killed daemon left behind. Idempotent and quiet: prints only what it changed, or why it failed.
# It starts no Slurm daemon; every test cluster brings its own slurmctld/slurmd up and down.
set -euo pipefail

log() { echo "ensure-slurm: $*" >&2; }

PACKAGES=(slurmctld slurmd slurm-client munge runc)
MUNGE_SOCKET=/run/munge/munge.socket.2
MUNGE_PIDFILE=/run/munge/munged.pid
MUNGE_KEY=/etc/munge/munge.key

if [ "$(id -u)" -ne 0 ]; then
    log "must run as root (it installs packages and starts munged)"
    exit 1
fi

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Another apt run (a parallel make target) may hold the lock: wait for it instead of failing.
    apt_opts=(-o DPkg::Lock::Timeout=300)
    apt_log=$(mktemp)
    # Recommends would pull in every optional plugin (HDF5, MySQL dev files, ...); the basic plugins suffice here.
    if ! { apt-get "${apt_opts[@]}" update -qq &&
           apt-get "${apt_opts[@]}" install -y -qq --no-install-recommends "${missing[@]}"; } >"$apt_log" 2>&1; then
        log "apt-get failed:"
        tail -n 30 "$apt_log" >&2
        rm -f "$apt_log"
        exit 1
    fi
    rm -f "$apt_log"
fi

# No procps needed (a minimal image has no pgrep): look for a process named munged in /proc.
munged_running() { grep -qx munged /proc/[0-9]*/comm 2>/dev/null; }

munge_ok() { munge -n -S "$MUNGE_SOCKET" 2>/dev/null | unmunge -S "$MUNGE_SOCKET" >/dev/null 2>&1; }

if munge_ok; then
    exit 0
fi

if [ ! -s "$MUNGE_KEY" ]; then
    log "creating munge key $MUNGE_KEY"
    install -d -o munge -g munge -m 0700 /etc/munge
    if command -v mungekey >/dev/null 2>&1; then
        mungekey --create --keyfile="$MUNGE_KEY" --force
    else
        dd if=/dev/urandom of="$MUNGE_KEY" bs=1 count=1024 status=none
    fi
fi
# munged refuses a key or directories with loose permissions or the wrong owner.
chown munge:munge "$MUNGE_KEY"
chmod 0400 "$MUNGE_KEY"
install -d -o munge -g munge -m 0755 /run/munge
install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge

# A munged killed with SIGKILL leaves its pid file, socket and socket lock: munged then refuses to start
# ("Found pid ... bound to socket"/"Failed to lock"), so clear them when no live munged owns them.
pid=""
[ -f "$MUNGE_PIDFILE" ] && pid="$(cat "$MUNGE_PIDFILE" 2>/dev/null || true)"
if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = munged ]; then
    log "munged (pid $pid) is running but does not answer; restarting it"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
fi
if ! munged_running; then
    rm -f "$MUNGE_PIDFILE" "$MUNGE_SOCKET" "$MUNGE_SOCKET.lock"
fi

if ! munged_running; then
    log "starting munged"
    # As the systemd unit does: munged runs as the munge user (as root it would need --force).
    runuser -u munge -- /usr/sbin/munged --socket="$MUNGE_SOCKET" --pid-file="$MUNGE_PIDFILE" --key-file="$MUNGE_KEY"
fi

for _ in $(seq 1 50); do
    if munge_ok; then
        exit 0
    fi
    sleep 0.1
done
log "munged does not answer on $MUNGE_SOCKET; see /var/log/munge/munged.log:"
tail -n 20 /var/log/munge/munged.log >&2 || true
exit 1
