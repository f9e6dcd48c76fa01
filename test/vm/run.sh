#!/usr/bin/env bash
# Boots the test VM (Debian's kernel, see prepare.sh) and runs JOBDIR/cmd.sh in it, chrooted into
# the host's root filesystem (read-only 9p under a RAM overlay: nothing the guest does reaches the
# host). The guest writes JOBDIR/output.log and JOBDIR/rc; the serial console (stdout) carries the
# kernel's messages and "@@VM-EXIT <code>". Usage: run.sh JOBDIR
# Environment: CNIKIT_VM_ACCEL=kvm|tcg (default: kvm only with hardware virtualization, see below),
# CNIKIT_VM_MEM (MiB, default 2048), CNIKIT_VM_CPUS (default 2).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
job="$(cd "${1:?usage: run.sh JOBDIR}" && pwd)"
[ -f "$job/cmd.sh" ] || { echo "run.sh: $job/cmd.sh missing" >&2; exit 2; }
command -v qemu-system-x86_64 >/dev/null || { echo "run.sh: needs qemu-system-x86_64 (qemu-system-x86)" >&2; exit 2; }

read -r kernel initrd < <("$here/prepare.sh")

accel="${CNIKIT_VM_ACCEL:-}"
if [ -z "$accel" ]; then
  # /dev/kvm alone is not enough: on these machines it is kvm_pvm (nested, paravirtual), where an
  # unmodified kernel crawls (minutes to reach memory setup). Only kvm_intel/kvm_amd are worth it.
  if [ -w /dev/kvm ] && { [ -d /sys/module/kvm_intel ] || [ -d /sys/module/kvm_amd ]; }; then accel=kvm; else accel=tcg; fi
fi
case "$accel" in
  kvm) accel_args=(-accel kvm -cpu host) ;;
  # "max" has AVX2 from QEMU 7.2 on, which the bun-compiled cnikit needs.
  tcg) accel_args=(-accel tcg,thread=multi -cpu max) ;;
  *) echo "run.sh: CNIKIT_VM_ACCEL must be kvm or tcg" >&2; exit 2 ;;
esac
echo "@@VM accel=$accel kernel=$kernel"

exec qemu-system-x86_64 "${accel_args[@]}" \
  -m "${CNIKIT_VM_MEM:-2048}" -smp "${CNIKIT_VM_CPUS:-2}" \
  -nodefaults -display none -serial stdio -no-reboot -nic none \
  -kernel "$kernel" -initrd "$initrd" \
  -append "console=ttyS0 quiet loglevel=4 panic=-1 random.trust_cpu=on" \
  -device virtio-rng-pci \
  -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
  -virtfs "local,path=$job,mount_tag=job,security_model=none,multidevs=remap"
