#!/usr/bin/env bash
# Prepares what the IPVS VM tests (test/vm) boot: a Debian cloud kernel and a base initramfs
# holding busybox, the kernel's networking modules (IPVS, netfilter, ipset, bridge, veth,
# dummy, sctp, xfrm, and virtio-net for runs that forward host ports) and the host's
# iptables/ipset/conntrack binaries with their shared libraries.
# The CI host kernel may lack IPVS entirely; the VM brings its own.
#
# Idempotent and safe to run concurrently: everything lives in a cache outside the clone and is
# rebuilt only when the kernel package, the host tools or this script change. Needs root (it
# may install Debian packages). Prints the assets folder (vmlinuz, base.cpio.gz, kernel.version)
# on its last line.
#
# Environment:
#   KPROXY_CACHE           cache root (default: ${XDG_CACHE_HOME:-$HOME/.cache}/kproxy)
#   KPROXY_VM_KERNEL_PKG   kernel package to use (default: what linux-image-cloud-amd64 depends on)
set -euo pipefail

cache=${KPROXY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kproxy}
vmcache="$cache/vm"
arch_libdir=/usr/lib/x86_64-linux-gnu

log() { echo "vm-assets: $*" >&2; }
die() { log "$*"; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (installs Debian packages, builds a root-owned initramfs)"
mkdir -p "$vmcache"

# One builder at a time: parallel `go test` processes may all ask for the assets at once.
exec 9>"$vmcache/.lock"
flock 9

apt_updated=
apt_update() {
  [ -n "$apt_updated" ] && return 0
  log "apt-get update"
  apt-get update -qq >&2
  apt_updated=1
}

# ensure_tools installs the Debian packages that provide the given commands, if any is missing.
ensure_tools() {
  local missing=() pair cmd pkg
  for pair in "$@"; do
    cmd=${pair%%:*} pkg=${pair#*:}
    command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]}"
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2; then
    apt_update
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  fi
}

ensure_tools qemu-system-x86_64:qemu-system-x86 busybox:busybox-static depmod:kmod cpio:cpio \
  xtables-nft-multi:iptables xtables-legacy-multi:iptables ipset:ipset conntrack:conntrack \
  gzip:gzip flock:util-linux
[ -f /etc/protocols ] || ensure_tools "/etc/protocols:netbase"

# kernel_pkg names the versioned cloud kernel package, e.g. linux-image-6.1.0-56-cloud-amd64.
kernel_pkg() {
  if [ -n "${KPROXY_VM_KERNEL_PKG:-}" ]; then
    echo "$KPROXY_VM_KERNEL_PKG"
    return
  fi
  # apt-cache takes about a second; remember its answer until the package lists change.
  local p lists memo="$vmcache/kernel-pkg"
  lists=$(stat -c %Y /var/lib/apt/lists 2>/dev/null || echo 0)
  if [ -f "$memo" ] && [ "$(head -n1 "$memo")" = "$lists" ]; then
    sed -n 2p "$memo"
    return
  fi
  p=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[^ ]*-cloud-amd64\)$/\1/p' | head -n1)
  if [ -z "$p" ]; then
    apt_update
    p=$(apt-cache depends linux-image-cloud-amd64 | sed -n 's/^ *Depends: \(linux-image-[^ ]*-cloud-amd64\)$/\1/p' | head -n1)
  fi
  [ -n "$p" ] || die "cannot resolve the cloud kernel package from linux-image-cloud-amd64"
  printf '%s\n%s\n' "$(stat -c %Y /var/lib/apt/lists 2>/dev/null || echo 0)" "$p" > "$memo"
  echo "$p"
}

pkg=$(kernel_pkg)
dir="$vmcache/$pkg"

# The stamp covers every input of the build, so a changed script or an upgraded host tool rebuilds.
stamp=$({
  echo "$pkg"
  sha256sum "$0" | cut -d' ' -f1
  dpkg-query -W -f='${Package} ${Version}\n' busybox-static iptables ipset conntrack libc6 2>/dev/null || true
} | sha256sum | cut -d' ' -f1)

