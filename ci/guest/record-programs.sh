#!/usr/bin/env bash
# Runs in the guest (tools/guest, booted with swiotlb=force so the kernel traces its
# syncs): records every C program of crates/dmabuf-record/programs, broken and fixed, with
# the kernel's own DMA API calls as the reference, and runs each once more without the
# interposer, so the host can check that recording changed nothing of its output; then
# frame_share (built against rustix's libc backend, so its system calls go through libc).
# Usage: record-programs.sh DMABUF PROGDIR OUTDIR
set -u
DMABUF=$1 PROGS=$2 OUT=$3
mkdir -p "$OUT"
cd "$OUT"
for p in "$PROGS"/*-broken "$PROGS"/*-fixed "$PROGS"/frame_share; do
    [ -x "$p" ] || continue
    n=$(basename "$p")
    "$p" > "$n.plain.out" 2>&1
    echo "$?" > "$n.plain.rc"
    "$DMABUF" record --live -o "$n.dmabuf" --raw-log "$n.log" --kernel-reference "$n.kref" -- "$p" > "$n.out" 2> "$n.err"
    echo "$?" > "$n.rc"
done
