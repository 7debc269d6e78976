#!/usr/bin/env bash
# `dmabuf record` on a real kernel: boots Debian's 6.12 kernel under qemu with tools/guest
# (the host's root shared read-only), records the C programs of
# crates/dmabuf-record/programs (broken and fixed twins), and checks on the host that
#   - each program's output is the same recorded and not,
#   - the interposer saw the misuse its header names (`record`), and
#   - `dmabuf check --platform arm64-noncoherent` finds the kinds its header names (`check`)
#     (and `dmabuf explore` proves unbracketed-read's fixed trace, not its broken one),
#   - the kernel's own DMA API calls (its dma and dma_fence trace events) are the calls the
#     simulated framework's upstream maintenance makes for the trace, or differ for a
#     cause the comparison names (dmabuf record --kernel-reference);
# the same for dmabuf-linux's frame_share example, built against rustix's libc backend,
# and records a GStreamer pipeline from Debian's packages capturing from vivid with
# io-mode=dmabuf into filesink (ci/guest/record-gstreamer.sh): it must write its 30
# frames as it does unrecorded, its
# trace must hold the capture queue's frames and the CPU's bracketed reads, and the check
# on arm64-noncoherent must find no stale read, lost write or race.
# Installs gcc and GStreamer when missing; tools/guest installs qemu and busybox and
# fetches the kernel.
# Prints `N passed, M failed` and fails if any check fails.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
START=$(date +%s)
log() { echo "== guest-tests: $*"; }

need=()
command -v gcc >/dev/null || need+=(gcc libc6-dev)
command -v gst-launch-1.0 >/dev/null || need+=(gstreamer1.0-tools)
dpkg-query -W -f='${Status}' gstreamer1.0-plugins-good 2>/dev/null | grep -q "install ok installed" ||
    need+=(gstreamer1.0-plugins-good gstreamer1.0-plugins-base)
if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends "${need[@]}" >/dev/null 2>&1 ||
        { apt-get update -qq >/dev/null; apt-get install -y --no-install-recommends "${need[@]}" >/dev/null; }
fi

log "building dmabuf and the interposer"
cargo build -q -p dmabuf-cli -p dmabuf-record
DMABUF=$ROOT/target/debug/dmabuf
W=$ROOT/target/guest-tests
rm -rf "$W" && mkdir -p "$W/progs" "$W/out" "$W/gst"
for src in crates/dmabuf-record/programs/*.c; do
    n=$(basename "$src" .c)
    gcc -g -O2 -Wall -Wextra -Werror -o "$W/progs/$n-broken" "$src" -lpthread
    gcc -g -O2 -Wall -Wextra -Werror -DFIXED -o "$W/progs/$n-fixed" "$src" -lpthread
done

log "building frame_share against rustix's libc backend"
CARGO_TARGET_DIR=$ROOT/target/libc-rustix RUSTFLAGS="--cfg rustix_use_libc" \
    cargo build -q -p dmabuf-linux --example frame_share
cp "$ROOT/target/libc-rustix/debug/examples/frame_share" "$W/progs/"

log "recording in the guest"
tools/guest -q --append swiotlb=force --rw "$W" -- ci/guest/all.sh "$DMABUF" "$W"

PASSED=0 FAILED=0
pass() { PASSED=$((PASSED + 1)); }
fail() { FAILED=$((FAILED + 1)); echo "FAIL: $*"; }
# The kernel comparison: calls matched, and no difference without a named cause.
kref() {
    local last
    last=$(tail -1 "$2" 2>/dev/null)
    case "$last" in
        *"; 0 unexplained") pass; echo "   $1: ${last#kernel reference: }" ;;
        *) fail "$1: kernel reference: ${last:-missing}"; grep -A3 '^DIFFERENT' "$2" 2>/dev/null | head -20 ;;
    esac
}
# The finding kinds of `dmabuf check --format json` output, sorted, comma-separated.
kinds() { { grep -o '"kind": *"[a-z_]*"' "$1" || true; } | sed 's/.*"\([a-z_]*\)"$/\1/' | sort -u | paste -sd, -; }
# A header line's kinds, sorted, comma-separated.
expected() { sed -n "s/^ \* $2 $3:[[:space:]]*//p" "$1" | tr -d ' ' | tr ',' '\n' | { grep . || true; } | sort -u | paste -sd, -; }
for src in crates/dmabuf-record/programs/*.c; do
    n=$(basename "$src" .c)
    for twin in broken fixed; do
        p=$n-$twin o=$W/out/$n-$twin
        [ -f "$o.dmabuf" ] || { fail "$p: no trace"; continue; }
        if [ "$(cat "$o.rc")" = "$(cat "$o.plain.rc")" ] && cmp -s "$o.out" "$o.plain.out"; then pass
        else fail "$p: recorded output or status differs from the plain run"; fi
        want=$(expected "$src" record "$twin")
        got=$(sed -n 's/.* misuse what=\([a-z_]*\) .*/\1/p' "$o.log" | sort -u | paste -sd, -)
        if [ "$want" = "$got" ]; then pass; else fail "$p: interposer misuse [$got], expected [$want]"; fi
        want=$(expected "$src" check "$twin")
        set +e
        "$DMABUF" check --platform arm64-noncoherent --format json "$o.dmabuf" > "$o.check.json"
        rc=$?
        set -e
        got=$(kinds "$o.check.json")
        if [ "$rc" -le 1 ] && [ "$want" = "$got" ]; then pass
        else fail "$p: dmabuf check found [$got] (exit $rc), expected [$want]"; fi
        kref "$p" "$o.kref"
    done
