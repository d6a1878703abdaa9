#!/usr/bin/env bash
# Build the GGUF vec-dot check as PTX only, from a PATCHED vLLM tree, with the pinned CUDA 12.4 nvcc:
#   emu600.ptx  compute_60: __CUDA_ARCH__ == 600, the software dp4a of patch 0004 (gguf-sm60-dp4a)
#   hw610.ptx   compute_61: __CUDA_ARCH__ == 610, the hardware dp4a instruction (upstream's path)
# Both are JIT-compiled by the driver of any newer GPU; run.py compares their outputs bit for bit.
# usage: harness/gguf_dp4a/build.sh PATCHED_VLLM_TREE NVCC OUTDIR
set -euo pipefail
tree=$1 nvcc=$2 out=$3
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
inc="$tree/csrc/quantization/gguf"
for arch in 60 61; do
  name=$([ $arch = 60 ] && echo emu600 || echo hw610)
  "$nvcc" -ccbin "${CXX:-g++-12}" -std=c++17 -O2 -I "$inc" --ptx \
    -gencode "arch=compute_$arch,code=compute_$arch" "$here/gguf_dp4a.cu" -o "$out/$name.ptx"
done
grep -c "dp4a" "$out/hw610.ptx" | sed 's/^/dp4a instructions in hw610.ptx: /'
grep -c "dp4a" "$out/emu600.ptx" | sed 's/^/dp4a instructions in emu600.ptx: /'