if [ -f "$dir/.stamp" ] && [ "$(cat "$dir/.stamp")" = "$stamp" ] &&
  [ -f "$dir/vmlinuz" ] && [ -f "$dir/base.cpio.gz" ] && [ -f "$dir/kernel.version" ]; then
  echo "$dir"
  exit 0
fi

log "building VM assets for $pkg in $dir"
mkdir -p "$dir/deb"
rm -f "$dir/.stamp"

# --- kernel package -----------------------------------------------------------------------------
if ! ls "$dir/deb/${pkg}"_*.deb >/dev/null 2>&1; then
  log "downloading $pkg"
  # apt drops privileges to _apt for downloads; give it a folder it can write to.
  dl=$(mktemp -d)
  chmod 0777 "$dl"
  if ! (cd "$dl" && apt-get download -qq "$pkg" >&2); then
    # Stale package lists can name a kernel the archive no longer serves: refresh them and
    # start over, which also re-resolves the kernel package.
    rm -rf "$dl"
    rmdir "$dir/deb" "$dir" 2>/dev/null || true
    [ -z "${KPROXY_VM_ASSETS_RETRY:-}" ] || die "cannot download $pkg"
    apt_update
    log "retrying with fresh package lists"
    KPROXY_VM_ASSETS_RETRY=1 exec bash "$0" "$@"
  fi
  mv "$dl"/*.deb "$dir/deb/"
  rmdir "$dl"
fi
deb=$(ls "$dir/deb/${pkg}"_*.deb | head -n1)

rm -rf "$dir/pkg" "$dir/rootfs"
dpkg -x "$deb" "$dir/pkg"
# Newer (merged-/usr) kernel packages ship their modules under /usr/lib/modules.
if [ ! -d "$dir/pkg/lib/modules" ] && [ -d "$dir/pkg/usr/lib/modules" ]; then
  mkdir -p "$dir/pkg/lib" && ln -s ../usr/lib/modules "$dir/pkg/lib/modules"
fi
kver=$(ls "$dir/pkg/lib/modules" | head -n1)
[ -n "$kver" ] || die "no module tree in $deb"
cp "$dir/pkg/boot/vmlinuz-$kver" "$dir/vmlinuz.tmp" && mv "$dir/vmlinuz.tmp" "$dir/vmlinuz"

root="$dir/rootfs"
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,lib,lib64,"${arch_libdir#/}",etc,proc,sys,dev,run,tmp,root}
chmod 1777 "$root/tmp"
mkdir -p "$root/var" && ln -s /run "$root/var/run"

# --- kernel modules -----------------------------------------------------------------------------
# Every netfilter, IPVS, ipset, bridge, sctp and xfrm module (vishvananda/netlink, under
# test/netns, opens an XFRM netlink socket) plus veth and dummy, and the virtio network card
# test/vm adds for Options.HostForwards, closed over their dependencies (modules.dep already
# lists transitive dependencies).
src="$dir/pkg/lib/modules/$kver"
dst="$root/lib/modules/$kver"
depmod -b "$dir/pkg" "$kver"
wanted=$(cd "$src" && find kernel/net/netfilter kernel/net/ipv4/netfilter kernel/net/ipv6/netfilter \
  kernel/net/bridge kernel/net/sctp kernel/net/xfrm kernel/drivers/net/dummy.ko kernel/drivers/net/veth.ko \
  kernel/drivers/virtio kernel/drivers/net/virtio_net.ko \
  -name '*.ko*' 2>/dev/null)
modules=$(awk -v want="$(echo "$wanted" | tr '\n' ' ')" '
  BEGIN { n = split(want, w, " "); for (i = 1; i <= n; i++) keep[w[i]] = 1 }
  { key = $1; sub(/:$/, "", key); if (key in keep) { print key; for (i = 2; i <= NF; i++) print $i } }
' "$src/modules.dep" | sort -u)
mkdir -p "$dst"
(cd "$src" && echo "$modules" | xargs cp --parents -t "$dst")
for f in modules.builtin modules.builtin.modinfo modules.order; do
  [ -f "$src/$f" ] && cp "$src/$f" "$dst/"
done
depmod -b "$root" "$kver"
echo "$kver" > "$dir/kernel.version.tmp"

# --- host binaries and their libraries ----------------------------------------------------------
# copy_host_file copies a file to the same path in the rootfs; a symlinked path becomes a
# symlink to the real file so that both names the loader or ldd may use resolve.
copy_host_file() {
  local path=$1 real
  real=$(readlink -f "$path")
  if [ ! -e "$root$real" ]; then
    mkdir -p "$(dirname "$root$real")"
    cp -p "$real" "$root$real"
  fi
  if [ "$path" != "$real" ] && [ ! -e "$root$path" ] && [ ! -L "$root$path" ]; then
    mkdir -p "$(dirname "$root$path")"
    ln -s "$real" "$root$path"
  fi
}

# copy_with_libs copies ELF files and every shared library ldd reports for them.
copy_with_libs() {
  local f lib
  for f in "$@"; do
    copy_host_file "$f"
    for lib in $(ldd "$f" 2>/dev/null | sed -n 's/.*=> \(\/[^ ]*\) .*/\1/p; s/^[[:space:]]*\(\/[^ ]*\) (0x.*/\1/p'); do
      copy_host_file "$lib"
    done
  done
}

