#!/usr/bin/env bash
# Fetches Debian's arm64 kernel image package (bookworm-backports) and prints the
# directory holding its device tree blobs (about a thousand boards), for the board tests.
#
# Like ci/kernel-tests.sh, the archive is the one the machine's apt configuration names
# (there is no default), fetched with the ordinary apt client through a private sources
# list and private state directories, leaving the machine's apt configuration alone.
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
    DEB=$(ls "$CACHE"/linux-image-*-arm64_*_arm64.deb 2>/dev/null | head -1 || true)
fi
if [ -z "$DEB" ]; then
    SOURCES=(/etc/apt/sources.list.d/*.sources)
    LISTS=(/etc/apt/sources.list /etc/apt/sources.list.d/*.list)
    URI=$(for f in "${SOURCES[@]}"; do [ -f "$f" ] && cat "$f"; done |
          awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i ~ /^https?:\/\/.*\/debian\/?$/) { print $i; exit } }')
    [ -n "$URI" ] || URI=$(for f in "${LISTS[@]}"; do [ -f "$f" ] && cat "$f"; done |
          awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^https?:\/\/.*\/debian\/?$/) { print $i; exit } }')
    [ -n "$URI" ] || die "no Debian archive in the machine's apt configuration: looked for a URIs: line in ${SOURCES[*]} and a deb line in ${LISTS[*]} whose URI ends in /debian; add one, or set DMABUF_DTB_DEB to a linux-image arm64 .deb"
    KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
    SIGNED="arch=arm64"
    [ -f "$KEYRING" ] && SIGNED="$SIGNED signed-by=$KEYRING"
    APTDIR=$CACHE/apt
    mkdir -p "$APTDIR/lists/partial" "$APTDIR/cache/archives/partial"
    echo "deb [$SIGNED] ${URI%/} bookworm-backports main" > "$APTDIR/sources.list"
    APTO=(-o "Dir::Etc::SourceList=$APTDIR/sources.list" -o Dir::Etc::SourceParts=/dev/null
          -o "Dir::State::Lists=$APTDIR/lists" -o "Dir::Cache=$APTDIR/cache"
          -o APT::Sandbox::User=root -o APT::Architecture=arm64 -o APT::Architectures::=arm64)
    log "arm64 kernel from ${URI%/} bookworm-backports"
    apt-get "${APTO[@]}" update -qq >/dev/null || die "apt-get update of bookworm-backports"
    PKG=$(apt-cache "${APTO[@]}" depends linux-image-arm64 2>/dev/null |
          awk '/Depends: linux-image-[0-9.]*\+deb12-arm64$/ { print $2; exit }')
    [ -n "$PKG" ] || die "no linux-image-*+deb12-arm64 in bookworm-backports"
    (cd "$CACHE" && apt-get "${APTO[@]}" download -qq "$PKG:arm64" >/dev/null) || die "download $PKG"
    DEB=$(ls "$CACHE"/"$PKG"_*_arm64.deb | head -1)
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
