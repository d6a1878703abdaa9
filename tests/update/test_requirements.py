"""vllm-pascal's run dependencies are derived from vLLM's own requirement files, not typed by hand."""

from __future__ import annotations

import pytest

from pascal_forge.stack.sources import default_cache_dir, obtain
from pascal_forge.stack.spec import builtin_spec_path, load_spec
from pascal_forge.update.requirements import derived_block, map_requirements, replace_block


@pytest.mark.integration
def test_committed_run_requirements_match_the_sdist() -> None:
    """The derived block in the built-in spec equals a fresh derivation from the pinned sdist."""
    stack = load_spec().stack()
    vllm = stack.patched_source("vllm-pascal")
    tree = obtain(vllm, default_cache_dir()).tree
    block = derived_block(stack.vllm, stack.torch, stack.triton, stack.python, tree)
    text = builtin_spec_path().read_text("utf-8")
    assert block in text, "stale: run `pascal-forge derive-requirements --write`"
    assert replace_block(text, block, "spec") == text
    run = {d.spec for d in stack.requirements["vllm-pascal"].run}
    assert "pytorch ==2.6.0 *pascal*" in run
    assert "xformers ==0.0.29.post2" in run
    assert not any(spec.split()[0] == "torch" for spec in run)  # the PyPI name, not conda's


def test_markers_and_extras_are_mapped_per_python() -> None:
    lines = [
        "six>=1.16.0; python_version > '3.11'",
        "fastapi[standard] >= 0.115.0",
        "torch==2.6.0",
        "opencv-python-headless >= 4.11.0",
        "xformers==0.0.29.post2; platform_system == 'Linux' and platform_machine == 'x86_64'",
        "numba == 0.60.0; python_version == '3.9'",
    ]
    mapped = map_requirements(
        lines, ("3.10", "3.12"), {"opencv-python-headless": "opencv"}, {"torch": "pytorch ==2.6.0 *pascal*"}
    )
    specs = {(m.spec, m.python) for m in mapped}
    assert ("six >=1.16.0", "3.12") in specs
    assert ("fastapi >=0.115.0", "") in specs
    assert ("pytorch ==2.6.0 *pascal*", "") in specs
    assert ("opencv >=4.11.0", "") in specs
    assert ("xformers ==0.0.29.post2", "") in specs
    assert not any(m.conda == "numba" for m in mapped)
    assert next(m for m in mapped if m.conda == "fastapi").dropped_extras == ("standard",)
