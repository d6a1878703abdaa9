"""`pascal-forge build`: options in, build_channel and resolve-check out."""

from __future__ import annotations

import argparse
from pathlib import Path

from pascal_forge.build.backends import BACKENDS, BuildOptions, BuildOutcome, build_channel
from pascal_forge.build.channel import (
    human_size,
    read_packages,
)
from pascal_forge.console import log
from pascal_forge.errors import BuildError


def summary_table(outcomes: tuple[BuildOutcome, ...]) -> str:
    rows = [("package", "build string", "status", "size", "sha256")]
    rows += [
        (
            f"{o.target.variant.name} {o.target.variant.version}",
            o.target.variant.build_string,
            o.status,
            human_size(o.size),
            o.sha256,
        )
        for o in outcomes
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def run(args: argparse.Namespace) -> int:
    from pascal_forge.build.resolve import raise_on_failure, report, resolve_check
    from pascal_forge.build.stacks import render_stacks, select_stacks
    from pascal_forge.stack.spec import load_spec

    channel: Path = args.channel_dir
    trees: list[Path] = [args.recipes] if args.recipes is not None else []
    if not trees:
        spec = load_spec(args.spec)
        stacks = select_stacks(spec, args.stack, args.all_stacks)
        # one folder per stack: every stack's vllm-pascal, pytorch and triton go into the one channel
        trees = render_stacks(spec, stacks, channel.resolve().parent / f".{channel.name}.recipes")
        log(f"rendered stack(s) {', '.join(s.name for s in stacks)} into {trees[0].parent}")
    variants = []
    for item in args.variant or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise BuildError(f"--variant {item!r} is not KEY=VALUE", "e.g. --variant python=3.12")
        variants.append((key, value))
    options = BuildOptions(
        channel_dir=channel,
        channels=tuple(args.channels or ["conda-forge"]),
        only=tuple(args.only or ()),
        variants=tuple(variants),
        backend=args.backend,
        test=args.test,
    )
    outcomes = tuple(o for tree in trees for o in build_channel(tree, options, log))
    print(summary_table(outcomes))
    built = sum(o.status == "built" for o in outcomes)
    print(f"{built} built, {len(outcomes) - built} up to date; channel {channel} is indexed")
    if args.resolve_check and any(p.name == "vllm-pascal" for p in read_packages(channel)):
        results = resolve_check(channel, options.channels)
        print(report(results))
        raise_on_failure(results)
    elif args.resolve_check:
        log("resolve-check skipped: the channel holds no vllm-pascal yet")
    return 0


def configure_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "build",
        help="build the stack's recipes into a local conda channel (incremental, atomic)",
        description=(
            "Build triton -> pytorch overlay -> vllm-pascal with the rattler-build engine into a local\n"
            "channel, resolving dependencies from that channel first, then the -c channels. A variant\n"
            "whose definition (recipe, patches, source pins, variant) is unchanged is not rebuilt; each\n"
            "new package enters the channel in one atomic step. Ends with resolve-check."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "examples:\n"
            "  pascal-forge build                                  # all recipes into ./channel\n"
            "  pascal-forge build --only triton-pascal --variant python=3.12\n"
            "  pascal-forge build --stack vllm-0.8.5 --stack vllm-0.26.0   # two stacks, one channel\n"
            "  pascal-forge build --all-stacks\n"
            "  pascal-forge build -c https://mirror.example/conda-forge --channel-dir /srv/pascal"
        ),
    )
    parser.add_argument("--spec", type=Path, metavar="FILE", help="TOML spec merged over the built-in one")
    parser.add_argument(
        "--stack",
        action="append",
        metavar="NAME",
        help="stack to build (repeatable: several stacks share the channel; default: the spec's default_stack)",
    )
    parser.add_argument(
        "--all-stacks", action="store_true", help="build every non-draft stack into the channel"
    )
    parser.add_argument(
        "--recipes", type=Path, metavar="DIR", help="build this generated tree instead of the spec"
    )
    parser.add_argument("--only", action="append", metavar="NAME", help="recipe folder to build (repeatable)")
    parser.add_argument(
        "--channel-dir", type=Path, default=Path("channel"), metavar="DIR", help="default: ./channel"
    )
    parser.add_argument(
        "-c",
        "--channel",
        dest="channels",
        action="append",
        metavar="CHANNEL",
        help="upstream channel name or URL, after the local one (repeatable; default: conda-forge)",
    )
    parser.add_argument(
        "--variant", action="append", metavar="K=V", help="only variants with K=V, e.g. python=3.12"
    )
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default="engine",
        help="engine (py-rattler-build, default) or a CLI on PATH",
    )
    parser.add_argument(
        "--test",
        choices=("native", "skip"),
        default="native",
        help="run each recipe's package test after building (default: native)",
    )
    parser.add_argument(
        "--no-resolve-check", dest="resolve_check", action="store_false", help="skip the final resolve-check"
    )
    parser.set_defaults(func=run)
