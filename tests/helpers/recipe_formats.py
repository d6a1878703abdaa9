"""Read generated recipes back into comparable data: recipe.yaml through the real rattler-build
engine, meta.yaml the way conda-build evaluates it (jinja2 with its functions, then selectors).

conda-build cannot be installed here (no conda channels), so meta.yaml is evaluated by this small
reader: it implements only what our templates use (compiler/stdlib, CONDA_PY, PKG_HASH,
`# [py==NNN]` / `# [not linux]` selectors) and fails loudly on anything else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import yaml

from pascal_forge.build.engine import engine_render

_SELECTOR = re.compile(r"\s+#\s*\[(?P<expr>[^\]]+)\]\s*$")


@dataclass(frozen=True)
class Comparable:
    sources: tuple[tuple[str, str, str, tuple[str, ...]], ...]  # (location, pin, target, patches)
    build: tuple[str, ...]
    host: tuple[str, ...]
    run: tuple[str, ...]
    name: str
    version: str


def _eval_selector(expr: str, py: str) -> bool:
    env = {"linux": True, "win": False, "osx": False, "py": int(py.replace(".", ""))}
    if not re.fullmatch(r"[\w\s=!<>()]+", expr):
        raise ValueError(f"unsupported selector {expr!r}")
    return bool(eval(expr, {"__builtins__": {}}, env))  # noqa: S307 - restricted to the regex above


def _build_config(recipe_dir: Path) -> dict[str, str]:
    """The first value of each key of the conda_build_config.yaml beside the recipes (conda-build -m)."""
    data = yaml.safe_load((recipe_dir.parent / "conda_build_config.yaml").read_text("utf-8"))
    return {k: str(v[0]) for k, v in data.items()}


def _compiler(cbc: dict[str, str]) -> Any:
    def compiler(lang: str) -> str:
        name = {"c": "c_compiler", "cxx": "cxx_compiler", "cuda": "cuda_compiler"}[lang]
        return f"{cbc[name]}_linux-64 {cbc[name + '_version']}.*"

    return compiler


def _stdlib(cbc: dict[str, str]) -> Any:
    def stdlib(lang: str) -> str:
        return {"c": f"{cbc['c_stdlib']}_linux-64 {cbc['c_stdlib_version']}.*"}[lang]

    return stdlib


def meta_yaml(recipe_dir: Path, python: str) -> dict[str, Any]:
    text = (recipe_dir / "meta.yaml").read_text("utf-8")
    cbc = _build_config(recipe_dir)
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    rendered = env.from_string(text).render(
        compiler=_compiler(cbc),
        stdlib=_stdlib(cbc),
        CONDA_PY=python.replace(".", ""),
        PKG_HASH="0000000",
        PKG_BUILDNUM="0",
    )
    kept = []
    for line in rendered.splitlines():
        m = _SELECTOR.search(line)
        if m is None:
            kept.append(line)
        elif _eval_selector(m.group("expr"), python):
            kept.append(line[: m.start()])
    return yaml.safe_load("\n".join(kept))


def from_meta(recipe_dir: Path, python: str) -> Comparable:
    data = meta_yaml(recipe_dir, python)
    sources = tuple(
        (
            s.get("url") or s["git_url"],
            s.get("sha256") or s["git_rev"],
            s.get("folder", ""),
            tuple(s.get("patches", [])),
        )
        for s in data["source"]
    )
    reqs = data.get("requirements", {})
    return Comparable(
        sources,
        tuple(reqs.get("build") or ()),
        tuple(reqs.get("host") or ()),
        tuple(reqs.get("run") or ()),
        data["package"]["name"],
        str(data["package"]["version"]),
    )


def from_engine(recipe_dir: Path, variants: Path) -> dict[str, Comparable]:
    """Per Python minor version ("3.12"), what the engine rendered."""
    out = {}
    for v in engine_render(recipe_dir / "recipe.yaml", variants):
        data = v.recipe
        sources = tuple(
            (
                s.get("url") or s["git"],
                s.get("sha256") or s["rev"],
                s.get("target_directory", ""),
                tuple(s.get("patches", [])),
            )
            for s in data["source"]
        )
        reqs = data.get("requirements", {})
        out[v.variant["python"].removesuffix(".*")] = Comparable(
            sources,
            tuple(reqs.get("build", ())),
            tuple(reqs.get("host", ())),
            tuple(reqs.get("run", ())),
            v.name,
            v.version,
        )
    return out
