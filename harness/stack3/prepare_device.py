"""Prepare .device/ (git-ignored; `run` carries it to the lent GPU machine, which has no network): the
vLLM 0.26.0 Triton files unified_attention_on_gpu.py loads, pristine and with the stack's patch series.

Usage: .venv/bin/python harness/stack3/prepare_device.py   then, on the lent machine (carry .device):
       bash harness/stack3/run_on_device.sh
"""

import shutil
import tempfile
from pathlib import Path

from pascal_forge.stack.patches import apply_series
from pascal_forge.stack.sources import default_cache_dir, obtain
from pascal_forge.stack.spec import load_spec

FILES = (
    "vllm/v1/attention/ops/triton_unified_attention.py",
    "vllm/v1/attention/ops/triton_attention_helpers.py",
    "vllm/v1/attention/ops/triton_reshape_and_cache_flash.py",
    "vllm/v1/sample/ops/topk_topp_triton.py",
)
spec = load_spec()
stack = spec.stack("vllm-0.26.0")
src = obtain(stack.patched_source("vllm-pascal"), default_cache_dir()).tree
out = Path(".device")
with tempfile.TemporaryDirectory() as tmp:
    patched = Path(tmp) / "vllm"
    shutil.copytree(src, patched, symlinks=True)
    results = apply_series(patched, spec.patches_for("vllm", stack.vllm))
    assert all(r.ok for r in results), [r.summary for r in results]
    for name, tree in (("pristine", src), ("patched", patched)):
        for rel in FILES:
            dest = out / name / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(tree / rel, dest)
print(f"wrote {out}/pristine and {out}/patched ({len(FILES)} files each)")
