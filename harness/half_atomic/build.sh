#!/bin/sh
# Build the half-atomic harness as compute_60 PTX only (no SASS), with a CUDA 12 nvcc.
# usage: build.sh PATCHED_VLLM_SRC CUDA_HOME [OUTDIR]
#   PATCHED_VLLM_SRC: vLLM 0.8.5 tree with the pascal-forge series applied
#                     (pascal-forge verify-cuda --keep-tree prints one)
#   CUDA_HOME:        the toolchain from `pascal-forge verify-cuda --setup-toolchain`
set -eu
src=$1; cuda=$2; out=${3:-$(dirname "$0")/build}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
python3 "$here/extract.py" "$src" "$here/gen"
"$cuda/bin/nvcc" -ccbin g++-12 -std=c++17 -O2 \
  -gencode arch=compute_60,code=compute_60 \
  -I"$here" -o "$out/half_atomic" "$here/half_atomic.cu" \
  -cudart shared -cudadevrt none -L"$cuda/lib64" -Xlinker -rpath='$ORIGIN'
cp -L "$cuda/lib64/libcudart.so.12" "$out/"
# Proof of "PTX only": no ELF (SASS) in the binary, one compute_60 PTX.
"$cuda/bin/cuobjdump" --list-elf "$out/half_atomic" 2>&1 | sed 's/^/elf: /' || true
"$cuda/bin/cuobjdump" --list-ptx "$out/half_atomic" | sed 's/^/ptx: /'
