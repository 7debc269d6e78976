#!/usr/bin/env bash
# Runs in the guest (tools/guest): records every C program of crates/dmabuf-record/programs,
# broken and fixed, and runs each once more without the interposer, so the host can check
# that recording changed nothing of its output. Usage: record-programs.sh DMABUF PROGDIR OUTDIR
set -u
DMABUF=$1 PROGS=$2 OUT=$3
mkdir -p "$OUT"
cd "$OUT"
for p in "$PROGS"/*-broken "$PROGS"/*-fixed; do
    n=$(basename "$p")
    "$p" > "$n.plain.out" 2>&1
    echo "$?" > "$n.plain.rc"
    "$DMABUF" record --live -o "$n.dmabuf" --raw-log "$n.log" -- "$p" > "$n.out" 2> "$n.err"
    echo "$?" > "$n.rc"
done
