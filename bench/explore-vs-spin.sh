#!/usr/bin/env bash
# The explorer next to SPIN on the same litmus problems (the three of the issue and an eight-line one), in one run: states
# explored, states per second and wall time for both tools. dmabuf's states/s is over its
# wall time (process start included, as pan's is); "search ms" is the explorer's own
# clock (the JSON's `seconds`: the search without process start and parsing the input).
#
#   bash bench/explore-vs-spin.sh
#
# Installs SPIN (Debian package `spin`) and gcc when they are missing. SPIN's time is
# split into generating and compiling the verifier (once per model) and running it.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v spin >/dev/null || ! command -v gcc >/dev/null; then
    sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq && $sudo apt-get install -y -qq spin gcc >/dev/null
fi
cargo build -q --release -p dmabuf-cli
dmabuf="$PWD/target/release/dmabuf"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp bench/spin/*.pml "$work/"

# The clock is bash's own: a `date` process at each end would add its start-up (about a
# millisecond each) to every wall time.
export LC_ALL=C
printf '%-30s | %-8s %8s %12s %10s %10s | %-8s %8s %12s %10s %12s\n' problem dmabuf states states/s "wall ms" "search ms" spin states states/s "pan ms" "build ms"
for p in cpu-to-dev-bracketed cpu-to-dev-no-end lost-write-late-end cpu-to-dev-bracketed-8-lines; do
    # dmabuf explore, best of 5 runs (the process start is part of the wall time).
    best=""
    search=""
    for _ in 1 2 3 4 5; do
        t0=$EPOCHREALTIME
        json=$("$dmabuf" explore --format json --replay-out "$work/$p.replay" "scenarios/litmus/$p.dmabuf" || true)
        t1=$EPOCHREALTIME
        ms=$(echo "($t1 - $t0) * 1000" | bc -l)
        if [ -z "$best" ] || [ "$(echo "$ms < $best" | bc -l)" = 1 ]; then best=$ms; fi
        own=$(echo "$json" | sed -n 's/.*"seconds": \([0-9.e-]*\).*/\1/p')
        own=$(echo "$own * 1000" | sed 's/e/*10^/' | bc -l)
        if [ -z "$search" ] || [ "$(echo "$own < $search" | bc -l)" = 1 ]; then search=$own; fi
    done
    verdict=$(echo "$json" | sed -n 's/.*"verdict": "\([a-z]*\)".*/\1/p')
    states=$(echo "$json" | sed -n 's/.*"states": \([0-9]*\).*/\1/p')
    # SPIN: generate and compile the verifier, then run it (best of 5).
    (cd "$work" && t0=$EPOCHREALTIME && spin -a "$p.pml" >/dev/null && gcc -O2 -DSAFETY -o "pan-$p" pan.c 2>/dev/null && t1=$EPOCHREALTIME \
        && echo "($t1 - $t0) * 1000" | bc -l >"build-$p")
    sbest=""
    for _ in 1 2 3 4 5; do
        t0=$EPOCHREALTIME
        out=$(cd "$work" && "./pan-$p" 2>&1 || true)
        t1=$EPOCHREALTIME
        ms=$(echo "($t1 - $t0) * 1000" | bc -l)
        if [ -z "$sbest" ] || [ "$(echo "$ms < $sbest" | bc -l)" = 1 ]; then sbest=$ms; fi
    done
    sstates=$(echo "$out" | sed -n 's/^ *\([0-9]*\) states, stored.*/\1/p')
    serr=$(echo "$out" | sed -n 's/.*errors: \([0-9]*\).*/\1/p')
    sverdict=$([ "$serr" = 0 ] && echo proved || echo counterexample)
    printf '%-30s | %-8s %8s %12.0f %10.2f %10.2f | %-8s %8s %12.0f %10.2f %12.1f\n' "$p" "${verdict:0:8}" "$states" \
        "$(echo "$states / ($best / 1000)" | bc -l)" "$best" "$search" "${sverdict:0:8}" "$sstates" \
        "$(echo "$sstates / ($sbest / 1000)" | bc -l)" "$sbest" "$(cat "$work/build-$p")"
done
