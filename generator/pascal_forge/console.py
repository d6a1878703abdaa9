"""One place for progress output: every stage reports to stderr, flushed, so stdout stays for results."""

from __future__ import annotations

import sys
from collections.abc import Callable

#: What stages take to report progress (``log`` in, nothing back); tests pass a list's append.
Log = Callable[[str], None]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
