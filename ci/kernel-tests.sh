#!/usr/bin/env bash
# Runs the dmabuf-linux device tests on a real kernel.
#
# CI machines have no /dev/dma_heap or /dev/udmabuf, so this boots Debian's
# bookworm-backports 6.12 kernel (system heap, udmabuf and sync_file built in, vgem as a
# module) under qemu, software emulation, with a busybox initramfs holding the static
# test binaries, and fails if any guest test fails or the guest does not report. Where the
# machine itself has the devices, the same binaries also run natively.
#
# Usage: ci/kernel-tests.sh [--bench] [--no-native]
#   --bench      also run the guard_write benchmark in the guest and print its figures
#   --no-native  do not run natively even if /dev/dma_heap exists
# Environment:
#   DMABUF_KERNEL_CACHE   cache for the kernel package (default ~/.cache/dmabuf-kernel-tests)
#   DMABUF_KERNEL_DEB     use this linux-image .deb instead of downloading one
#   DMABUF_QEMU_TIMEOUT   seconds before the guest is declared hung (default 300)
#   DMABUF_QEMU_ACCEL     qemu accelerator (default tcg; kvm where /dev/kvm works)
#
# Installs what it needs (qemu-system-x86, busybox-static) with apt-get; the kernel is
# fetched from the Debian archive the machine's apt configuration names (there is no
# default) by tools/debian-kernel.sh, leaving the machine's apt configuration alone.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
START=$(date +%s.%N)

BENCH=0
NATIVE=1
for arg in "$@"; do
    case "$arg" in
        --bench) BENCH=1 ;;
        --no-native) NATIVE=0 ;;
        *) echo "usage: $0 [--bench] [--no-native]" >&2; exit 2 ;;
    esac
done

log() { echo "== kernel-tests: $*"; }
elapsed() { awk -v s="$START" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }'; }
die() { echo "kernel-tests: FAILED: $*" >&2; echo "kernel-tests: wall time $(elapsed) s" >&2; exit 1; }

# --- tools -----------------------------------------------------------------------------
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
# The initramfs needs a statically linked busybox (with its cpio applet).
dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q "install ok installed" ||
    need+=(busybox-static)
command -v xz >/dev/null || need+=(xz-utils)
command -v gzip >/dev/null || need+=(gzip)
if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get install -y --no-install-recommends "${need[@]}" >/dev/null 2>&1 || {
        $SUDO apt-get update -qq >/dev/null
        $SUDO apt-get install -y --no-install-recommends "${need[@]}" >/dev/null
    }
fi
BUSYBOX=/bin/busybox
log "tools ready ($(elapsed) s)"

# --- kernel ----------------------------------------------------------------------------
CACHE=${DMABUF_KERNEL_CACHE:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/dmabuf-kernel-tests}
mkdir -p "$CACHE"
if [ -n "${DMABUF_KERNEL_DEB:-}" ]; then
    DEB=$DMABUF_KERNEL_DEB
else
    # shellcheck source=tools/debian-kernel.sh
    . "$(dirname "$0")/../tools/debian-kernel.sh"
    DEB=$(debian_kernel_deb "$CACHE" amd64) || die "no kernel package (set DMABUF_KERNEL_DEB to a linux-image .deb)"
    log "kernel package $(basename "$DEB")"
fi
KDIR=$CACHE/$(basename "$DEB" .deb)
if [ ! -f "$KDIR/.done" ]; then
    log "extracting $(basename "$DEB")"
    rm -rf "$KDIR" && mkdir -p "$KDIR"
    dpkg-deb --fsys-tarfile "$DEB" | tar -x -C "$KDIR" --wildcards \
        './boot/*' './lib/modules/*/kernel/drivers/gpu/drm/*' './lib/modules/*/modules.builtin'
    touch "$KDIR/.done"
