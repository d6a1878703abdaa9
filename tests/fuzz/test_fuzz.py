"""Property-based fuzzing of every user-facing parser and the channel server (issue 16).

Each target ends in success or one of our errors (an ``error[...]`` line and its exit code, or a
4xx for the server), never another exception, and writes nothing outside its folder. A bounded,
derandomized number of examples runs here; ``scripts/fuzz.py`` runs the same targets much longer.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from helpers import fuzz

FAST = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,  # CI sees the same examples every run
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


@pytest.mark.parametrize("target", sorted(fuzz.TARGETS))
def test_no_traceback_on_any_input(target: str) -> None:
    strategy, check = fuzz.TARGETS[target]
    examples = 60 if target in {"serve-path", "pep691", "repodata"} else 25

    @settings(FAST, max_examples=examples)
    @given(strategy)
    def run(value: Any) -> None:
        check(value)

    run()


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[int, list[str]]]:
    with fuzz.served_channel() as server:
        yield server


def test_server_answers_every_request_without_a_traceback(served: tuple[int, list[str]]) -> None:
    port, errors = served

    @settings(FAST, max_examples=40)
    @given(fuzz.REQUEST)
    def run(request: bytes) -> None:
        fuzz.check_request(port, errors, request)

    run()
