#!/usr/bin/env bash
# `dmabuf explore` with snapshots against re-execution (`--no-snapshots`), side by side in
# one run, on the pipeline of bench/scale.sh (a decoder writes a 64 KiB frame, the CPU
# reads it inside the sync ioctl's READ brackets) for each frame count:
#
#   bash bench/explore-snapshots.sh [FRAMES...]     (default: 10 30 100 300)
#
# Prints the explorer's own seconds (the JSON's `seconds`), its states and paths (the
# same both ways: the same search), the checkpoints forked, the choice points each search
# ran (`points`: replays included), and the speed-up.
set -euo pipefail
cd "$(dirname "$0")/.."
FRAMES=${*:-10 30 100 300}
cargo build --release -q -p dmabuf-cli
BIN=$PWD/target/release/dmabuf
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
# shellcheck source=bench/pipeline.sh
. bench/pipeline.sh

field() { sed -n "s/.*\"$1\": \\([0-9.e-]*\\).*/\\1/p" "$2" | head -1; }

printf '| %6s | %7s | %6s | %11s | %15s | %15s | %14s | %11s | %8s |\n' frames states paths checkpoints \
    "snapshot points" "re-exec points" "snapshots s" "re-exec s" speed-up
printf '|--------|---------|--------|-------------|-----------------|-----------------|----------------|-------------|----------|\n'
for f in $FRAMES; do
    pipeline 64KiB "$f" > "$W/p.dmabuf"
    "$BIN" explore --format json "$W/p.dmabuf" > "$W/snap.json"
    "$BIN" explore --no-snapshots --format json "$W/p.dmabuf" > "$W/again.json"
    s1=$(field seconds "$W/snap.json" | sed 's/e/*10^/')
    s2=$(field seconds "$W/again.json" | sed 's/e/*10^/')
    [ "$(field states "$W/snap.json")" = "$(field states "$W/again.json")" ] ||
        { echo "explore-snapshots: the two searches visited different states at $f frames" >&2; exit 1; }
    printf '| %6s | %7s | %6s | %11s | %15s | %15s | %14.2f | %11.2f | %7.1fx |\n' "$f" "$(field states "$W/snap.json")" \
        "$(field paths "$W/snap.json")" "$(field checkpoints "$W/snap.json")" "$(field points "$W/snap.json")" \
        "$(field points "$W/again.json")" "$(echo "$s1" | bc -l)" \
        "$(echo "$s2" | bc -l)" "$(echo "($s2) / ($s1)" | bc -l)"
done
