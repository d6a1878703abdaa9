"""Which CUDA sources vLLM's CMake would compile for given archs, read from the (patched) CMakeLists.txt.

A small CMake *evaluator* for the constructs vLLM's top-level CMakeLists.txt uses to choose sources:
`set`, `list(APPEND|REMOVE_ITEM|REMOVE_DUPLICATES|SORT)`, `if/elseif/else/endif` (NOT, AND, OR,
parentheses, STREQUAL, VERSION_*, IN_LIST, DEFINED, EQUAL/LESS/GREATER, variable auto-dereference),
`file(GLOB)`, `message(FATAL_ERROR)`, `return()`, and native emulations of vLLM's own helpers from
cmake/utils.cmake: `cuda_archs_loose_intersection`, `extract_unique_cuda_archs_ascending`,
`get_torch_gpu_compiler_flags`, `set_gencode_flags_for_srcs`, `define_gpu_extension_target` (from vLLM
0.13 `define_extension_target`), plus
`target_compile_definitions`.

Limits (on purpose; the result is what the kernels' arch gates decide, not a full CMake):
- `include()`, `find_package()`, `FetchContent` and other commands are ignored; the facts they would
  establish are given as initial variables (see `initial_variables`). `execute_process()` is not
  run and counts as successful, so sources it would generate (Machete, Marlin-MoE: sm_80+ only) are
  missing from the globs that follow it.
- `function`/`macro` bodies, `foreach` and `while` loops are skipped (recorded in `skipped`); vLLM's
  top level uses loops only inside code paths that do not choose sources.
- Generator expressions are kept as text; `$ENV{..}` and `$CACHE{..}` expand to empty (a clean build).
- `if()` follows CMake's rules for the operators above; anything else raises `CMakeEvalError`.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pascal_forge.errors import CMakeEvalError
from pascal_forge.verify.cmake_parse import Arg, Command, parse

# --------------------------------------------------------------------------------------------
# tokenizer
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# arch helpers (vLLM cmake/utils.cmake)
# --------------------------------------------------------------------------------------------


def _ver(v: str) -> tuple[int, ...]:
    """'9.0a' -> (9, 0): CMake's VERSION_* comparisons read the leading numeric components."""
    parts = []
    for p in v.split("."):
        m = re.match(r"\d+", p)
        if not m:
            break
        parts.append(int(m.group(0)))
    return tuple(parts) or (0,)


def _vcmp(a: str, b: str) -> int:
    va, vb = _ver(a), _ver(b)
    width = max(len(va), len(vb))
    va, vb = va + (0,) * (width - len(va)), vb + (0,) * (width - len(vb))
    return (va > vb) - (va < vb)


def _natural_key(s: str) -> list[object]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


def cuda_archs_loose_intersection(src: Sequence[str], tgt: Sequence[str]) -> list[str]:
    """vLLM's `cuda_archs_loose_intersection` (cmake/utils.cmake, 0.8.5), step for step.

    For each target arch, the highest source arch <= it with the same major version; `9.0a`/`10.0a`
    in src replace `9.0`/`10.0` in tgt.
    """
    src_l = list(dict.fromkeys(src))
    tgt_l = list(tgt)
    out: list[str] = []
    for special, plain in (("9.0a", "9.0"), ("10.0a", "10.0")):
        if special in src_l:
            src_l = [a for a in src_l if a != special]
            if plain in tgt:  # upstream tests the original list here, not the shrinking copy
                tgt_l = [a for a in tgt_l if a != plain]
                out = [special]  # `set(_CUDA_ARCHS ...)`: replaces, as upstream does
    src_l.sort(key=_natural_key)
    for arch in tgt_l:
        found = None
        major = arch.split(".", 1)[0]
        for s in src_l:
            if _vcmp(s, arch) <= 0:
                if s.split(".", 1)[0] == major:
                    found = s
            else:
                break
        if found:
            out.append(found)
    return list(dict.fromkeys(out))


