#!/usr/bin/env bash
# The cost of `dmabuf record`: a program that brackets every access (bench/frames.c of
# crates/dmabuf-record) run plain and recorded, three runs each, median; prints the loop
# time, the whole run's wall time and their ratios per workload. Target: at most 2x.
# Two settings: natively on this machine with memfd stand-ins for the dma-bufs (the
# interposer treats a memfd named dmabuf-record-standin as one), and on real dma-bufs
# from the system heap in the guest of tools/guest (TCG: emulated kernel entries make
# every fault dearer there than on hardware).
# Usage: bench/record-overhead.sh [FRAMES] [FRAME_BYTES]   (default 200 frames of 1 MiB)
set -euo pipefail
cd "$(dirname "$0")/.."
FRAMES=${1:-200}
BYTES=${2:-1048576}
cargo build -q --release -p dmabuf-cli -p dmabuf-record
W=$PWD/target/record-overhead
rm -rf "$W" && mkdir -p "$W"
gcc -O2 -g -Wall -Wextra -Werror -o "$W/frames" crates/dmabuf-record/bench/frames.c
cat > "$W/run.sh" <<GUEST
cd "$W"
for w in fill process peek; do
    for i in 1 2 3; do
        for mode in plain recorded; do
            t0=\$(date +%s%N)
            if [ \$mode = plain ]; then ./frames \$w $FRAMES $BYTES > out.\$mode; else
                $PWD/target/release/dmabuf record -o t.dmabuf -- ./frames \$w $FRAMES $BYTES > out.\$mode 2>/dev/null; fi
            t1=\$(date +%s%N)
            echo "\$w \$mode \$(sed -n 's/.*: \\([0-9.]*\\) s,.*/\\1/p' out.\$mode) \$(( (t1 - t0) / 1000000 ))"
        done
    done
done > results
GUEST
tools/guest -q --rw "$W" -- bash "$W/run.sh"
# Natively, with stand-ins.
sed -e "s|\./frames \\\$w $FRAMES $BYTES|./frames \\\$w $FRAMES $BYTES standin|g" -e 's|> results|> results.native|' \
    "$W/run.sh" > "$W/run-native.sh"
bash "$W/run-native.sh"

table() {
    printf '%-8s %12s %12s %7s %12s %12s %7s\n' workload "loop plain" "recorded" ratio "run plain" "recorded" ratio
    for w in fill process peek; do
        med() { awk -v w="$w" -v m="$2" -v c="$3" '$1 == w && $2 == m { print $c }' "$1" | sort -g | sed -n 2p; }
        lp=$(med "$1" plain 3) lr=$(med "$1" recorded 3) rp=$(med "$1" plain 4) rr=$(med "$1" recorded 4)
        awk -v w="$w" -v lp="$lp" -v lr="$lr" -v rp="$rp" -v rr="$rr" 'BEGIN {
            printf "%-8s %10.3f s %10.3f s %6.2fx %9d ms %9d ms %6.2fx\n", w, lp, lr, lr / (lp > 0 ? lp : 1e-6), rp, rr, rr / (rp > 0 ? rp : 1) }'
    done
}
echo "dmabuf record overhead: $FRAMES frames of $BYTES bytes, every access bracketed; median of 3"
echo
echo "natively, memfd stand-ins for the dma-bufs:"
table "$W/results.native"
echo
echo "in the qemu TCG guest, dma-bufs from the system heap (emulated: the ratios are the figures):"
table "$W/results"
