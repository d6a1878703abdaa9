"""Typed reads from parsed TOML tables: each names the file and key it rejects."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from pascal_forge.errors import PatchLibraryError, SpecError

#: The error a reader raises: SpecError for spec files, PatchLibraryError for series.toml.
TableError = type[SpecError | PatchLibraryError]


def parse_toml(text: str, origin: str, error: TableError = SpecError) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{origin}: not valid TOML: {exc}", "fix the syntax at the line named above") from exc
    except RecursionError as exc:  # tomllib recurses once per nesting level of arrays/inline tables
        raise error(f"{origin}: arrays or inline tables nested too deeply", "flatten the value") from exc


def read_toml(path: Path, error: TableError = SpecError, hint: str = "check the path") -> dict[str, Any]:
    """``path`` parsed as TOML; unreadable, non-UTF-8 or malformed files raise ``error`` naming it."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise error(f"cannot read {path}: {exc.strerror or exc}", hint) from exc
    return parse_toml(decode_utf8(data, str(path), error), str(path), error)


def decode_utf8(data: bytes, origin: str, error: TableError = SpecError) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise error(
            f"{origin}: not UTF-8 (byte {data[exc.start]:#04x} at offset {exc.start}, line {line})",
            "TOML files must be UTF-8: re-save the file as UTF-8",
        ) from exc


def check_keys(raw: dict[str, Any], allowed: set[str], where: str, error: TableError = SpecError) -> None:
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise error(f"{where}: unknown key(s) {unknown}", f"allowed keys: {sorted(allowed)}")


def as_table(value: Any, where: str, error: TableError = SpecError) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise error(f"{where} must be a table, got {type(value).__name__}", "write it as [table] or {k = v}")
    return value


def table_key(raw: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    return as_table(raw.get(key, {}), f"{where}: {key}")


def str_key(raw: dict[str, Any], key: str, where: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value:
        raise SpecError(f"{where}: '{key}' must be a non-empty string", f'set {key} = "..."')
    return value


def opt_str(raw: dict[str, Any], key: str, where: str, error: TableError = SpecError) -> str:
    """An optional string key ("" when absent)."""
    value = raw.get(key, "")
    if not isinstance(value, str):
        raise error(f"{where}: '{key}' must be a string, got {type(value).__name__}", f'set {key} = "..."')
    return value


def opt_bool(raw: dict[str, Any], key: str, where: str) -> bool:
    value = raw.get(key, False)
    if not isinstance(value, bool):
        raise SpecError(f"{where}: '{key}' must be true or false, got {value!r}", f"set {key} = true")
    return value


def opt_list(raw: dict[str, Any], key: str, where: str, error: TableError = SpecError) -> list[Any]:
    value = raw.get(key, [])
    if not isinstance(value, list):
        raise error(f"{where}: '{key}' must be a list, got {type(value).__name__}", f"set {key} = [...]")
    return value


def str_list(raw: dict[str, Any], key: str, where: str) -> list[str]:
    value = raw.get(key)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise SpecError(f"{where}: '{key}' must be a non-empty list of strings", f'set {key} = ["..."]')
    return value


ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
