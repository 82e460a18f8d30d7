#!/usr/bin/env bash
# Installs the Debian packages kproxy's tests and demo need, if any is missing.
# Idempotent and quiet when everything is already there.
set -euo pipefail

# command -> Debian package
declare -A need=(
  [iptables]=iptables
  [iptables-legacy]=iptables
  [ipset]=ipset
  [conntrack]=conntrack
  [ip]=iproute2
  [nsenter]=util-linux
  [qemu-system-x86_64]=qemu-system-x86
  [busybox]=busybox-static
  [depmod]=kmod
  [cpio]=cpio
  [ps]=procps
)
missing=()
for cmd in "${!need[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin:/sbin" command -v "$cmd" >/dev/null 2>&1 || missing+=("${need[$cmd]}")
done
# busybox-static specifically: a dynamic busybox cannot run in the VM's initramfs.
dpkg -s busybox-static >/dev/null 2>&1 || missing+=(busybox-static)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
mapfile -t pkgs < <(printf '%s\n' "${missing[@]}" | sort -u)
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing Debian packages: ${pkgs[*]} (run as root, or: apt-get install --no-install-recommends ${pkgs[*]})" >&2
  exit 1
fi
echo "install-deps: installing ${pkgs[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
