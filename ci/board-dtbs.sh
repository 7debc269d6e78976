#!/usr/bin/env bash
# Fetches Debian's arm64 kernel image package (bookworm-backports) and prints the
# directory holding its device tree blobs (about a thousand boards), for the board tests.
#
# The package comes from the archive the machine's apt configuration names (there is no
# default), through tools/debian-kernel.sh, as for ci/kernel-tests.sh.
#
# Usage: ci/board-dtbs.sh            prints the DTB directory on stdout, logs on stderr
# Environment:
#   DMABUF_DTB_CACHE   cache for the package and its DTBs (default ~/.cache/dmabuf-board-dtbs)
#   DMABUF_DTB_DEB     use this linux-image arm64 .deb instead of downloading one
set -euo pipefail
log() { echo "== board-dtbs: $*" >&2; }
die() { echo "board-dtbs: FAILED: $*" >&2; exit 1; }

CACHE=${DMABUF_DTB_CACHE:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/dmabuf-board-dtbs}
mkdir -p "$CACHE"
if [ -n "${DMABUF_DTB_DEB:-}" ]; then
    DEB=$DMABUF_DTB_DEB
else
    # shellcheck source=tools/debian-kernel.sh
    . "$(dirname "$0")/../tools/debian-kernel.sh"
    DEB=$(debian_kernel_deb "$CACHE" arm64) || die "no arm64 kernel package (set DMABUF_DTB_DEB to a linux-image arm64 .deb)"
fi
DIR=$CACHE/$(basename "$DEB" .deb)
if [ ! -f "$DIR/.done" ]; then
    log "extracting the DTBs of $(basename "$DEB")"
    rm -rf "$DIR" && mkdir -p "$DIR"
    dpkg-deb --fsys-tarfile "$DEB" | tar -x -C "$DIR" --wildcards './usr/lib/linux-image-*/*'
    touch "$DIR/.done"
fi
DTBS=$(ls -d "$DIR"/usr/lib/linux-image-* | head -1)
[ -d "$DTBS" ] || die "no usr/lib/linux-image-* in $(basename "$DEB")"
log "$(find "$DTBS" -name '*.dtb' | wc -l) DTBs in $DTBS"
echo "$DTBS"
