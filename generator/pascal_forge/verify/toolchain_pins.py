"""The pinned CUDA 12.4 pieces (data/cuda_toolchain.toml) as typed values."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from typing import Any


@dataclass(frozen=True)
class Deb:
    name: str
    version: str
    sha256: str
    size: int
    urls: tuple[str, ...]


@dataclass(frozen=True)
class Wheel:
    name: str
    version: str
    url: str
    sha256: str
    size: int
    record_sha256: str
    extract: tuple[tuple[str, str], ...]  # (folder in wheel, folder in toolchain)

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[1]


@dataclass(frozen=True)
class CutlassPin:
    version: str
    commit: str
    url: str
    tree_sha256: str
    trees: tuple[str, ...]


@dataclass(frozen=True)
class Pins:
    name: str
    host_compiler: str
    debs: tuple[Deb, ...]
    wheels: tuple[Wheel, ...]
    cutlass: CutlassPin


def load_pins() -> Pins:
    text = resources.files("pascal_forge.verify").joinpath("data/cuda_toolchain.toml").read_text()
    raw: dict[str, Any] = tomllib.loads(text)
    tc = raw["toolchain"]
    return Pins(
        name=tc["name"],
        host_compiler=tc["host_compiler"],
        debs=tuple(
            Deb(d["name"], d["version"], d["sha256"], d["size"], tuple(d["urls"])) for d in raw["deb"]
        ),
        wheels=tuple(
            Wheel(
                w["name"],
                w["version"],
                w["url"],
                w["sha256"],
                w["size"],
                w["record_sha256"],
                tuple(sorted(w["extract"].items())),
            )
            for w in raw["wheel"]
        ),
        cutlass=CutlassPin(
            raw["cutlass"]["version"],
            raw["cutlass"]["commit"],
            raw["cutlass"]["url"],
            raw["cutlass"]["tree_sha256"],
            tuple(raw["cutlass"]["trees"]),
        ),
    )
