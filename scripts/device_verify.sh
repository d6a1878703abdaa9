#!/bin/bash
# On the lent GPU machine (no network): run the compute_60 PTX harness, then verify-cuda for one
# arch with everything carried in .device/ (see docs/verification.md for how it was prepared).
# usage: scripts/device_verify.sh ARCH [extra verify-cuda args]
set -u
arch=$1; shift
out=${OUT:-/tmp/out}; mkdir -p "$out"
mkdir -p /tmp/pf
[ -x /tmp/pf/cuda-12.4.131/bin/nvcc ] || tar -C /tmp/pf -xJf .device/toolchain.tar.xz
[ -d /tmp/vllm-0.8.5 ] || tar -C /tmp -xJf .device/vllm-src.tar.xz
[ -d /tmp/pyinc ] || { mkdir -p /tmp/pyinc && tar -C /tmp/pyinc -xJf .device/pyinc.tar.xz; }
host=$(command -v g++-12 || command -v g++-13 || command -v g++)
{ nvidia-smi -L; nproc; $host --version | head -1; python3 --version; } 2>&1 | tee "$out/machine.txt"
if [ -x .device/half_atomic/half_atomic ] && [ ! -e "$out/harness.txt" ] && [ "${SKIP_HARNESS:-0}" != 1 ]; then
  .device/half_atomic/half_atomic 20 2>&1 | tee "$out/harness.txt"
fi
PYTHONUNBUFFERED=1 PYTHONPATH=generator timeout "${VERIFY_TIMEOUT:-540}" python3 scripts/verify_cuda.py \
  --arch "$arch" --jobs "$(nproc)" --cache-dir /tmp/pf --vllm-src /tmp/vllm-0.8.5 \
  --patch-dir .device/patchdir --python-include /tmp/pyinc/python3.11 --host-compiler "$host" \
  --json "$@" > "$out/verify-$arch.json" 2> >(tee "$out/verify-$arch.log" >&2)
echo "verify rc=$?" | tee -a "$out/verify-$arch.log"
