#!/usr/bin/env bash
# Build the gdbench wheel that every image installs (with --no-deps: its dependencies come from the lock).
#
# Only the solvers package goes in: the orchestrator runs on the host, never in a container. The wheel is
# built from a clean copy of the sources (no stale build/ folder) with SOURCE_DATE_EPOCH set to the last
# commit's time, so the same sources give the same bytes and an unchanged tree keeps Docker's cache warm.
#
# Usage: scripts/build-wheel.sh DEST_DIR     (env: PYTHON, a python with setuptools and wheel)
set -euo pipefail
dest="$1"
python="${PYTHON:-python3}"
case "$python" in */*) python="$(cd "$(dirname "$python")" && pwd)/$(basename "$python")" ;; esac
root="$(cd "$(dirname "$0")/.." && pwd)"
src="$(mktemp -d)"
trap 'rm -rf "$src"' EXIT
cp "$root/pyproject.toml" "$src/"
if [ -f "$root/README.md" ]; then cp "$root/README.md" "$src/"; else : >"$src/README.md"; fi
(cd "$root" && tar -c --exclude=__pycache__ --exclude='*.pyc' solvers) | tar -x -C "$src"
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git -C "$root" log -1 --format=%ct 2>/dev/null || echo 315532800)}"
out="$(mktemp -d)"
trap 'rm -rf "$src" "$out"' EXIT
# setuptools' deprecation chatter is kept out of the build log unless the build fails.
(cd "$src" && "$python" -m pip wheel --quiet --no-deps --no-build-isolation --no-index -w "$out" . 2>"$out/log") \
    || { cat "$out/log" >&2; exit 1; }
mkdir -p "$dest"
new="$(ls "$out"/gdbench-*.whl)"
# Replace the wheel only when its bytes changed, so make and Docker see an unchanged file as unchanged.
if ! cmp -s "$new" "$dest/$(basename "$new")"; then
    rm -f "$dest"/gdbench-*.whl
    cp "$new" "$dest/"
fi
echo "$dest/$(basename "$new")"
