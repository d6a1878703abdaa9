"""Thin command-line layer: parse options, call the stages, map errors to exit codes."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from importlib import import_module
from pathlib import Path

from pascal_forge import __version__
from pascal_forge.errors import PascalForgeError, SpecError, StaleRecipesError
from pascal_forge.options import RECIPES_ROOT, selected_stack, spec_option
from pascal_forge.recipes.docs import render_patch_docs
from pascal_forge.recipes.render import render_tree
from pascal_forge.recipes.tree import check_tree, write_tree
from pascal_forge.stack.model import Spec
from pascal_forge.stack.spec import load_spec

#: Modules that add their own sub-command through ``configure_parser(subparsers)``.
COMMAND_MODULES = (
    "pascal_forge.verify.check",
    "pascal_forge.verify.cuda",
    "pascal_forge.update.command",
    "pascal_forge.build.command",
    "pascal_forge.build.resolve",
    "pascal_forge.hosting.command",
    "pascal_forge.doctor.command",
)


NIX_OUT = Path("nix")
FORMATS = ("conda", "nix")


def default_out(fmt: str, stack: str) -> Path:
    return NIX_OUT if fmt == "nix" else RECIPES_ROOT / stack


def _every_stack(args: argparse.Namespace) -> bool:
    """--all-stacks, or a bare `--check` of the conda trees."""
    return bool(
        args.all_stacks
        or (args.check and args.format == "conda" and not (args.out or args.stack or args.vllm))
    )


def _stacks_to_generate(spec: Spec, args: argparse.Namespace) -> list[str]:
    """Every complete stack (see _every_stack); else the selected one."""
    every = _every_stack(args)
    if every and args.out:
        raise SpecError("--all-stacks writes one folder per stack under ./recipes", "drop --out")
    if every:
        return [s.name for s in spec.stacks if not s.draft]
    return [selected_stack(spec, args)]


def _check_no_stray_trees(names: list[str]) -> None:
    """A bare `generate --check` also fails for a recipes/ folder that no stack of the spec renders
    (a removed or renamed stack, a test run's leftovers): users would build it as if it were current."""
    if not RECIPES_ROOT.is_dir():
        return
    stray = sorted(p.name for p in RECIPES_ROOT.iterdir() if p.is_dir() and p.name not in names)
    if stray:
        listing = "\n  ".join(f"- {RECIPES_ROOT / n}/ (no stack of the spec renders it)" for n in stray)
        raise StaleRecipesError(
            f"{RECIPES_ROOT} holds trees of no stack:\n  {listing}",
            "git rm -r the folder, or add the stack to the spec (pascal-forge update --write)",
        )


def run_generate(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec)
    names = _stacks_to_generate(spec, args)
    for name in names:
        start = time.perf_counter()
        stack = spec.stack(name)
        if args.format == "nix":
            from pascal_forge.recipes.nix import render_nix_tree

            files = render_nix_tree(spec, stack.name)
        else:
            files = render_tree(spec, stack.name)
        out: Path = args.out or default_out(args.format, stack.name)
        if args.check:
            command = "pascal-forge generate" + (
                " --format nix" if args.format == "nix" else f" --stack {name}"
            )
            check_tree(files, out, command)
            print(f"{out}: up to date ({len(files)} files)")
            continue
        write_tree(files, out)
        print(
            f"wrote {len(files)} files to {out} for stack {stack.name} "
            f"(vllm {stack.vllm}, torch {stack.torch}, triton {stack.triton}, CUDA {stack.cuda}) "
            f"in {time.perf_counter() - start:.2f}s"
        )
    if args.check and _every_stack(args) and args.format == "conda":
        _check_no_stray_trees(names)
    return 0


def run_docs(args: argparse.Namespace) -> int:
    doc = render_patch_docs(load_spec(args.spec))
    if args.check:
        target = args.out / doc.path
        if not target.is_file() or target.read_bytes() != doc.content:
            raise StaleRecipesError(f"{target} is stale", "run `pascal-forge docs` and commit the result")
        print(f"{target}: up to date")
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / doc.path
    tmp = target.with_suffix(".md.tmp")
    tmp.write_bytes(doc.content)
    tmp.replace(target)
    print(f"wrote {target}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pascal-forge",
        description="Pinned, patched conda recipes that make vLLM run on NVIDIA Pascal GPUs.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  pascal-forge generate            # recipes/ for the built-in default stack",
    )
    parser.add_argument("--version", action="version", version=f"pascal-forge {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    gen = sub.add_parser(
        "generate",
        help="write recipes (recipe.yaml, meta.yaml, build.sh, patches) or a Nix overlay for a stack",
        description=(
            "Render the recipes of one stack (conda: recipe.yaml + meta.yaml; nix: a nixpkgs overlay "
            "and flake) into a folder, replaced as a whole, atomically."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "examples:\n"
            "  pascal-forge generate                       # default stack into ./recipes/vllm-0.8.5\n"
            "  pascal-forge generate --vllm 0.11.0         # that stack into ./recipes/vllm-0.11.0\n"
            "  pascal-forge generate --all-stacks          # every complete stack, one folder each\n"
            "  pascal-forge generate --check               # exit 7 and list files if a ./recipes tree is stale\n"
            "  pascal-forge generate --format nix          # nixpkgs overlay + flake into ./nix\n"
            "  pascal-forge generate --spec my.toml --out /tmp/recipes"
        ),
    )
    spec_option(gen)
    gen.add_argument(
        "--format",
        choices=FORMATS,
        default="conda",
        help="conda recipes (default) or a Nix overlay from the same spec and patches",
    )
    gen.add_argument(
        "--out", type=Path, metavar="DIR", help="default: ./recipes/STACK (conda) or ./nix (nix)"
    )
    gen.add_argument(
        "--all-stacks",
        action="store_true",
        help="every complete stack of the spec, each into ./recipes/STACK (a bare --check does this too)",
    )
    gen.add_argument("--check", action="store_true", help="compare with DIR instead of writing")
    gen.set_defaults(func=run_generate)

    docs = sub.add_parser(
        "docs",
        help="write docs/patches.md from the patch metadata",
        description="Render the patch list (why, references, proof) from the patch library's series.toml files.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  pascal-forge docs             # writes docs/patches.md\n  pascal-forge docs --check",
    )
    docs.add_argument("--spec", type=Path, metavar="FILE", help="TOML spec merged over the built-in one")
    docs.add_argument("--out", type=Path, default=Path("docs"), metavar="DIR", help="default: ./docs")
    docs.add_argument("--check", action="store_true", help="exit 7 if DIR/patches.md is stale")
    docs.set_defaults(func=run_docs)

    for name in COMMAND_MODULES:
        try:
            module = import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.configure_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except PascalForgeError as exc:
        print(exc.render(), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return code


def console() -> None:
    """Console entry point: exit without interpreter finalization.

    py-rattler 0.28's indexer leaves a native thread behind that can abort the interpreter at
    shutdown ("PyGILState_Release ... finalizing") after the work is done and reported, turning
    a success into a crash exit. Flushing and leaving with os._exit keeps the real exit code.
    """
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    console()
