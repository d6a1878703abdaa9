"""The carry ladder on the real PyPI sdists of two releases no stack targets (sha256-pinned)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pascal_forge.stack.model import Source
from pascal_forge.stack.sources import obtain
from pascal_forge.stack.spec import load_spec
from pascal_forge.update.ladder import Step, base_files, carry_patch
from pascal_forge.update.rules import Intents, load_intents

FILES = "https://files.pythonhosted.org/packages"
RELEASES = {
    "0.9.2": (
        f"{FILES}/35/89/2fbf95d398b5751b44c7256bd80e57c589142f1bfcc15f5dc76438b8853a/vllm-0.9.2.tar.gz",
        "6b0d855ea8ba18d76364c9b82ea94bfcaa9c9e724055438b5733e4716ed104e1",
    ),
    "0.13.0": (
        f"{FILES}/11/12/b922f96778d07df1c28dfa9a81fbc9706c13c5d0a4e8d154060818a79705/vllm-0.13.0.tar.gz",
        "4ad43db45fef37114b550d03a4f423fb3fa3a31d8bc09ee810ef8b9cdcd4b5fe",
    ),
}
# From the 0.8.5 stack's series: what each step must be (docs/releases.md, README "Carrying patches").
EXPECTED = {
    "0.9.2": {
        "cmake-pascal-archs": Step.RULE,  # the list moved into an nvcc >= 12.8 / else pair
        "moe-wna16-half-atomicadd": Step.APPLIED,
        "prefix-prefill-pascal-tiles": Step.THREE_WAY,
        "gguf-sm60-dp4a": Step.APPLIED,
        "auto-dtype-fp16-before-ampere": Step.OBSOLETE,
        "flash-attn-skip-kernels-without-sm80": Step.THREE_WAY,
    },
    "0.13.0": {
        "cmake-pascal-archs": Step.RULE,
        "moe-wna16-half-atomicadd": Step.APPLIED,
        "prefix-prefill-pascal-tiles": Step.THREE_WAY,
        "gguf-sm60-dp4a": Step.APPLIED,
        "auto-dtype-fp16-before-ampere": Step.OBSOLETE,  # vllm/config.py is gone: relocated, then probed
        "flash-attn-skip-kernels-without-sm80": Step.THREE_WAY,
    },
}


def _tree(version: str, cache: Path) -> Path:
    url, sha = RELEASES[version]
    src = Source("vllm-pascal", f"vllm-{version}", "test pin", url=url, sha256=sha, patched=True)
    return obtain(src, cache).tree


@pytest.mark.integration
@pytest.mark.parametrize("version", sorted(RELEASES))
def test_base_series_carries_to_untargeted_release(version: str) -> None:
    from pascal_forge.stack.sources import default_cache_dir

    spec = load_spec()
    base = spec.stack("vllm-0.8.5")
    cache = default_cache_dir()
    old = obtain(base.patched_source("vllm-pascal"), cache).tree
    series = spec.patches_for("vllm", "0.8.5")
    pristine = {e.id: base_files(e, old) for e in series}
    new = _tree(version, cache)
    intents = load_intents(spec.patch_library / "vllm" / "series.toml")
    steps = {}
    for e in series:
        c = carry_patch(e, pristine[e.id], new, intents.get(e.id, Intents()), version, "0.8.5")
        steps[e.id] = c.step
        if c.step == Step.OBSOLETE:
            assert any("vllm/platforms/cuda.py" in ev for ev in c.evidence), c.evidence
        if c.step == Step.RULE:
            added = [line for line in c.diff.splitlines() if line.startswith("+ ")]
            assert len(added) == 2  # both CUDA 12 branches (nvcc >= 12.8 and else), not the CUDA 13 one
            assert all('set(CUDA_SUPPORTED_ARCHS "6.0;6.1;7.0;' in line for line in added)
        if c.carried:
            assert "\n--- a/" in "\n" + c.diff
    assert steps == EXPECTED[version]
