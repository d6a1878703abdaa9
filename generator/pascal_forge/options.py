"""Options shared by several sub-commands: which spec and which stack (one definition, no drift)."""

from __future__ import annotations

import argparse
from pathlib import Path

from pascal_forge.stack.model import Spec

#: Generated conda recipes: one folder per stack, e.g. recipes/vllm-0.8.5/ (the Nix overlay is ./nix).
RECIPES_ROOT = Path("recipes")


def spec_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--spec", type=Path, metavar="FILE", help="TOML spec merged over the built-in one")
    choose = parser.add_mutually_exclusive_group()
    choose.add_argument("--stack", metavar="NAME", help="stack to use (default: the spec's default_stack)")
    choose.add_argument("--vllm", metavar="VERSION", help="use the stack that pins this vLLM version")


def selected_stack(spec: Spec, args: argparse.Namespace) -> str:
    """The stack name picked by --stack / --vllm (the spec's default if neither)."""
    if getattr(args, "vllm", None):
        return spec.stack_for("vllm", args.vllm).name
    return spec.stack(getattr(args, "stack", None)).name
