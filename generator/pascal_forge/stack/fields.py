"""Typed reads from parsed TOML tables: each names the file and key it rejects."""

from __future__ import annotations

import re
from typing import Any

from pascal_forge.errors import PatchLibraryError, SpecError


def check_keys(
    raw: dict[str, Any], allowed: set[str], where: str, error: type[SpecError | PatchLibraryError] = SpecError
) -> None:
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise error(f"{where}: unknown key(s) {unknown}", f"allowed keys: {sorted(allowed)}")


def as_table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise SpecError(f"{where} must be a table", "")
    return value


def table_key(raw: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    return as_table(raw.get(key, {}), f"{where}: {key}")


def str_key(raw: dict[str, Any], key: str, where: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value:
        raise SpecError(f"{where}: '{key}' must be a non-empty string", f'set {key} = "..."')
    return value


def str_list(raw: dict[str, Any], key: str, where: str) -> list[str]:
    value = raw.get(key)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise SpecError(f"{where}: '{key}' must be a non-empty list of strings", f'set {key} = ["..."]')
    return value


ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
