#!/bin/bash
# On the lent GPU machine: environment, the Pascal-PTX Triton run, and the generated pytorch package test
# of vllm-0.26.0 against the machine's torch (stock files, then the series applied to a copy).
set -u; out=${OUT:-/tmp/out}; mkdir -p "$out"
{ nvidia-smi -L; nproc; python3 --version; python3 -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__)"; } > "$out/machine.txt" 2>&1
cat "$out/machine.txt"
timeout 300 python3 harness/stack3/pascal_ptx_on_gpu.py "$out/ptx.json" > "$out/ptx.log" 2>&1; echo "ptx rc=$?" >> "$out/ptx.log"; tail -40 "$out/ptx.log"
site=$(python3 -c "import os, torch; print(os.path.dirname(os.path.dirname(torch.__file__)))")
ov=/tmp/ov; rm -rf $ov; mkdir -p $ov; cp -r "$site/torch" $ov/torch
chk=/tmp/pascal_check.py
# the generated test asserts a CUDA 12 build (the overlay's); the lent torch may be a CUDA 13 wheel: drop that line only
grep -v '^assert torch.version.cuda' recipes/vllm-0.26.0/pytorch-pascal/pascal_check.py > $chk
(cd /tmp && PYTHONWARNINGS=ignore python3 $chk) > "$out/gates-stock.log" 2>&1; echo "stock rc=$?" >> "$out/gates-stock.log"
for p in generator/pascal_forge/stack/patchlib/torch/v2.11.0/*.patch; do (cd $ov && patch -p1 -F0 -i "$OLDPWD/$p") >> "$out/gates-patch.log" 2>&1; done
(cd /tmp && PYTHONPATH=$ov PYTHONWARNINGS=ignore python3 $chk) > "$out/gates-patched.log" 2>&1; echo "patched rc=$?" >> "$out/gates-patched.log"
tail -5 "$out/gates-stock.log" "$out/gates-patch.log" "$out/gates-patched.log"
