#!/usr/bin/env bash
# Prepares a Debian kernel + a tiny busybox initramfs for test/vm/run.sh, cached under
# $CNIKIT_VM_CACHE (default /tmp/cnikit-vm-cache)/<kernel release>/ and reused between runs.
# Why: the machines this project runs on (developers' and CI's) have a kernel without
# CONFIG_BRIDGE_VLAN_FILTERING, so the bridge vlan/vlanTrunk/preserveDefaultVlan keys can only be
# observed in the kernel they promise under Debian 12's own kernel, booted in qemu.
# The kernel .deb is downloaded with `apt-get download` and unpacked with dpkg-deb -x: nothing is
# installed into the system. Prints "<kernel image> <initramfs>" on stdout.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
cache="${CNIKIT_VM_CACHE:-/tmp/cnikit-vm-cache}"
# The flavour with 9p (the -cloud flavour lacks CONFIG_NET_9P, which shares the host's root).
meta="${CNIKIT_VM_KERNEL_META:-linux-image-amd64}"

log() { echo "prepare: $*" >&2; }

for tool in apt-get apt-cache dpkg-deb depmod gzip; do
  command -v "$tool" >/dev/null || { log "missing $tool"; exit 2; }
done
busybox=/bin/busybox
[ -x "$busybox" ] && "$busybox" --list | grep -qx insmod || { log "needs busybox-static (/bin/busybox with insmod)"; exit 2; }

# The kernel the metapackage points at now, e.g. linux-image-6.1.0-56-amd64; its -unsigned twin has
# the same files without the Secure Boot signature, which qemu's direct boot doesn't need.
resolve_pkg() {
  apt-cache depends "$meta" 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}'
}
pkg="$(resolve_pkg || true)"
if [ -z "$pkg" ]; then
  apt-get update -qq >&2 || true
  pkg="$(resolve_pkg || true)"
fi
# Offline, or the registry lost the package: reuse the newest kernel prepared before, if any.
use_cached() {
  local found
  found="$(ls -1d "$cache"/*/ready 2>/dev/null | sort -V | tail -1 || true)"
  [ -n "$found" ] || { log "$1, and nothing cached in $cache"; exit 2; }
  log "$1: using $(dirname "$found")"
  echo "$(dirname "$found")/vmlinuz $(dirname "$found")/initramfs.cpio.gz"
  exit 0
}
[ -n "$pkg" ] || use_cached "cannot resolve $meta"
release="${pkg#linux-image-}"
if apt-cache show "$pkg-unsigned" >/dev/null 2>&1; then pkg="$pkg-unsigned"; fi

dir="$cache/$release"
# The initramfs also depends on this script and /init: rebuild when either changed.
stamp="$(cat "$0" "$here/init" | sha256sum | cut -c1-16)"
if [ -f "$dir/ready" ] && [ "$(cat "$dir/ready")" = "$stamp" ]; then
  echo "$dir/vmlinuz $dir/initramfs.cpio.gz"
  exit 0
fi

mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9 # two jest workers or two checkouts preparing at once
if [ -f "$dir/ready" ] && [ "$(cat "$dir/ready")" = "$stamp" ]; then
  echo "$dir/vmlinuz $dir/initramfs.cpio.gz"
  exit 0
fi

work="$(mktemp -d "$cache/.build.XXXXXX")"
trap 'rm -rf "$work"' EXIT
log "downloading $pkg"
# Stale package lists name versions the archive no longer has: refresh them once and retry.
if ! (cd "$work" && apt-get download -q "$pkg" >&2) &&
  ! { apt-get update -qq >&2 && (cd "$work" && apt-get download -q "$pkg" >&2); }; then
  rm -rf "$work"
  use_cached "apt-get download $pkg failed"
