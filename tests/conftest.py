"""Test set-up: unit tests cannot reach the network; integration tests are marked and opt in to it."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest


class NetworkBlockedError(RuntimeError):
    pass


@pytest.fixture(autouse=True)
def _no_network(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Unit tests must not touch the network: connecting anywhere but loopback raises."""
    if request.node.get_closest_marker("integration") or request.node.get_closest_marker("online"):
        yield
        return
    real_connect = socket.socket.connect

    def guarded(sock: socket.socket, address: Any) -> Any:
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and (host.startswith("127.") or host in {"::1", "localhost"}):
            return real_connect(sock, address)
        if sock.family == socket.AF_UNIX:
            return real_connect(sock, address)
        raise NetworkBlockedError(f"unit test tried to connect to {address!r}; mark it integration")

    monkeypatch.setattr(socket.socket, "connect", guarded)
    monkeypatch.setattr(socket, "getaddrinfo", _blocked_getaddrinfo(socket.getaddrinfo))
    yield


def _blocked_getaddrinfo(real: Any) -> Any:
    def wrapper(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host in (None, "localhost") or (
            isinstance(host, str) and (host.startswith("127.") or host == "::1")
        ):
            return real(host, *args, **kwargs)
        raise NetworkBlockedError(f"unit test tried to resolve {host!r}; mark it integration")

    return wrapper


@pytest.fixture(scope="session")
def standin_upstream(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """An indexed channel standing in for conda-forge (unreachable here): real names, versions,
    build strings and dependency specs from public lock files (tests/data/conda-forge-standin.md)."""
    from dataclasses import replace

    from helpers import fake_tools
    from helpers.condapkgs import Executable, make_channel, standin_packages

    packages = [
        # triton 3.2.0 runs the ptxas of cuda-nvcc-tools; its stand-in prints the real banner.
        replace(
            p, files={"bin/ptxas": Executable(fake_tools.script(fake_tools.ptxas_text(p.version)).encode())}
        )
        if p.name == "cuda-nvcc-tools"
        else p
        for p in standin_packages()
    ]
    return make_channel(tmp_path_factory.mktemp("conda-forge-standin"), packages)
