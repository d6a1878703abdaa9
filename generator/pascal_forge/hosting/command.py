"""`pascal-forge channel`: host the built channel (publish, serve, upload, index).

Build once, install on many Pascal machines: publish a static tree for any web server or GitHub
Pages (packages beside the repodata, or on another host through CEP-15 ``base_url``), serve the
channel read-only on a LAN, or upload the packages to prefix.dev, anaconda.org, quetz or
artifactory with the engine's upload functions.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

from pascal_forge.build.channel import (
    ChannelPackage,
    channel_lock,
    consistency_problems,
    fix_permissions,
    index_channel,
    read_packages,
)
from pascal_forge.console import log
from pascal_forge.errors import ChannelError

DEFAULT_CHANNEL = Path("channel")


def _table(packages: Sequence[ChannelPackage], extra: Sequence[str] = ()) -> str:
    rows = [("package", "version", "build", "subdir", "size", "sha256", *(["destination"] if extra else []))]
    for i, p in enumerate(packages):
        rows.append(
            (p.name, p.version, p.build, p.subdir, str(p.size), p.sha256, *([extra[i]] if extra else []))
        )
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


def run_publish(args: argparse.Namespace) -> int:
    from pascal_forge.hosting.publish import publish

    result = publish(args.channel_dir, args.to, args.base_url)
    if args.json:
        print(
            json.dumps(
                {
                    "target": str(result.target),
                    "base_url": result.base_url,
                    "files": list(result.files),
                    "packages": [dataclasses.asdict(p) for p in result.packages],
                },
                indent=1,
            )
        )
        return 0
    if result.packages:
        print(_table(result.packages))
    where = f"package files at {result.base_url}" if result.base_url else "package files included"
    print(
        f"published {len(result.packages)} packages to {result.target} ({where}); "
        f"{len(result.files)} files, ready for a static web server"
    )
    return 0


def run_serve(args: argparse.Namespace) -> int:
    from pascal_forge.hosting.serve import make_server

    server = make_server(args.channel_dir, args.bind, args.port)
    print(f"serving {server.root} read-only at {server.url} (Ctrl-C stops)", flush=True)
    if args.bind not in {"127.0.0.1", "::1", "localhost"}:
        log(
            f"note: bound to {args.bind}: anyone who can reach this address can download the channel "
            "(plain HTTP, no authentication)"
        )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def run_upload(args: argparse.Namespace) -> int:
    from pascal_forge.hosting.upload import KINDS, parse_target, plan_upload, token_present, upload

    kind, dest = args.to
    if kind not in KINDS:
        args.parser.error(f"--to: unknown target {kind!r} (choose from {', '.join(KINDS)})")
    if args.skip_existing and kind != "prefix":
        args.parser.error("--skip-existing is only supported for --to prefix")
    if args.force and kind not in {"prefix", "anaconda"}:
        args.parser.error("--force is only supported for --to prefix and --to anaconda")
    target = parse_target(kind, dest, args.server, args.label)
    if args.dry_run:
        planned = plan_upload(args.channel_dir, target)
        token_state = "set" if token_present(target) else "NOT set (the real upload would stop here)"
    else:
        planned = upload(args.channel_dir, target, force=args.force, skip_existing=args.skip_existing)
    if args.json:
        print(
            json.dumps(
                {
                    "dry_run": args.dry_run,
                    "target": dataclasses.asdict(target),
                    "uploads": [
                        {
                            "file": str(p.path),
                            "size": p.package.size,
                            "sha256": p.package.sha256,
                            "destination": p.destination,
                        }
                        for p in planned
                    ],
                },
                indent=1,
            )
        )
        return 0
    if planned:
        print(_table([p.package for p in planned], [p.destination for p in planned]))
    if args.dry_run:
        print(
            f"dry run: would upload {len(planned)} packages to {kind} {target.server} ({target.channel}); "
            f"{target.token_env} is {token_state}; nothing was sent"
        )
    else:
        print(f"uploaded {len(planned)} packages to {kind} {target.server} ({target.channel})")
    return 0


def run_index(args: argparse.Namespace) -> int:
    channel: Path = args.channel_dir.resolve()
    if not channel.is_dir():
        raise ChannelError(f"{channel} is not a folder", "pass the channel with --channel-dir")
    with channel_lock(channel):
        fix_permissions(channel)
        index_channel(channel)
        problems = consistency_problems(channel)
    if problems:
        raise ChannelError(
            f"{channel} is still inconsistent after indexing: " + "; ".join(problems[:5]), "rebuild it"
        )
    print(f"indexed {channel}: {len(read_packages(channel))} packages")
    return 0


def _channel_dir(parser: argparse.ArgumentParser, what: str = "the channel") -> None:
    parser.add_argument(
        "--channel-dir",
        type=Path,
        default=DEFAULT_CHANNEL,
        metavar="DIR",
        help=f"{what} (default: ./channel)",
    )


def configure_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    channel = sub.add_parser(
        "channel",
        help="host the built channel: publish, serve, upload, index",
        description=__doc__,
        formatter_class=fmt,
        epilog=(
            "examples:\n"
            "  pascal-forge channel publish --to site\n"
            "  pascal-forge channel serve --bind 0.0.0.0 --port 8000\n"
            "  pascal-forge channel upload --to prefix my-channel --dry-run"
        ),
    )
    actions = channel.add_subparsers(dest="channel_command", required=True, metavar="ACTION")

    pub = actions.add_parser(
        "publish",
        help="write a static channel tree for a web server or GitHub Pages",
        description=(
            "Write DIR as a static conda channel: per-subdir repodata.json and repodata.json.zst,\n"
            "the packages (or, with --base-url, only the repodata, pointing clients at another\n"
            "host for the package files; CEP-15), and index.html listing every package. DIR is\n"
            "replaced as a whole (built beside it, then swapped); it must be new, empty, or an\n"
            "earlier publish output."
        ),
        formatter_class=fmt,
        epilog=(
            "examples:\n"
            "  pascal-forge channel publish --to site            # serve ./site with any web server\n"
            "  pascal-forge channel publish --to site \\\n"
            "      --base-url https://github.com/OWNER/REPO/releases/download/channel-1/"
        ),
    )
    _channel_dir(pub, "the channel to publish")
    pub.add_argument("--to", type=Path, required=True, metavar="DIR", help="output folder")
    pub.add_argument(
        "--base-url",
        metavar="URL",
        help="where the package files are served (absolute http(s) URL); they are then not copied",
    )
    pub.add_argument("--json", action="store_true", help="machine-readable summary on stdout")
    pub.set_defaults(func=run_publish)

    srv = actions.add_parser(
        "serve",
        help="serve the channel read-only over HTTP (GET/HEAD only)",
        description=(
            "Serve a channel (or a publish output) read-only over HTTP. Only the files conda\n"
            "asks for are served: no directory listings, no dotfiles, no symlinks, nothing\n"
            "outside the folder. One log line per request on stderr."
        ),
        formatter_class=fmt,
        epilog=(
            "examples:\n"
            "  pascal-forge channel serve                           # http://127.0.0.1:8000/\n"
            "  pascal-forge channel serve --bind 0.0.0.0 --port 8080  # for the LAN\n"
            "  conda install -c http://HOST:8080/ -c conda-forge vllm-pascal"
        ),
    )
    _channel_dir(srv, "the folder to serve")
    srv.add_argument("--port", type=int, default=8000, metavar="N", help="default 8000; 0 picks a free port")
    srv.add_argument("--bind", default="127.0.0.1", metavar="ADDR", help="default 127.0.0.1 (this host only)")
    srv.set_defaults(func=run_serve)

    up = actions.add_parser(
        "upload",
        help="upload the packages to prefix.dev, anaconda.org, quetz or artifactory",
        description=(
            "Upload every package of the channel with rattler-build's upload functions.\n"
            "DEST: prefix = channel name; anaconda = owner; quetz = https://HOST/get/CHANNEL;\n"
            "artifactory = https://HOST/artifactory/api/conda/REPO.\n"
            "The token is read from PREFIX_API_KEY, ANACONDA_API_KEY, QUETZ_API_KEY or\n"
            "ARTIFACTORY_TOKEN."
        ),
        formatter_class=fmt,
        epilog=(
            "examples:\n"
            "  pascal-forge channel upload --to prefix my-pascal-channel --dry-run\n"
            "  PREFIX_API_KEY=pfx_... pascal-forge channel upload --to prefix my-pascal-channel\n"
            "  pascal-forge channel upload --to anaconda my-org --label main"
        ),
    )
    _channel_dir(up, "the channel to upload")
    up.add_argument(
        "--to",
        nargs=2,
        required=True,
        metavar=("KIND", "DEST"),
        help="prefix|anaconda|quetz|artifactory and the channel name, owner or URL",
    )
    up.add_argument("--server", metavar="URL", help="self-hosted prefix.dev or anaconda server")
    up.add_argument("--label", default="main", help="anaconda.org label (default: main)")
    up.add_argument("--force", action="store_true", help="overwrite packages that exist (prefix, anaconda)")
    up.add_argument("--skip-existing", action="store_true", help="skip packages that exist (prefix)")
    up.add_argument("--dry-run", action="store_true", help="list what would be uploaded; send nothing")
    up.add_argument("--json", action="store_true", help="machine-readable list on stdout")
    up.set_defaults(func=run_upload, parser=up)

    idx = actions.add_parser(
        "index",
        help="(re-)index the channel's repodata from the package files in it",
        description="Index every subdir with py-rattler, under the channel's write lock.",
        formatter_class=fmt,
        epilog="example:\n  pascal-forge channel index --channel-dir channel",
    )
    _channel_dir(idx)
    idx.set_defaults(func=run_index)