sbin_of() { readlink -f "$(command -v "$1")"; }
nft_multi=$(sbin_of xtables-nft-multi)
legacy_multi=$(sbin_of xtables-legacy-multi)
copy_with_libs "$nft_multi" "$legacy_multi" "$(sbin_of ipset)" "$(sbin_of conntrack)"
# iptables loads its match/target extensions with dlopen, which ldd cannot see.
xtlib="$arch_libdir/xtables"
if [ -d "$xtlib" ]; then
  copy_with_libs "$xtlib"/*.so
fi
# The names kube-proxy and go-iptables call; the unsuffixed ones follow Debian's default (nft).
for fam in iptables ip6tables; do
  for op in "" -save -restore; do
    ln -sf "$(basename "$nft_multi")" "$root/usr/sbin/$fam-nft$op"
    ln -sf "$(basename "$legacy_multi")" "$root/usr/sbin/$fam-legacy$op"
    ln -sf "$(basename "$nft_multi")" "$root/usr/sbin/$fam$op"
  done
done
ln -sf "$(basename "$nft_multi")" "$root/usr/sbin/xtables-monitor"

# busybox last, so that an applet never shadows a real tool copied above.
copy_with_libs "$(readlink -f "$(command -v busybox)")"
bb=$(readlink -f "$(command -v busybox)")
[ "$bb" = /bin/busybox ] || ln -sf "$bb" "$root/bin/busybox"
for applet in $(busybox --list-full); do
  [ -e "$root/$applet" ] || [ -L "$root/$applet" ] || ln -s /bin/busybox "$root/$applet"
done

# --- configuration files ------------------------------------------------------------------------
for f in /etc/protocols /etc/services /etc/ethertypes; do
  [ -f "$f" ] && cp "$f" "$root$f"
done
printf 'passwd: files\ngroup: files\nhosts: files\nprotocols: files\nservices: files\n' > "$root/etc/nsswitch.conf"
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$root/etc/passwd"
printf 'root:x:0:\n' > "$root/etc/group"
printf '127.0.0.1 localhost\n::1 localhost\n' > "$root/etc/hosts"
printf '%s\n/lib/x86_64-linux-gnu\n' "$arch_libdir" > "$root/etc/ld.so.conf"
ldconfig -r "$root"

# --- archive ------------------------------------------------------------------------------------
(cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) | gzip -6 > "$dir/base.cpio.gz.tmp"
mv "$dir/base.cpio.gz.tmp" "$dir/base.cpio.gz"
mv "$dir/kernel.version.tmp" "$dir/kernel.version"
rm -rf "$dir/pkg"
echo "$stamp" > "$dir/.stamp"
log "base initramfs $(du -h "$dir/base.cpio.gz" | cut -f1), kernel $kver"
echo "$dir"
