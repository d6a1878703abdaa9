#!/bin/bash
# On the lent GPU machine, after harness/stack3/prepare_device.py here (carry .device):
# device.sh (toy kernels as compute_60 PTX, generated pytorch check stock/patched), then vLLM 0.26.0's
# TRITON_ATTN / reshape-and-cache / top-k-top-p kernels as cc 6.0 PTX, patched and pristine.
set -u; out=${OUT:-/tmp/out}; mkdir -p "$out"
export TRITON_CACHE_DIR=/tmp/tcache
timeout 240 bash harness/stack3/device.sh
for t in patched pristine; do
  timeout 150 python3 harness/stack3/unified_attention_on_gpu.py "$out/ua-$t.json" ".device/$t/vllm" > "$out/ua-$t.log" 2>&1
  echo "$t rc=$?" >> "$out/ua-$t.log"
  tail -3 "$out/ua-$t.log"
done
