"""docs/patches.md from the patch library's series.toml metadata."""

from __future__ import annotations

from pascal_forge.recipes.render import environment
from pascal_forge.recipes.tree import RenderedFile
from pascal_forge.stack.model import (
    Spec,
)


def render_patch_docs(spec: Spec) -> RenderedFile:
    """docs/patches.md from the patch library's metadata."""
    groups = [
        ("vllm", "vLLM", "vllm-pascal"),
        ("torch", "PyTorch", "pytorch-pascal"),
        ("triton", "Triton", "triton-pascal"),
    ]
    text = environment().get_template("patches.md.j2").render(groups=groups, patches=spec.patches)
    return RenderedFile("patches.md", text.encode("utf-8"))
