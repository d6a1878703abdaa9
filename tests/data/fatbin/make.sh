#!/usr/bin/env bash
# Regenerates the fatbin fixtures (checked in; a few KB each) with the CUDA 12.4 nvcc that
# `pascal-forge verify-cuda` sets up in ~/.cache/pascal-forge/cuda-12.4.131, host compiler g++-12.
# Usage: tests/data/fatbin/make.sh [NVCC]
set -euo pipefail
cd "$(dirname "$0")"
nvcc="${1:-${HOME}/.cache/pascal-forge/cuda-12.4.131/bin/nvcc}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
obj() {  # obj NAME UNIT NVCC-ARCH-FLAGS...: one translation unit
  local name="$1" unit="$2"
  shift 2
  "$nvcc" -ccbin g++-12 -c -Xcompiler -fPIC -DUNIT="$unit" "$@" -o "$tmp/$name.o" kernel.cu
}
so() {  # so OUTPUT OBJECTS...: link without the CUDA runtime (its symbols stay undefined)
  local out="$1"
  shift
  "$nvcc" -ccbin g++-12 -shared --cudart none -Xlinker --strip-all -o "$out" "${@/#/$tmp/}"
}
pascal=(-gencode arch=compute_60,code=sm_60 -gencode arch=compute_61,code=sm_61)
# two units, both with SASS for sm_60 and sm_61 (what vllm-pascal's extensions carry)
obj a a "${pascal[@]}"
obj b b "${pascal[@]}"
so sm60_sm61.so a.o b.o
# no Pascal code at all: SASS sm_70, sm_80 and PTX compute_80 (what a stock CUDA 12 build carries)
obj v a -gencode arch=compute_70,code=sm_70 -gencode "arch=compute_80,code=[sm_80,compute_80]"
so sm70_sm80_ptx80.so v.o
# compressed entries (-Xfatbin -compress-all, as torch builds use) with PTX compute_60
obj c a -Xfatbin -compress-all -gencode "arch=compute_60,code=[sm_60,compute_60]" -gencode arch=compute_61,code=sm_61
so sm60_sm61_ptx60_compressed.so c.o
# one unit for both Pascal archs, one for sm_61 only: runs on a P40 (6.1), not on a P100 (6.0)
obj m b -gencode arch=compute_61,code=sm_61
so sm61_only_unit.so a.o m.o
