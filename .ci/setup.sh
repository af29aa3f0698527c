#!/usr/bin/env bash
# Set up a machine to test kprobes: system packages, the virtualenv, tracefs,
# and the two kernels of the VM matrix (Debian 6.1 and 6.12).
# Idempotent; needs root; written for Debian 12 (bookworm).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

if [ "$(id -u)" -ne 0 ]; then
    echo "error: .ci/setup.sh must run as root (apt-get, tracefs, /var/cache)" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
# qemu-system-x86: the VM; kmod (depmod/modprobe), busybox-static and udev are what
# virtme-ng needs on the host (the guest runs the host's udevd: without it the
# command's output and exit status are lost); gcc/libc6-dev build tests/targets.
packages=(qemu-system-x86 kmod busybox-static udev bpftrace gcc libc6-dev chromium binutils
          python3 python3-venv python3-pip ca-certificates debian-archive-keyring)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update
    apt-get install -y "${missing[@]}"
else
    # the 6.1 kernel comes from the host's bookworm lists: keep them fresh
    apt-get update
fi

if ! mountpoint -q /sys/kernel/tracing; then
    mount -t tracefs nodev /sys/kernel/tracing || echo "warning: could not mount tracefs" >&2
fi

if [ ! -x "$repo/.venv/bin/python" ]; then
    python3 -m venv "$repo/.venv"
fi
# editable_mode=compat: a plain path in a .pth file; the default import-hook
# finder costs ~10 ms on every interpreter start (start-up is a benchmark figure)
"$repo/.venv/bin/python" -m pip install --quiet -e "$repo[dev]" \
    --config-settings editable_mode=compat
# byte-compile now, as a wheel install does: an editable install otherwise
# compiles on every start where PYTHONDONTWRITEBYTECODE is set (~25 ms of start-up)
"$repo/.venv/bin/python" -m compileall -q "$repo/kprobes" > /dev/null

for k in 6.1 6.12; do
    "$repo/.venv/bin/python" -m kprobes.cli.main vm --kernel "$k" --fetch-only
done
