"""Run `pascal-forge verify-cuda` without the CLI entry point (e.g. on the device machine).

usage: PYTHONPATH=generator python3 scripts/verify_cuda.py [verify-cuda options]
"""

from __future__ import annotations

import argparse
import sys

from pascal_forge.errors import PascalForgeError
from pascal_forge.verify import cuda


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="verify_cuda.py")
    cuda.configure_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["verify-cuda", *argv])
    try:
        return int(args.func(args))
    except PascalForgeError as exc:
        print(exc.render(), file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
