"""Writing a plan: the spec's stack block (rendered, never dumped) and the new stack's recipes."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, replace
from pathlib import Path

from pascal_forge.errors import SpecError
from pascal_forge.update.plan import (
    UpdatePlan,
)

SPEC_HEADER = (
    "# pascal-forge spec: stacks here are merged over the built-in spec (see README, Commands).\nschema = 1\n"
)


def markers(name: str) -> tuple[str, str]:
    return f'# BEGIN stack "{name}"', f'# END stack "{name}"'


def stack_block(plan: UpdatePlan, draft: str = "") -> str:
    from pascal_forge.recipes.render import environment

    begin, end = markers(plan.stack.name)
    return (
        environment()
        .get_template("stack.toml.j2")
        .render(
            stack=replace(plan.stack, draft=" ".join(draft.split())),
            base=plan.base,
            requirements=plan.requirements_to_write(),
            begin=begin,
            end=end,
        )
    )


def spec_with_stack(text: str, block: str, name: str, origin: str) -> str:
    """``text`` with ``block`` replacing the marked block of stack ``name``, or appended."""
    begin, end = markers(name)
    if begin in text:
        start = text.index(begin)
        stop = text.find(end, start)
        if stop < 0:
            raise SpecError(
                f"{origin}: '{begin}' has no '{end}'", "restore the end marker or remove the block"
            )
        return text[:start] + block.rstrip("\n") + text[stop + len(end) :]
    try:
        existing = tomllib.loads(text).get("stacks", {})
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{origin}: not valid TOML: {exc}", "fix the syntax first") from exc
    if name in existing:
        raise SpecError(
            f"{origin} already defines stack {name!r} by hand (no '{begin}' marker)",
            f'remove [stacks."{name}"] from {origin} (or rename it), then run update again',
        )
    return text.rstrip("\n") + "\n\n" + block


@dataclass(frozen=True)
class Written:
    spec: Path
    recipes: Path | None  # None for a draft: its recipes are not rendered
    files: int


def write_update(plan: UpdatePlan, spec_path: Path, out: Path, draft: str = "") -> Written:
    """Add the stack to ``spec_path`` and render its recipes into ``out``; all or nothing.

    The new spec text is validated by loading it before anything is written, the recipes are
    rendered in memory, then written beside ``out`` and swapped in (render.write_tree), and the
    spec file is replaced last through a temporary file. A draft stack gets no recipes.
    """
    from pascal_forge.recipes.render import render_tree
    from pascal_forge.recipes.tree import write_tree
    from pascal_forge.stack.spec import load_spec

    existing = spec_path.read_text("utf-8") if spec_path.exists() else SPEC_HEADER
    text = spec_with_stack(existing, stack_block(plan, draft), plan.stack.name, str(spec_path))
    spec = load_spec(spec_path, text=text)
    stack = spec.stack(plan.stack.name)
    files = () if stack.draft else render_tree(spec, stack.name)
    spec_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = spec_path.with_name(f".{spec_path.name}.update-tmp")
    try:
        tmp.write_text(text, "utf-8")
        if files:
            write_tree(files, out)
        tmp.replace(spec_path)
    finally:
        tmp.unlink(missing_ok=True)
    return Written(spec_path, out if files else None, len(files))