def gencode_flags(archs: Iterable[str], ptx_arch: str | None = None) -> list[str]:
    """`set_gencode_flags_for_srcs`: SASS for each arch, plus PTX for BUILD_PTX_FOR_ARCH."""
    flags: list[str] = []
    archs_l = list(archs)
    for a in archs_l:
        num = a.replace(".", "")
        flags += ["-gencode", f"arch=compute_{num},code=sm_{num}"]
    if ptx_arch and archs_l:
        highest = sorted(archs_l, key=_natural_key)[-1]
        if _vcmp(highest, ptx_arch) >= 0:
            num = ptx_arch.replace(".", "")
            flags += ["-gencode", f"arch=compute_{num},code=compute_{num}"]
    return flags


# --------------------------------------------------------------------------------------------
# evaluator
# --------------------------------------------------------------------------------------------

#: torch 2.6.0 `torch.utils.cpp_extension.COMMON_NVCC_FLAGS`; vLLM drops the __CUDA_NO_* ones
#: for CUDA >= 12 and adds -DENABLE_FP8 for CUDA >= 11.8 (get_torch_gpu_compiler_flags).
TORCH_COMMON_NVCC_FLAGS = (
    "-D__CUDA_NO_HALF_OPERATORS__",
    "-D__CUDA_NO_HALF_CONVERSIONS__",
    "-D__CUDA_NO_BFLOAT16_CONVERSIONS__",
    "-D__CUDA_NO_HALF2_OPERATORS__",
    "--expt-relaxed-constexpr",
)

CUTLASS_PLACEHOLDER = "@CUTLASS_DIR@"

_FALSE = {"", "0", "OFF", "NO", "FALSE", "N", "IGNORE", "NOTFOUND"}
_TRUE = {"1", "ON", "YES", "TRUE", "Y"}


@dataclass(frozen=True)
class Target:
    """One `define_gpu_extension_target` call, as the evaluator saw it."""

    name: str
    language: str
    sources: tuple[str, ...]
    compile_flags: tuple[str, ...]
    include_dirs: tuple[str, ...]
    definitions: tuple[str, ...]
    use_sabi: str = ""  # USE_SABI: the Python limited API version the module is built for


def limited_api_define(use_sabi: str) -> str | None:
    """FindPython's Python_add_library(USE_SABI v): `3` stays 3, `3.8` becomes 0x03080000."""
    if not use_sabi:
        return None
    parts = use_sabi.split(".")
    if len(parts) == 1:
        return f"Py_LIMITED_API={parts[0]}"
    return f"Py_LIMITED_API=0x{int(parts[0]):02X}{int(parts[1]):02X}0000"


@dataclass(frozen=True)
class CompileUnit:
    """A source CMake would compile, with the archs its gencode flags name."""

    source: str
    target: str
    language: str  # "CUDA" for .cu, "CXX" for host C++
    archs: tuple[str, ...]
    ptx_arch: str | None
    flags: tuple[str, ...]  # the target's COMPILE_FLAGS (CUDA only) and definitions
    include_dirs: tuple[str, ...]


@dataclass(frozen=True)
class Selection:
    cuda_archs: tuple[str, ...]
    units: tuple[CompileUnit, ...]
    skipped: tuple[str, ...]  # constructs not evaluated (documented limits)
    dropped: tuple[str, ...]  # CUDA sources of a target whose arch list ended up empty

    def cuda_units(self) -> tuple[CompileUnit, ...]:
        return tuple(u for u in self.units if u.language == "CUDA")


@dataclass
class _State:
    src_dir: Path
    requested_archs: tuple[str, ...]
    vars: dict[str, str]
    gencode: dict[str, list[str]] = field(default_factory=dict)
    ptx: dict[str, str] = field(default_factory=dict)
    targets: dict[str, Target] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)


