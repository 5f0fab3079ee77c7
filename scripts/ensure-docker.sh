#!/usr/bin/env bash
# Make sure a Docker engine is installed and answering, installing and starting it if needed (as root).
# Idempotent: a running daemon is left alone. A stale pid file from a killed daemon is cleared first.
set -euo pipefail

log() { echo "ensure-docker: $*" >&2; }

if ! command -v dockerd >/dev/null 2>&1; then
    log "Docker engine absent: installing Debian's docker.io"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq docker.io >/dev/null
fi

if docker info >/dev/null 2>&1; then
    exit 0
fi

if command -v systemctl >/dev/null 2>&1 && systemctl is-system-running >/dev/null 2>&1; then
    log "starting docker through systemd"
    systemctl start docker || true
fi

if ! docker info >/dev/null 2>&1; then
    for pidfile in /var/run/docker.pid /var/run/docker/containerd/containerd.pid; do
        if [ -f "$pidfile" ] && ! kill -0 "$(cat "$pidfile" 2>/dev/null)" 2>/dev/null; then
            log "removing stale $pidfile"
            rm -f "$pidfile"
        fi
    done
    if ! pgrep -x dockerd >/dev/null 2>&1; then
        log "starting dockerd in the background (log: /var/log/dockerd.log)"
        nohup dockerd >/var/log/dockerd.log 2>&1 &
    fi
fi

for _ in $(seq 1 60); do
    if docker info >/dev/null 2>&1; then
        log "dockerd is up ($(docker version --format '{{.Server.Version}}'))"
        exit 0
    fi
    sleep 1
done
log "dockerd did not come up within 60 s; see /var/log/dockerd.log:"
tail -n 20 /var/log/dockerd.log >&2 || true
exit 1