fi
mkdir "$work/deb"
dpkg-deb -x "$work"/*.deb "$work/deb"
moddir="$work/deb/lib/modules/$release"
[ -d "$moddir" ] || { log "no modules for $release in $pkg"; exit 2; }
depmod -b "$work/deb" "$release"

# Modules the VM needs: the 9p share of the host's root, an overlay to make it writable in RAM, and
# what the bridge tests drive (bridge, veth, 802.1Q for <bridge>.<vlan>, nftables for macspoofchk).
# The kernel cannot autoload modules later (modprobe would run in the initramfs), so all are loaded
# by /init, dependencies first (modules.dep lists them).
wanted=(
  virtio_pci virtio_rng 9pnet_virtio 9p overlay
  bridge veth 8021q
  nf_tables nft_chain_nat nft_nat nft_masq nft_ct nft_meta_bridge nft_compat
  nf_conntrack_netlink xt_comment xt_MASQUERADE xt_conntrack xt_nat iptable_nat iptable_filter
  ip6table_nat ip6table_filter
)
declare -A seen=()
order=()
module_file() { # module name -> path relative to $moddir ('' when built in or absent)
  grep -m1 -E "/${1//_/[_-]}\.ko(\.xz|\.zst)?:" "$moddir/modules.dep" | cut -d: -f1 || true
}
add_module() { # path relative to $moddir; hard and soft ("pre:") dependencies first
  local rel="$1" line dep name soft alias target
  [ -n "${seen[$rel]:-}" ] && return 0
  seen[$rel]=1
  name="$(basename "${rel%%.ko*}")"
  # e.g. libcrc32c's init fails unless a "crc32c" provider is loaded first (softdep pre: crc32c);
  # a name there may be an alias: take the portable *_generic provider when there is one.
  for soft in $(awk -v m="$name" '$1 == "softdep" && $2 == m { p = 0; for (i = 3; i <= NF; i++) { if ($i == "pre:") p = 1; else if ($i == "post:") p = 0; else if (p) print $i } }' "$moddir/modules.softdep"); do
    target="$(module_file "$soft")"
    if [ -z "$target" ]; then
      alias="$(awk -v a="$soft" '$1 == "alias" && $2 == a { print $3 }' "$moddir/modules.alias")"
      alias="$(echo "$alias" | grep -m1 '_generic$' || echo "$alias" | head -1)"
      [ -n "$alias" ] && target="$(module_file "$alias")"
    fi
    [ -n "$target" ] && add_module "$target"
  done
  line="$(grep -m1 "^$rel:" "$moddir/modules.dep")"
  for dep in $(echo "${line#*:}" | tr ' ' '\n' | tac); do add_module "$dep"; done
  order+=("$rel")
}
for m in "${wanted[@]}"; do
  rel="$(module_file "$m")"
  if [ -z "$rel" ]; then
    # Built in (or absent from this flavour): nothing to load.
    grep -q -E "/${m//_/[_-]}\.ko$" "$moddir/modules.builtin" || log "note: module $m not in $release"
    continue
  fi
  add_module "$rel"
done

root="$work/root"
mkdir -p "$root"/{bin,dev,proc,sys,host,rw,newroot,job,modules}
cp "$busybox" "$root/bin/busybox"
for applet in sh mount umount mkdir insmod cat echo poweroff sleep ls chroot ln sync; do ln -s busybox "$root/bin/$applet"; done
n=0
for rel in "${order[@]}"; do
  n=$((n + 1))
  out="$root/modules/$(printf %02d "$n")-$(basename "${rel%%.ko*}").ko"
  case "$rel" in
    *.ko.xz) xz -dc "$moddir/$rel" >"$out" ;; # busybox insmod takes plain .ko only
    *.ko.zst) zstd -dqc "$moddir/$rel" >"$out" ;;
    *) cp "$moddir/$rel" "$out" ;;
  esac
done
cp "$here/init" "$root/init"
chmod 0755 "$root/init"
(cd "$root" && find . | "$busybox" cpio -o -H newc 2>/dev/null | gzip -1) >"$work/initramfs.cpio.gz"

rm -rf "$dir"
mkdir -p "$dir"
cp "$work/deb/boot/vmlinuz-$release" "$dir/vmlinuz"
mv "$work/initramfs.cpio.gz" "$dir/initramfs.cpio.gz"
echo "$stamp" >"$dir/ready"
log "ready: $dir (${#order[@]} modules)"
echo "$dir/vmlinuz $dir/initramfs.cpio.gz"