def initial_variables(
    src_dir: Path, cuda_version: str = "12.4.131", torch_version: str = "2.6.0"
) -> dict[str, str]:
    """What find_package(Torch/CUDA/Python) and setup.py would have established for a CUDA build."""
    major_minor = ".".join(cuda_version.split(".")[:2])
    return {
        "VLLM_TARGET_DEVICE": "cuda",
        "VLLM_PYTHON_EXECUTABLE": "python3",  # setup.py passes it
        "NVCC_EXECUTABLE": "nvcc",  # find_program(NVCC_EXECUTABLE nvcc)
        "CUDA_FOUND": "TRUE",
        "Torch_VERSION": torch_version,
        "CUDA_VERSION": major_minor,
        "CMAKE_CUDA_COMPILER_VERSION": cuda_version,
        "CMAKE_CURRENT_SOURCE_DIR": str(src_dir),
        "CMAKE_SOURCE_DIR": str(src_dir),
        # set by CUTLASS's own CMake through FetchContent; the compile driver substitutes the path
        "CUTLASS_INCLUDE_DIR": f"{CUTLASS_PLACEHOLDER}/include",
        "CUTLASS_TOOLS_UTIL_INCLUDE_DIR": f"{CUTLASS_PLACEHOLDER}/tools/util/include",
    }


def select_sources(
    cmake_text: str,
    src_dir: Path,
    archs: Sequence[str],
    variables: dict[str, str] | None = None,
) -> Selection:
    """Evaluate vLLM's CMakeLists.txt for TORCH_CUDA_ARCH_LIST=archs and list what it compiles."""
    requested = tuple(sorted(dict.fromkeys(archs), key=_natural_key))
    st = _State(src_dir, requested, dict(variables if variables is not None else initial_variables(src_dir)))
    _run(parse(cmake_text), st)
    units: list[CompileUnit] = []
    dropped: list[str] = []
    for t in st.targets.values():
        for s in dict.fromkeys(t.sources):  # add_library ignores repeated sources
            lang = "CUDA" if s.endswith(".cu") and t.language == "CUDA" else "CXX"
            archs_s = tuple(dict.fromkeys(st.gencode.get(s, [])))
            if lang == "CUDA" and not archs_s:
                dropped.append(s)
                continue
            sabi = limited_api_define(t.use_sabi)
            defs = (f"TORCH_EXTENSION_NAME={t.name}", *t.definitions, *((sabi,) if sabi else ()))
            flags = (t.compile_flags if lang == "CUDA" else ()) + tuple(f"-D{d}" for d in defs)
            units.append(CompileUnit(s, t.name, lang, archs_s, st.ptx.get(s), flags, t.include_dirs))
    return Selection(
        (_split(st.vars.get("CUDA_ARCHS", "")) and tuple(_split(st.vars["CUDA_ARCHS"]))) or (),
        tuple(units),
        tuple(st.skipped),
        tuple(dropped),
    )


def _split(value: str) -> list[str]:
    return [v for v in value.split(";") if v]


_VAR_REF = re.compile(r"\$(ENV|CACHE)?\{([^${}]*)\}")


def _expand(text: str, st: _State) -> str:
    # innermost ${...} first, as CMake does for nested references
    while True:
        m = _VAR_REF.search(text)
        if not m:
            return text
        value = "" if m.group(1) else st.vars.get(m.group(2), "")
        text = text[: m.start()] + value + text[m.end() :]


def _values(args: Iterable[Arg], st: _State) -> list[str]:
    """Expanded arguments as list elements.

    Quoted lists are split too: every command modelled here either stores the ;-joined value
    (set/list) or receives it through ARGN/cmake_parse_arguments, which splits it anyway.
    """
    out: list[str] = []
    for a in args:
        out += _split(_expand(a.text, st))
    return out


_BLOCKS = {"function": "endfunction", "macro": "endmacro", "foreach": "endforeach", "while": "endwhile"}


def _run(cmds: list[Command], st: _State) -> bool:
    """Run commands; returns False when `return()` was hit."""
    i = 0
    while i < len(cmds):
        c = cmds[i]
        if c.name in _BLOCKS:
            end = _match_block(cmds, i, c.name, _BLOCKS[c.name])
            st.skipped.append(
                f"line {c.line}: {c.name}({' '.join(a.text for a in c.args[:2])} ...) not evaluated"
            )
            i = end + 1
            continue
        if c.name == "if":
            branches, end = _if_branches(cmds, i)
            for cond, body in branches:
                if cond is None or _cond(cond, st, c.line):
                    if not _run(body, st):
                        return False
                    break
            i = end + 1
            continue
        if c.name == "return":
            return False
        _command(c, st)
        i += 1
    return True


