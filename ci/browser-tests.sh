#!/usr/bin/env bash
# The HTML reports in a real browser: Debian's chromium, headless.
#
# Writes `dmabuf check --html` for every example scenario (one page per file, and one
# page of all of them), `dmabuf explore --html` for a litmus test whose counterexample has
# a hardware move and for two examples, two long runs (thousands of steps, in a `repeat`
# and in a row), and `dmabuf bench --html`; opens each page once in headless chromium,
# with its DOM dumped after the scripts ran, a screenshot, and the console on stderr.
# Each page must:
# - write nothing to the console (the report logs nothing, so any message is an error or
#   an uncaught exception);
# - be drawn: the body carries data-ready (set by the script's last statement), and the
#   elements of its kind are there (timeline, moments, line states and scenario for a run;
#   the charts and targets for the benchmark);
# - look like something: the screenshot's pixels are not all one colour.
# Prints each page's size and render time (from the start of the load until drawn), then
# `N passed, M failed`, and fails if any check fails.
#
# Installs chromium and python3 with apt-get when missing (.ci/run installs chromium too,
# on a fresh machine).
# DMABUF_BROWSER_SHOTS=DIR keeps the screenshots there.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
log() { echo "== browser-tests: $*"; }

need=()
command -v chromium >/dev/null || need+=(chromium)
# The screenshots are read with python3's standard library.
command -v python3 >/dev/null || need+=(python3)
if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends "${need[@]}" >/dev/null 2>&1 ||
        { apt-get update -qq >/dev/null; apt-get install -y --no-install-recommends "${need[@]}" >/dev/null; }
fi

log "building dmabuf"
cargo build -q -p dmabuf-cli
DMABUF=$ROOT/target/debug/dmabuf
W=$ROOT/target/browser-tests
rm -rf "$W" && mkdir -p "$W/pages" "$W/out" "$W/profile"

pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }

# Exit 0 or 1 (findings) is a report; 2 is not.
make_page() {
    local out=$1
    shift
    local rc=0
    "$@" >"$W/out/$(basename "$out").stdout" 2>"$W/out/$(basename "$out").stderr" || rc=$?
    if [ "$rc" -gt 1 ] || [ ! -s "$out" ]; then
        bad "$(basename "$out"): \`$*\` exited $rc: $(head -c 400 "$W/out/$(basename "$out").stderr")"
        return 1
    fi
}

