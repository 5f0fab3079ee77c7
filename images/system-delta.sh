#!/bin/sh
# Runs in the Dockerfile's `system` stage: create the non-root user, install the framework's Debian
# packages offline (only torch has any), then copy every path these steps created or changed into
# /delta. The final stage copies /delta alone, so the .deb files never become a layer of the image.
set -eu
debs="$1"; delta="$2"
marker=/tmp/.system-delta-start
: >"$marker"
sleep 1  # ctime granularity: everything changed from here on is newer than the marker
# A fixed uid/gid so `docker run --user`, volume permissions and Kubernetes' runAsNonRoot can rely on it.
groupadd --gid 10001 gdbench
useradd --uid 10001 --gid 10001 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin gdbench
if ls "$debs"/*.deb >/dev/null 2>&1; then
    dpkg --install --force-confdef "$debs"/*.deb   # offline: the debhouse holds every dependency
    ldconfig
fi
rm -rf /var/log/* /var/cache/debconf/*-old /var/lib/dpkg/*-old /var/cache/ldconfig/aux-cache
mkdir -p "$delta"
# ctime, not mtime: dpkg keeps the packaged mtimes, but every file it (or useradd) writes gets a new ctime.
find / -xdev \( -path /proc -o -path /sys -o -path /dev -o -path /tmp -o -path "$delta" -o -path /var/log \
        -o -path /etc/hosts -o -path /etc/hostname -o -path /etc/resolv.conf \) -prune \
    -o -cnewer "$marker" -print \
    | tar -c --no-recursion -T - | tar -x -C "$delta"
rm -f "$marker"