def _match_block(cmds: list[Command], start: int, open_: str, close: str) -> int:
    depth = 0
    for j in range(start, len(cmds)):
        if cmds[j].name == open_:
            depth += 1
        elif cmds[j].name == close:
            depth -= 1
            if depth == 0:
                return j
    raise CMakeEvalError(f"line {cmds[start].line}: {open_}() without {close}()")


def _if_branches(
    cmds: list[Command], start: int
) -> tuple[list[tuple[tuple[Arg, ...] | None, list[Command]]], int]:
    branches: list[tuple[tuple[Arg, ...] | None, list[Command]]] = []
    cond: tuple[Arg, ...] | None = cmds[start].args
    body: list[Command] = []
    depth = 0
    for j in range(start + 1, len(cmds)):
        c = cmds[j]
        if c.name == "if":
            depth += 1
        elif c.name == "endif":
            if depth == 0:
                branches.append((cond, body))
                return branches, j
            depth -= 1
        elif depth == 0 and c.name in ("elseif", "else"):
            branches.append((cond, body))
            cond, body = (c.args if c.name == "elseif" else None), []
            continue
        body.append(c)
    raise CMakeEvalError(f"line {cmds[start].line}: if() without endif()")


# ---- if() conditions ------------------------------------------------------------------------

_BINARY = {
    "STREQUAL",
    "STRLESS",
    "STRGREATER",
    "EQUAL",
    "LESS",
    "GREATER",
    "LESS_EQUAL",
    "GREATER_EQUAL",
    "VERSION_EQUAL",
    "VERSION_LESS",
    "VERSION_GREATER",
    "VERSION_LESS_EQUAL",
    "VERSION_GREATER_EQUAL",
    "IN_LIST",
    "MATCHES",
}


def _cond(args: tuple[Arg, ...], st: _State, line: int) -> bool:
    toks = [Arg(_expand(a.text, st), a.quoted) for a in args]
    pos = 0

    def operand(a: Arg) -> str:
        if not a.quoted and a.text in st.vars:
            return st.vars[a.text]
        return a.text

    def truth(a: Arg) -> bool:
        up = a.text.upper()
        if up in _TRUE or (re.fullmatch(r"-?\d+(\.\d+)?", a.text) and float(a.text) != 0):
            return True
        if up in _FALSE or up.endswith("-NOTFOUND"):
            return False
        if a.quoted:
            return False  # a quoted non-constant string is false
        value = st.vars.get(a.text)
        return value is not None and value.upper() not in _FALSE and not value.upper().endswith("-NOTFOUND")

    def peek() -> Arg | None:
        return toks[pos] if pos < len(toks) else None

    def take() -> Arg:
        nonlocal pos
        if pos >= len(toks):
            raise CMakeEvalError(f"line {line}: incomplete if() condition")
        pos += 1
        return toks[pos - 1]

    def primary() -> bool:
        a = take()
        if not a.quoted and a.text == "(":
            v = or_expr()
            if take().text != ")":
                raise CMakeEvalError(f"line {line}: unbalanced parentheses in if()")
            return v
        if not a.quoted and a.text == "DEFINED":
            name = take().text
            return name in st.vars
        if not a.quoted and a.text in ("EXISTS", "COMMAND", "TARGET", "POLICY", "IS_DIRECTORY"):
            raise CMakeEvalError(f"line {line}: if({a.text} ...) is not modelled")
        nxt = peek()
        if nxt is not None and not nxt.quoted and nxt.text in _BINARY:
            op = take().text
            rhs = take()
            return _binary(operand(a), op, rhs, st)
        return truth(a)

    def not_expr() -> bool:
        a = peek()
        if a is not None and not a.quoted and a.text == "NOT":
            take()
            return not not_expr()
        return primary()

    def and_expr() -> bool:
        v = not_expr()
        while (a := peek()) is not None and not a.quoted and a.text == "AND":
            take()
            rhs = not_expr()
            v = v and rhs
        return v

    def or_expr() -> bool:
        v = and_expr()
        while (a := peek()) is not None and not a.quoted and a.text == "OR":
            take()
            rhs = and_expr()
            v = v or rhs
        return v

    result = or_expr()
    if pos != len(toks):
        raise CMakeEvalError(f"line {line}: cannot read if() condition near {toks[pos].text!r}")
    return result


