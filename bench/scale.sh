#!/usr/bin/env bash
# Check and explore time and peak memory against buffer size and frame count, for one
# pipeline: a video decoder writes a frame into a system-heap buffer on a board whose
# devices do not snoop, the CPU reads it through mmap inside the sync ioctl's brackets.
#
#   bench/scale.sh [SIZES] [FRAMES]     e.g. bench/scale.sh "1MiB 16MiB" "10 100"
#
# Prints one row per run: what, size, frames, verdict or exit status, seconds, peak RSS.
# Needs GNU time (/usr/bin/time). Each run is bounded by DMABUF_SCALE_TIMEOUT seconds
# (default 300); explore by its own --timeout of the same length.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=${1:-"1MiB 16MiB 64MiB 256MiB 1GiB"}
FRAMES=${2:-"1 10 100 1000 10000"}
LIMIT=${DMABUF_SCALE_TIMEOUT:-300}
[ -x /usr/bin/time ] || { echo "bench/scale.sh: needs GNU time at /usr/bin/time (Debian package: time)" >&2; exit 2; }
cargo build --release -q -p dmabuf-cli
BIN=$PWD/target/release/dmabuf
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT

# shellcheck source=bench/pipeline.sh
. bench/pipeline.sh

run() { # WHAT SIZE FRAMES
    local f=$W/p-$2-$3.dmabuf out=$W/out rc
    pipeline "$2" "$3" > "$f"
    set +e
    if [ "$1" = check ]; then
        timeout "$LIMIT" /usr/bin/time -f '%e %M' -o "$W/time" "$BIN" check "$f" > "$out" 2>&1
    else
        timeout "$((LIMIT + 30))" /usr/bin/time -f '%e %M' -o "$W/time" "$BIN" explore --timeout "$LIMIT" "$f" > "$out" 2>&1
    fi
    rc=$?
    set -e
    local verdict
    case "$1/$rc" in
        check/0) verdict="no findings" ;;
        explore/0) verdict=proved ;;
        explore/3) verdict=inconclusive ;;
        */124) verdict="killed after ${LIMIT}s" ;;
        *) verdict="exit $rc" ;;
    esac
    if [ "$rc" = 124 ] || [ ! -s "$W/time" ]; then
        printf '| %-7s | %6s | %6s | %-16s | %8s | %9s |\n' "$1" "$2" "$3" "$verdict" "-" "-"
    else
        read -r secs kb < <(tail -1 "$W/time")
        printf '| %-7s | %6s | %6s | %-16s | %8s | %6d MB |\n' "$1" "$2" "$3" "$verdict" "$secs" $((kb / 1024))
    fi
}

printf '| %-7s | %6s | %6s | %-16s | %8s | %9s |\n' command size frames verdict seconds "peak RSS"
printf '|---------|--------|--------|------------------|----------|-----------|\n'
for what in check explore; do
    for s in $SIZES; do run "$what" "$s" 2; done
    for n in $FRAMES; do run "$what" 64KiB "$n"; done
done
