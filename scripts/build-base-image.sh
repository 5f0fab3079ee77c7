#!/usr/bin/env bash
# Build a local base image: a Debian suite (minbase) + its own python3 with venv support. bookworm gives
# Python 3.11 (every default image), trixie gives Python 3.13 (for framework versions that need a newer one).
#
# Why: where no container registry answers, `python:3.11-slim-bookworm` cannot be pulled, so `make images`
# makes an equivalent base itself from Debian's own packages (debootstrap + `docker import`). Debian
# bookworm's python3 is 3.11, the version every image uses (see images/README.md). The result is cached:
# an existing tag is reused, so this runs once per machine (force a refresh with `docker rmi TAG`).
#
# Usage: scripts/build-base-image.sh [TAG]     (env: DEBIAN_MIRROR, SUITE: bookworm | trixie)
#        the tag names the suite and its Python: gdbench/base:bookworm-py3.11, gdbench/base:trixie-py3.13
set -euo pipefail

SUITE="${SUITE:-bookworm}"
case "$SUITE" in
    bookworm) expect_python=3.11 ;;
    trixie) expect_python=3.13 ;;
    *) echo "error: SUITE must be bookworm (Python 3.11) or trixie (Python 3.13), not '$SUITE'" >&2; exit 2 ;;
esac
TAG="${1:-gdbench/base:$SUITE-py$expect_python}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
# python3-venv: `python -m venv` works as in the official image. No compiler and no headers: only the
# torch image needs those (see images/torch/debs.lock).
PACKAGES="python3,python3-venv"

if docker image inspect "$TAG" >/dev/null 2>&1; then
    echo "base image $TAG exists; reusing it (docker rmi $TAG to rebuild)"
    exit 0
fi
for tool in debootstrap docker; do
    command -v "$tool" >/dev/null || { echo "error: $tool not found (apt-get install debootstrap docker.io)" >&2; exit 2; }
done
[ "$(id -u)" = 0 ] || { echo "error: debootstrap needs root" >&2; exit 2; }

rootfs="$(mktemp -d "${TMPDIR:-/tmp}/gdbench-rootfs.XXXXXX")"
trap 'rm -rf "$rootfs"' EXIT
echo "debootstrap $SUITE (minbase + $PACKAGES) into $rootfs …"
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$rootfs" "$MIRROR" >"$rootfs.log" 2>&1 \
    || { tail -30 "$rootfs.log" >&2; rm -f "$rootfs.log"; exit 1; }
rm -f "$rootfs.log"

# Slim it the way Debian's own -slim images do: no docs, man pages, locales, apt lists or caches, and
# keep them out of anything installed later (the torch image's compiler).
cat >"$rootfs/etc/dpkg/dpkg.cfg.d/gdbench-slim" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
path-exclude /usr/lib/python3.*/config-3.*-x86_64-linux-gnu/libpython3.*.a
CFG
find "$rootfs/usr/share/doc" -mindepth 1 ! -name copyright ! -type d -delete 2>/dev/null || true
find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null || true
rm -rf "$rootfs"/usr/share/{man,info,locale,lintian}/* \
       "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/cache/debconf/*-old \
       "$rootfs"/var/log/* "$rootfs"/tmp/* \
       "$rootfs"/usr/lib/python3.*/config-3.*-x86_64-linux-gnu/libpython3.*.a
find "$rootfs/usr/lib/python3" "$rootfs/usr/lib/python$expect_python" -name __pycache__ -type d -prune -exec rm -rf {} + 2>/dev/null || true
: >"$rootfs/etc/machine-id"

python_version="$(chroot "$rootfs" python3 -c 'import platform; print(platform.python_version())')"
case "$python_version" in
    "$expect_python".*) ;;
    *) echo "error: $SUITE's python3 is $python_version, expected $expect_python.x" >&2; exit 1 ;;
esac
echo "importing $TAG (python $python_version) …"
tar --numeric-owner --xattrs -C "$rootfs" -c . | docker import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    --change "LABEL org.opencontainers.image.title=gdbench-base org.opencontainers.image.base.name=debian:$SUITE io.gdbench.python.version=$python_version" \
    - "$TAG" >/dev/null
docker image ls "$TAG"