def _binary(lhs: str, op: str, rhs_arg: Arg, st: _State) -> bool:
    if op == "IN_LIST":
        return lhs in _split(st.vars.get(rhs_arg.text, ""))
    rhs = st.vars[rhs_arg.text] if not rhs_arg.quoted and rhs_arg.text in st.vars else rhs_arg.text
    if op.startswith("VERSION_"):
        c = _vcmp(lhs, rhs)
        return {
            "EQUAL": c == 0,
            "LESS": c < 0,
            "GREATER": c > 0,
            "LESS_EQUAL": c <= 0,
            "GREATER_EQUAL": c >= 0,
        }[op.removeprefix("VERSION_")]
    if op == "STREQUAL":
        return lhs == rhs
    if op == "MATCHES":
        return re.search(rhs, lhs) is not None
    if op in ("STRLESS", "STRGREATER"):
        return lhs < rhs if op == "STRLESS" else lhs > rhs
    try:
        a, b = float(lhs), float(rhs)
    except ValueError:
        return False
    return {"EQUAL": a == b, "LESS": a < b, "GREATER": a > b, "LESS_EQUAL": a <= b, "GREATER_EQUAL": a >= b}[
        op
    ]


# ---- commands -----------------------------------------------------------------------------


def _keyword_args(
    values: list[str], multi: set[str], single: set[str], flags: set[str]
) -> dict[str, list[str]]:
    """cmake_parse_arguments: group values under their keywords."""
    out: dict[str, list[str]] = {}
    key: str | None = None
    for v in values:
        if v in multi or v in single or v in flags:
            key = v
            out.setdefault(v, [])
            if v in flags:
                key = None
        elif key is not None:
            out[key].append(v)
            if key in single:
                key = None
    return out


