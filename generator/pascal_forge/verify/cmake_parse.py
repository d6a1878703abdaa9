"""A CMake-language parser (commands, quoted/bracket/unquoted arguments) for the evaluator in cmake_archs."""

from __future__ import annotations

import re
from dataclasses import dataclass

from pascal_forge.errors import CMakeEvalError


@dataclass(frozen=True)
class Arg:
    text: str
    quoted: bool


@dataclass(frozen=True)
class Command:
    name: str  # lower case: CMake command names are case-insensitive
    args: tuple[Arg, ...]
    line: int


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


_BRACKET_OPEN = re.compile(r"\[(=*)\[")


def parse(text: str) -> list[Command]:
    """Split CMake text into commands with their raw (unexpanded) arguments."""
    cmds: list[Command] = []
    i, n, line = 0, len(text), 1
    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
            i += 1
        elif c.isspace():
            i += 1
        elif c == "#":
            m = _BRACKET_OPEN.match(text, i + 1)
            if m:  # bracket comment #[[ ... ]]
                end = text.index("]" + m.group(1) + "]", m.end())
                line += text.count("\n", i, end)
                i = end + len(m.group(1)) + 2
            else:
                j = text.find("\n", i)
                i = n if j < 0 else j
        else:
            m = _IDENT.match(text, i)
            if not m:
                raise CMakeEvalError(f"line {line}: unexpected {c!r}")
            name, start_line = m.group(0).lower(), line
            i = m.end()
            while i < n and text[i] in " \t":
                i += 1
            if i >= n or text[i] != "(":
                raise CMakeEvalError(f"line {line}: expected '(' after {name}")
            args, i, line = _parse_args(text, i + 1, line)
            cmds.append(Command(name, tuple(args), start_line))
    return cmds


def _parse_args(text: str, i: int, line: int) -> tuple[list[Arg], int, int]:
    args: list[Arg] = []
    depth = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
            i += 1
        elif c.isspace():
            i += 1
        elif c == "#":
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif c == "(":  # nested parens are arguments of if() conditions
            depth += 1
            args.append(Arg("(", quoted=False))
            i += 1
        elif c == ")":
            if depth == 0:
                return args, i + 1, line
            depth -= 1
            args.append(Arg(")", quoted=False))
            i += 1
        elif c == '"':
            j, buf = i + 1, []
            while text[j] != '"':
                if text[j] == "\\" and j + 1 < n:
                    if text[j + 1] == "\n":  # line continuation
                        line += 1
                    else:
                        buf.append(
                            {"n": "\n", "t": "\t", '"': '"', "\\": "\\"}.get(text[j + 1], "\\" + text[j + 1])
                        )
                    j += 2
                    continue
                if text[j] == "\n":
                    line += 1
                buf.append(text[j])
                j += 1
            args.append(Arg("".join(buf), quoted=True))
            i = j + 1
        else:
            m = _BRACKET_OPEN.match(text, i)
            if m:
                end = text.index("]" + m.group(1) + "]", m.end())
                args.append(Arg(text[m.end() : end], quoted=True))
                line += text.count("\n", i, end)
                i = end + len(m.group(1)) + 2
                continue
            j = i
            while j < n and not text[j].isspace() and text[j] not in '()"#':
                if text[j] == "\\":
                    j += 1
                elif text[j] == "$" and text.startswith("{", j + 1):
                    k = j + 2  # keep ${...} (possibly nested) in one argument
                    level = 1
                    while k < n and level:
                        level += {"{": 1, "}": -1}.get(text[k], 0)
                        k += 1
                    j = k - 1
                j += 1
            args.append(Arg(text[i:j], quoted=False))
            i = j
    raise CMakeEvalError("unterminated argument list")
