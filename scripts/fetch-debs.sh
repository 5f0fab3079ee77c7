#!/usr/bin/env bash
# Download the Debian packages a framework's image needs beyond the base into its debhouse.
#
# apt resolves them inside a container of the base image itself, so the set is exactly what that base
# lacks and its versions match the base's libc (Debian bookworm moves only by point releases; the base is
# built once and cached, and this folder is refilled whenever the base image changes). apt checks every
# .deb against Debian's signed indexes; manifest.txt records name, version and sha256. The image build
# then installs these offline with dpkg -i.
#
# Usage: scripts/fetch-debs.sh BASE_IMAGE PACKAGES_FILE DEST
set -euo pipefail
base="$1"; list="$2"; dest="$3"
base_id="$(docker image inspect -f '{{.Id}}' "$base")"
if [ -f "$dest/manifest.txt" ] && [ "$(cat "$dest/.base-id" 2>/dev/null)" = "$base_id" ] \
        && [ "$dest/manifest.txt" -nt "$list" ]; then
    echo "debhouse $dest: up to date for $base"
    exit 0
fi
packages="$(grep -v '^#' "$list" | xargs)"
rm -rf "$dest"
mkdir -p "$dest"
docker run --rm -i -v "$(cd "$dest" && pwd):/debs" -w /debs "$base" sh -eu -s "$(id -u):$(id -g)" $packages <<'SH'
owner="$1"; shift
apt-get update -qq >/dev/null
# What apt would install on this base: the exact name=version set, nothing the base already has.
want="$(apt-get install -s -qq --no-install-recommends "$@" | sed -n 's/^Inst \([^ ]*\) (\([^ ]*\) .*/\1=\2/p')"
apt-get download -qq $want 2>&1 | grep -v 'unsandboxed' >&2 || true
for deb in *.deb; do
    printf '%s %s %s\n' "$(dpkg-deb -f "$deb" Package)" "$(dpkg-deb -f "$deb" Version)" "$(sha256sum "$deb" | cut -d' ' -f1)"
done >manifest.txt
[ "$(wc -l <manifest.txt)" = "$(echo "$want" | wc -w)" ] || { echo "apt downloaded fewer packages than it resolved" >&2; exit 1; }
chown -R "$owner" /debs
SH
echo "$base_id" >"$dest/.base-id"
echo "debhouse $dest: $(wc -l <"$dest/manifest.txt") packages, $(du -sh "$dest" | cut -f1) for $base"