fi
VMLINUZ=$(ls "$KDIR"/boot/vmlinuz-* | head -1)
CONFIG=$(ls "$KDIR"/boot/config-* | head -1)
MODDIR=$(ls -d "$KDIR"/lib/modules/* | head -1)
log "kernel $(basename "$VMLINUZ") ($(elapsed) s)"

# What the issue says of this kernel, checked against its configuration.
cfg() { grep -E "^(# )?$1[= ]" "$CONFIG" | sed 's/^# \(.*\) is not set/\1=n/' | head -1 | grep .; }
for opt in CONFIG_DMABUF_HEAPS CONFIG_DMABUF_HEAPS_SYSTEM CONFIG_DMABUF_HEAPS_CMA CONFIG_UDMABUF \
           CONFIG_SYNC_FILE CONFIG_SW_SYNC CONFIG_DRM_VGEM; do
    echo "   $(cfg "$opt" || echo "$opt absent")"
done
[ "$(cfg CONFIG_DMABUF_HEAPS_SYSTEM)" = CONFIG_DMABUF_HEAPS_SYSTEM=y ] || die "kernel lacks the system heap"
[ "$(cfg CONFIG_UDMABUF)" = CONFIG_UDMABUF=y ] || die "kernel lacks built-in udmabuf"
[ "$(cfg CONFIG_SYNC_FILE)" = CONFIG_SYNC_FILE=y ] || die "kernel lacks sync_file"
[ "$(cfg CONFIG_DRM_VGEM)" = CONFIG_DRM_VGEM=m ] || die "kernel lacks the vgem module"
EXPECT_SW_SYNC=0
[ "$(cfg CONFIG_SW_SYNC)" = CONFIG_SW_SYNC=y ] && EXPECT_SW_SYNC=1

# --- static test binaries --------------------------------------------------------------
TARGET=x86_64-unknown-linux-gnu
export CARGO_TARGET_DIR=${DMABUF_STATIC_TARGET_DIR:-$ROOT/target/kernel-static}
export RUSTFLAGS="-C target-feature=+crt-static"
log "building static test binaries"
artifacts() { grep -o '"executable":"[^"]*"' | sed 's/"executable":"\(.*\)"/\1/'; }
TESTS=$(cargo test -p dmabuf-linux --release --target "$TARGET" --no-run --lib --tests \
        --message-format=json-render-diagnostics | artifacts) || die "build of the tests"
EXAMPLES=$(cargo build -p dmabuf-linux --release --target "$TARGET" --example frame_share \
        --message-format=json-render-diagnostics | artifacts) || die "build of the example"
BENCHES=$(cargo build -p dmabuf-linux --release --target "$TARGET" --bench guard_write \
        --message-format=json-render-diagnostics | artifacts) || die "build of the benchmark"
unset RUSTFLAGS
[ -n "$TESTS" ] || die "no test binary built"
log "built ($(elapsed) s)"

# --- native run, where the machine has the devices -------------------------------------
NATIVE_FAILED=0
if [ "$NATIVE" = 1 ] && [ -e /dev/dma_heap ]; then
    log "this machine has /dev/dma_heap: running natively too"
    $SUDO modprobe vgem 2>/dev/null || true
    for t in $TESTS; do
        "$t" --include-ignored --test-threads=1 || NATIVE_FAILED=$((NATIVE_FAILED + 1))
    done
    for e in $EXAMPLES; do "$e" || NATIVE_FAILED=$((NATIVE_FAILED + 1)); done
fi

# --- initramfs -------------------------------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/dmabuf-kernel-tests.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
RD=$WORK/root
mkdir -p "$RD"/{bin,dev,proc,sys,tmp,etc,modules,tests,examples,benches}
cp "$BUSYBOX" "$RD/bin/busybox"
install -m 0755 "$ROOT/ci/kernel/init" "$RD/init"
echo "DMABUF_EXPECT_SW_SYNC=$EXPECT_SW_SYNC" > "$RD/etc/dmabuf-env"
for t in $TESTS; do
    # target/.../deps/heap-0123abcd -> heap
    cp "$t" "$RD/tests/$(basename "$t" | sed 's/-[0-9a-f]\{16\}$//')"
done
for e in $EXAMPLES; do cp "$e" "$RD/examples/"; done
if [ "$BENCH" = 1 ]; then
    for b in $BENCHES; do cp "$b" "$RD/benches/$(basename "$b" | sed 's/-[0-9a-f]\{16\}$//')"; done
fi

# vgem and its dependencies, in load order, decompressed (from each module's depends=).
declare -A SEEN=()
ORDER=()
modpath() { find "$MODDIR" -name "$1.ko.xz" -o -name "$(echo "$1" | tr _ -).ko.xz" | head -1; }
add_module() {
    local m=$1 f deps d
    [ -n "${SEEN[$m]:-}" ] && return 0
    SEEN[$m]=1
    f=$(modpath "$m")
    [ -n "$f" ] || die "module $m not found under $MODDIR"
    deps=$(xz -dc "$f" | grep -a -o 'depends=[A-Za-z0-9_,-]*' | head -1 | sed 's/depends=//; s/,/ /g')
    for d in $deps; do add_module "$d"; done
    xz -dc "$f" > "$RD/modules/$m.ko"
    ORDER+=("$m")
}
add_module vgem
printf '%s\n' "${ORDER[@]}" > "$RD/modules/order"
log "modules: ${ORDER[*]}"
(cd "$RD" && find . | "$BUSYBOX" cpio -o -H newc 2>/dev/null) | gzip -1 > "$WORK/initrd.gz"
log "initramfs $(du -h "$WORK/initrd.gz" | cut -f1) ($(elapsed) s)"

# --- boot ------------------------------------------------------------------------------
MODE=test
[ "$BENCH" = 1 ] && MODE=bench
ACCEL=${DMABUF_QEMU_ACCEL:-tcg}
log "booting under qemu ($ACCEL)"
GUEST=$WORK/guest.log
BOOT=$(date +%s.%N)
set +e
timeout "${DMABUF_QEMU_TIMEOUT:-300}" qemu-system-x86_64 -nographic -no-reboot -m 1G -smp 1 \
    -accel "$ACCEL" -nic none -kernel "$VMLINUZ" -initrd "$WORK/initrd.gz" \
    -append "console=ttyS0 panic=-1 quiet loglevel=3 dmabuf.mode=$MODE" \
    </dev/null 2>&1 | tr -d '\r' | sed 's/\x1b\[[0-9;?]*[A-Za-z]//g; s/\x1bc//g' | tee "$GUEST"
QEMU_RC=${PIPESTATUS[0]}
set -e
BOOT_TIME=$(awk -v s="$BOOT" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')

# --- verdict ---------------------------------------------------------------------------
grep -q '^DMABUF-GUEST-DONE' "$GUEST" || die "the guest did not report (qemu exit $QEMU_RC)"
grep '^DMABUF-GUEST-INSMOD-FAILED' "$GUEST" && die "a module did not load"
BAD=$(awk '/^DMABUF-GUEST-EXIT / && $3 != 0 { print $2 }' "$GUEST")
RUNS=$(grep -c '^DMABUF-GUEST-EXIT ' "$GUEST")
read -r PASSED FAILED IGNORED < <(awk '
    /^test result: / {
        for (i = 1; i <= NF; i++) {
            if ($(i+1) ~ /^passed/) p += $i
            if ($(i+1) ~ /^failed/) f += $i
            if ($(i+1) ~ /^ignored/) g += $i
        }
    }
    END { print p + 0, f + 0, g + 0 }' "$GUEST")
echo
grep '^DMABUF-GUEST-FACTS' "$GUEST" | sed 's/^DMABUF-GUEST-FACTS/guest:/' || true
grep '^guard_write' "$GUEST" || true
echo "guest: $RUNS programs run, boot and run took $BOOT_TIME s"
echo "kernel-tests: wall time $(elapsed) s"
if [ -n "$BAD" ] || [ "$FAILED" -ne 0 ] || [ "$IGNORED" -ne 0 ] || [ "$NATIVE_FAILED" -ne 0 ]; then
    [ -n "$BAD" ] && echo "kernel-tests: failing programs: $(echo $BAD)"
    [ "$IGNORED" -ne 0 ] && echo "kernel-tests: $IGNORED tests were ignored in the guest"
    [ "$NATIVE_FAILED" -ne 0 ] && echo "kernel-tests: $NATIVE_FAILED programs failed natively"
    echo "kernel-tests: $PASSED passed, $((FAILED > 0 ? FAILED : 1)) failed"
    exit 1
fi
echo "kernel-tests: $PASSED passed, 0 failed"
