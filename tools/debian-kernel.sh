# Sourced by ci/kernel-tests.sh, ci/board-dtbs.sh and tools/guest-kernel.sh: Debian's
# bookworm-backports kernel image package, from the archive this machine's apt
# configuration already names (there is no default: the project never picks a host).
#
# debian_kernel_deb CACHE ARCH
#     prints the path of linux-image-*+deb12-ARCH's .deb in CACHE, downloading it first
#     when CACHE has none. apt-get runs with a private sources list and private state
#     directories under CACHE/apt, leaving the machine's apt configuration alone. On
#     failure it says why on stderr and returns 1.

debian_kernel_deb() {
    local cache=$1 arch=$2 deb uri keyring signed aptdir pkg
    local sources=(/etc/apt/sources.list.d/*.sources) lists=(/etc/apt/sources.list /etc/apt/sources.list.d/*.list)
    mkdir -p "$cache"
    # A package fetched before is used as it is: no network needed.
    deb=$(ls "$cache"/linux-image-*+deb12-"$arch"_*_"$arch".deb 2>/dev/null | sort -V | tail -1 || true)
    if [ -n "$deb" ]; then
        echo "$deb"
        return 0
    fi
    # The archive is the URI whose path ends in /debian (not debian-security): the deb822
    # form's URIs: lines first, then the one-line deb form.
    uri=$(for f in "${sources[@]}"; do [ -f "$f" ] && cat "$f"; done |
          awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i ~ /^https?:\/\/.*\/debian\/?$/) { print $i; exit } }')
    [ -n "$uri" ] || uri=$(for f in "${lists[@]}"; do [ -f "$f" ] && cat "$f"; done |
          awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^https?:\/\/.*\/debian\/?$/) { print $i; exit } }')
    if [ -z "$uri" ]; then
        echo "no Debian archive in the machine's apt configuration: looked for a URIs: line in ${sources[*]} and a deb line in ${lists[*]} whose URI ends in /debian" >&2
        return 1
    fi
    keyring=/usr/share/keyrings/debian-archive-keyring.gpg
    signed="arch=$arch"
    [ -f "$keyring" ] && signed="$signed signed-by=$keyring"
    aptdir=$cache/apt
    mkdir -p "$aptdir/lists/partial" "$aptdir/cache/archives/partial"
    echo "deb [$signed] ${uri%/} bookworm-backports main" > "$aptdir/sources.list"
    local apto=(-o "Dir::Etc::SourceList=$aptdir/sources.list" -o Dir::Etc::SourceParts=/dev/null
                -o "Dir::State::Lists=$aptdir/lists" -o "Dir::Cache=$aptdir/cache"
                -o APT::Sandbox::User=root -o "APT::Architecture=$arch" -o "APT::Architectures::=$arch")
    echo "fetching the $arch kernel from ${uri%/} bookworm-backports" >&2
    if ! apt-get "${apto[@]}" update -qq >/dev/null; then
        echo "apt-get update of bookworm-backports from ${uri%/} failed" >&2
        return 1
    fi
    pkg=$(apt-cache "${apto[@]}" depends "linux-image-$arch" 2>/dev/null |
          awk -v want="linux-image-[0-9.]*\\\\+deb12-$arch\$" '$1 == "Depends:" && $2 ~ want { print $2; exit }')
    if [ -z "$pkg" ]; then
        echo "no linux-image-*+deb12-$arch in bookworm-backports" >&2
        return 1
    fi
    if ! (cd "$cache" && apt-get "${apto[@]}" download -qq "$pkg:$arch" >/dev/null); then
        echo "download of $pkg failed" >&2
        return 1
    fi
    ls "$cache"/"$pkg"_*_"$arch".deb | head -1
}