def _command(c: Command, st: _State) -> None:
    name = c.name
    if name == "set":
        vals = _values(c.args, st)
        if not vals:
            return
        var, rest = vals[0], vals[1:]
        if "PARENT_SCOPE" in rest:
            rest = rest[: rest.index("PARENT_SCOPE")]
        if "CACHE" in rest:
            rest = rest[: rest.index("CACHE")]
            if var in st.vars:  # a cache entry does not override an existing value
                return
        st.vars[var] = ";".join(rest)
    elif name == "list":
        vals = _values(c.args, st)
        op, var, items = vals[0], vals[1], vals[2:]
        cur = _split(st.vars.get(var, ""))
        if op == "APPEND":
            cur += items
        elif op == "REMOVE_ITEM":
            cur = [x for x in cur if x not in items]
        elif op == "REMOVE_DUPLICATES":
            cur = list(dict.fromkeys(cur))
        elif op == "SORT":
            cur.sort(key=_natural_key, reverse="DESCENDING" in items)
        elif op in ("LENGTH", "GET", "FIND", "JOIN"):
            st.skipped.append(f"line {c.line}: list({op}) not evaluated")
            return
        else:
            raise CMakeEvalError(f"line {c.line}: list({op}) is not modelled")
        st.vars[var] = ";".join(cur)
    elif name == "cuda_archs_loose_intersection":
        out, src, tgt = c.args[0], c.args[1], c.args[2]
        st.vars[_expand(out.text, st)] = ";".join(
            cuda_archs_loose_intersection(_split(_expand(src.text, st)), _split(_expand(tgt.text, st)))
        )
    elif name == "extract_unique_cuda_archs_ascending":
        # upstream reads them from the -gencode flags torch derived from TORCH_CUDA_ARCH_LIST
        st.vars[_expand(c.args[0].text, st)] = ";".join(st.requested_archs)
    elif name == "get_torch_gpu_compiler_flags":
        out_var = _expand(c.args[0].text, st)
        flags = list(TORCH_COMMON_NVCC_FLAGS)
        cuda = st.vars.get("CUDA_VERSION", "0")
        if _vcmp(cuda, "11.8") >= 0:
            flags.append("-DENABLE_FP8")
        if _vcmp(cuda, "12.0") >= 0:
            flags = [f for f in flags if not f.startswith("-D__CUDA_NO_")]
        st.vars[out_var] = ";".join(flags)
    elif name == "set_gencode_flags_for_srcs":
        kw = _keyword_args(_values(c.args, st), {"SRCS", "CUDA_ARCHS"}, {"BUILD_PTX_FOR_ARCH"}, set())
        for s in kw.get("SRCS", []):
            st.gencode.setdefault(s, []).extend(kw.get("CUDA_ARCHS", []))
            if kw.get("BUILD_PTX_FOR_ARCH"):
                st.ptx[s] = kw["BUILD_PTX_FOR_ARCH"][0]
    elif name in ("define_gpu_extension_target", "define_extension_target"):
        # vLLM >= 0.13 renamed it define_extension_target (same arguments; it also defines CXX-only ones)
        vals = _values(c.args, st)
        kw = _keyword_args(
            vals[1:],
            {"SOURCES", "ARCHITECTURES", "COMPILE_FLAGS", "INCLUDE_DIRECTORIES", "LIBRARIES"},
            {"DESTINATION", "LANGUAGE", "USE_SABI"},
            {"WITH_SOABI"},
        )
        st.targets[vals[0]] = Target(
            vals[0],
            (kw.get("LANGUAGE") or ["CXX"])[0],
            tuple(kw.get("SOURCES", [])),
            tuple(kw.get("COMPILE_FLAGS", [])),
            tuple(kw.get("INCLUDE_DIRECTORIES", [])),
            (),
            (kw.get("USE_SABI") or [""])[0],
        )
    elif name == "target_compile_definitions":
        vals = _values(c.args, st)
        t = st.targets.get(vals[0])
        if t is not None:
            defs = tuple(v for v in vals[1:] if v not in ("PRIVATE", "PUBLIC", "INTERFACE"))
            st.targets[vals[0]] = Target(
                t.name,
                t.language,
                t.sources,
                t.compile_flags,
                t.include_dirs,
                t.definitions + defs,
                t.use_sabi,
            )
    elif name == "file":
        vals = _values(c.args, st)
        if vals and vals[0] == "GLOB":
            var, patterns = vals[1], [p for p in vals[2:] if p != "CONFIGURE_DEPENDS"]
            found: list[str] = []
            for p in patterns:
                base = st.src_dir
                rel = p[len(str(base)) + 1 :] if p.startswith(str(base) + "/") else p
                found += sorted(
                    q.relative_to(base).as_posix()
                    for q in base.glob(rel)
                    if fnmatch.fnmatch(q.relative_to(base).as_posix(), rel)
                )
            st.vars[var] = ";".join(found)
    elif name == "execute_process":
        # not run: generator scripts only feed sm_80+/sm_90 kernels; assume they succeed
        kw = _keyword_args(_values(c.args, st), set(), {"RESULT_VARIABLE", "OUTPUT_VARIABLE"}, set())
        if kw.get("RESULT_VARIABLE"):
            st.vars[kw["RESULT_VARIABLE"][0]] = "0"
        st.skipped.append(f"line {c.line}: execute_process() not run (assumed to succeed)")
    elif name == "message":
        vals = _values(c.args, st)
        if vals and vals[0] in ("FATAL_ERROR", "SEND_ERROR"):
            raise CMakeEvalError(f"line {c.line}: CMake would stop here: {' '.join(vals[1:])}")