log "writing the reports"
pages=()
for f in scenarios/*.dmabuf; do
    n=$(basename "$f" .dmabuf)
    make_page "$W/pages/check-$n.html" "$DMABUF" check --html "$W/pages/check-$n.html" "$f" && pages+=("$W/pages/check-$n.html")
done
make_page "$W/pages/check-all.html" "$DMABUF" check --html "$W/pages/check-all.html" scenarios/*.dmabuf &&
    pages+=("$W/pages/check-all.html")
for f in scenarios/litmus/stray-dirty-line scenarios/keeps-mapping-broken scenarios/keeps-mapping-fixed; do
    n=$(basename "$f")
    make_page "$W/pages/explore-$n.html" "$DMABUF" explore --html "$W/pages/explore-$n.html" \
        --replay-out "$W/out/$n.replay" "$f.dmabuf" && pages+=("$W/pages/explore-$n.html")
done
# Long runs: a `repeat` of thousands of iterations (folded), and thousands of steps in a
# row (drawn up to the recording's cap).
{
    printf 'platform arm64-noncoherent\nbuffer fb size=64KiB heap=system\nattach display fb\nmmap fb\nmap display fb to_device\n'
    printf 'repeat 5000 {\n  sync fb start write\n  cpu write fb = frame\n  sync fb end write\n  display read fb expect frame\n}\n'
} >"$W/long-repeat.dmabuf"
{
    printf 'platform arm64-noncoherent\nbuffer fb size=4KiB heap=system\nmmap fb\n'
    for _ in $(seq 1500); do printf 'sync fb start write\ncpu write fb = frame\nsync fb end write\n'; done
} >"$W/long-steps.dmabuf"
for n in long-repeat long-steps; do
    make_page "$W/pages/check-$n.html" "$DMABUF" check --html "$W/pages/check-$n.html" "$W/$n.dmabuf" &&
        pages+=("$W/pages/check-$n.html")
done
make_page "$W/pages/bench.html" "$DMABUF" bench --frames 2 --html "$W/pages/bench.html" && pages+=("$W/pages/bench.html")

# Whether a PNG's pixels are not all one colour, and the share of the commonest one
# (the standard library's zlib only: no imaging package to install).
cat >"$W/png.py" <<'EOF'
import struct, sys, zlib
from collections import Counter

def pixels(path):
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, hdr = 8, b"", None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            hdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    w, h, depth, color, _, _, interlace = hdr
    assert depth == 8 and interlace == 0 and color in (2, 6), f"unexpected PNG format {hdr}"
    bpp = 3 if color == 2 else 4
    raw, stride = zlib.decompress(idat), w * bpp
    prev, out = bytearray(stride), []
    for y in range(h):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if f == 1: line[i] = (line[i] + a) & 255
            elif f == 2: line[i] = (line[i] + b) & 255
            elif f == 3: line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        out.append(bytes(line))
        prev = line
    return w, h, bpp, out

w, h, bpp, rows = pixels(sys.argv[1])
counts = Counter(r[i:i + 3] for r in rows[::4] for i in range(0, len(r), bpp * 4))
top = counts.most_common(1)[0][1] / sum(counts.values())
print(f"{len(counts)} {top:.3f}")
EOF

log "opening ${#pages[@]} reports in $(chromium --version 2>/dev/null | head -1)"
for p in "${pages[@]}"; do
    n=$(basename "$p" .html)
    rc=0
    timeout 60 chromium --headless --no-sandbox --disable-gpu --user-data-dir="$W/profile" --hide-scrollbars \
        --window-size=1400,1000 --enable-logging=stderr --v=0 \
        --dump-dom --screenshot="$W/out/$n.png" "file://$p" >"$W/out/$n.dom" 2>"$W/out/$n.log" || rc=$?
    if [ "$rc" -ne 0 ]; then
        bad "$n: chromium exited $rc: $(tail -c 400 "$W/out/$n.log")"
        continue
    fi
    # Every console message (console.* and uncaught exceptions) is logged as CONSOLE.
    if grep -q ":CONSOLE" "$W/out/$n.log"; then
        bad "$n: console: $(grep ":CONSOLE" "$W/out/$n.log" | head -3)"
    else ok; fi
    if grep -q '<body[^>]* data-ready="1"' "$W/out/$n.dom"; then ok; else bad "$n: the script did not finish drawing"; fi
    case $n in
    bench) want=('id="bytes-chart"' 'id="ratio-chart"' 'class="target"' 'class="targets"' '<table') ;;
    *) want=('class="timeline"' 'm-step moment' 'class="source"' 'st-' 'lane-label') ;;
    esac
    for e in "${want[@]}"; do
        if grep -q -- "$e" "$W/out/$n.dom"; then ok; else bad "$n: no \`$e\` in the drawn page"; fi
    done
    case $n in
    # The counterexample's hardware moves, in their lane.
    explore-stray-dirty-line) if grep -q 'm-hw moment' "$W/out/$n.dom"; then ok; else bad "$n: no hardware move drawn"; fi ;;
    # A folded loop is drawn to its end, under the recording's caps.
    check-long-repeat) if grep -q 'recording stopped' "$W/out/$n.dom"; then bad "$n: the recording stopped"; else ok; fi ;;
    esac
    case $n in
    *-broken | check-all) if grep -q 'hl-main' "$W/out/$n.dom"; then ok; else bad "$n: no highlighted finding"; fi ;;
    esac
    if [ -s "$W/out/$n.png" ] && read -r colours top < <(python3 "$W/png.py" "$W/out/$n.png") &&
        [ "$colours" -ge 8 ] && awk -v t="$top" 'BEGIN { exit !(t < 0.98) }'; then
        ok
    else
        bad "$n: the screenshot is blank (${colours:-?} colours, the commonest ${top:-?} of the pixels)"
    fi
    ms=$(grep -o 'data-render-ms="[0-9]*"' "$W/out/$n.dom" | grep -o '[0-9]*' || echo "?")
    printf '   %-44s %9d bytes, drawn %s ms after the load began\n' "$n" "$(stat -c %s "$p")" "$ms"
done
if [ -n "${DMABUF_BROWSER_SHOTS:-}" ]; then
    mkdir -p "$DMABUF_BROWSER_SHOTS" && cp "$W"/out/*.png "$DMABUF_BROWSER_SHOTS"/
fi
largest=$(ls -S "$W"/pages/*.html | head -1)
log "largest report: $(basename "$largest"), $(stat -c %s "$largest") bytes"
echo "browser-tests: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