done
# dmabuf explore proves the fixed program's trace and finds the broken one's bug.
set +e
"$DMABUF" explore --timeout 120 --replay-out "$W/out/unbracketed-read-broken.replay" \
    "$W/out/unbracketed-read-broken.dmabuf" > "$W/out/explore-broken.txt" 2>&1
rb=$?
"$DMABUF" explore --timeout 120 "$W/out/unbracketed-read-fixed.dmabuf" > "$W/out/explore-fixed.txt" 2>&1
rf=$?
set -e
if [ "$rb" = 1 ] && [ "$rf" = 0 ]; then pass
else fail "explore: broken exit $rb (want 1), fixed exit $rf (want 0): $(tail -2 "$W/out/explore-fixed.txt")"; fi

o=$W/out/frame_share
if [ "$(cat "$o.rc" 2>/dev/null)" = 0 ] && cmp -s "$o.out" "$o.plain.out"; then pass
else fail "frame_share: recorded output or status differs from the plain run"; fi
kref frame_share "$o.kref"
# The GStreamer pipeline.
g=$W/gst
if [ "$(cat "$g/gst.rc" 2>/dev/null)" = 0 ] && [ "$(cat "$g/gst.plain.rc" 2>/dev/null)" = 0 ] &&
   [ "$(cat "$g/gst.bytes")" = $((30 * 640 * 360 * 2)) ] && [ "$(cat "$g/gst.plain.bytes")" = "$(cat "$g/gst.bytes")" ]; then pass
else fail "gstreamer: the pipeline failed (plain $(cat "$g/gst.plain.rc" 2>/dev/null), recorded $(cat "$g/gst.rc" 2>/dev/null)): $(head -c 600 "$g/gst.err" 2>/dev/null)"; fi
frames=$(grep -c '^isp write buf[0-9]*\[.*signal v' "$g/gst.dmabuf" 2>/dev/null || true)
reads=$(grep -c '^cpu read buf' "$g/gst.dmabuf" 2>/dev/null || true)
brackets=$(grep -c '^sync buf[0-9]* start read' "$g/gst.dmabuf" 2>/dev/null || true)
if [ "${frames:-0}" -ge 30 ] && [ "${reads:-0}" -ge 25 ] && [ "$brackets" = "$reads" ]; then pass
else fail "gstreamer: the trace holds $frames queued frames, $reads CPU reads, $brackets READ brackets"; fi
set +e
"$DMABUF" check --platform arm64-noncoherent --format json "$g/gst.dmabuf" > "$g/check.json"
rc=$?
set -e
got=$(kinds "$g/check.json")
if [ "$rc" = 0 ] && [ -z "$got" ]; then pass; else fail "gstreamer: dmabuf check found [$got] (exit $rc)"; fi
# A board of one's own: arm64-noncoherent whose ISP addresses 32 bits, its CMA above 4 GiB.
"$DMABUF" platforms show arm64-noncoherent |
    sed -e '/^name = "isp"/,/^$/s/^dma_mask = 40/dma_mask = 32/' -e 's/^name = "arm64-noncoherent"/name = "isp32-board"/' \
    > "$g/isp32-board.toml"
set +e
"$DMABUF" check --platform "$g/isp32-board.toml" --format json "$g/gst.dmabuf" > "$g/check-isp32.json"
rc=$?
set -e
got=$(kinds "$g/check-isp32.json")
# Upstream attaches without looking at the mask; the finding names what its map then does.
if [ "$rc" = 1 ] && [ "$got" = attach_unsafe ]; then pass
else fail "gstreamer on isp32-board: dmabuf check found [$got] (exit $rc), expected [attach_unsafe]"; fi

echo "guest-tests: wall time $(( $(date +%s) - START )) s"
echo "guest-tests: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
