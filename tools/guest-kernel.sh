# Sourced by tools/guest: the tools, the kernel and its modules for a qemu guest.
#
# guest_tools            installs qemu-system-x86 and busybox-static when missing
# guest_kernel [DEB]     fetches bookworm-backports' linux-image (or uses DEB), extracts it
#                        once into the cache; sets VMLINUZ, CONFIG and MODDIR
# guest_modules DIR M... copies modules M and their dependencies (from each module's
#                        depends=), decompressed, into DIR, with their load order in DIR/order
#
# Callers define log and die.

guest_tools() {
    local sudo="" need=()
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
    dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q "install ok installed" ||
        need+=(busybox-static)
    command -v xz >/dev/null || need+=(xz-utils)
    command -v cpio >/dev/null || true
    if [ ${#need[@]} -gt 0 ]; then
        log "installing ${need[*]}"
        export DEBIAN_FRONTEND=noninteractive
        $sudo apt-get install -y --no-install-recommends "${need[@]}" >/dev/null 2>&1 || {
            $sudo apt-get update -qq >/dev/null
            $sudo apt-get install -y --no-install-recommends "${need[@]}" >/dev/null
        } || die "could not install ${need[*]}"
    fi
}

guest_kernel() {
    local deb=${1:-} cache kdir
    cache=${DMABUF_KERNEL_CACHE:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/dmabuf-kernel-tests}
    mkdir -p "$cache"
    if [ -z "$deb" ]; then
        # shellcheck source=tools/debian-kernel.sh
        . "$(dirname "${BASH_SOURCE[0]}")/debian-kernel.sh"
        deb=$(debian_kernel_deb "$cache" amd64) || die "no kernel package (pass --kernel-deb)"
    fi
    [ -f "$deb" ] || die "no such kernel package: $deb"
    kdir=$cache/guest-$(basename "$deb" .deb)
    if [ ! -f "$kdir/.done" ]; then
        log "extracting $(basename "$deb")"
        rm -rf "$kdir" && mkdir -p "$kdir"
        dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$kdir" --wildcards './boot/*' './lib/modules/*' ||
            die "extraction of $deb"
        touch "$kdir/.done"
    fi
    VMLINUZ=$(ls "$kdir"/boot/vmlinuz-* | head -1)
    CONFIG=$(ls "$kdir"/boot/config-* | head -1)
    MODDIR=$(ls -d "$kdir"/lib/modules/* | head -1)
}

guest_modules() {
    local dir=$1 m
    shift
    declare -gA GUEST_SEEN=()
    : > "$dir/order"
    for m in "$@"; do guest_add_module "$dir" "$m"; done
}

guest_add_module() {
    local dir=$1 m=$2 f deps d
    [ -n "${GUEST_SEEN[$m]:-}" ] && return 0
    GUEST_SEEN[$m]=1
    # Built in: nothing to load.
    grep -q -E "/${m//_/[_-]}\.ko$" "$MODDIR/modules.builtin" && return 0
    f=$(find "$MODDIR" -name "$m.ko.xz" -o -name "${m//_/-}.ko.xz" -o -name "${m//-/_}.ko.xz" | head -1)
    [ -n "$f" ] || die "module $m not found under $MODDIR"
    deps=$(xz -dc "$f" | grep -a -o 'depends=[A-Za-z0-9_,-]*' | head -1 | sed 's/depends=//; s/,/ /g')
    for d in $deps; do guest_add_module "$dir" "$d"; done
    xz -dc "$f" > "$dir/$m.ko"
    echo "$m" >> "$dir/order"
}
