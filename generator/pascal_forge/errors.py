"""One error class per kind of failure, each with its own exit code and a next step.

The CLI catches `PascalForgeError`, prints ``error[<code>]: <message>`` and the hint, and exits
with the class's exit code. Nothing else in the package prints tracebacks at users.
"""

from __future__ import annotations


class PascalForgeError(Exception):
    """Base class: what happened (message) and what to do next (hint)."""

    exit_code = 1
    code = "error"

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def render(self) -> str:
        text = f"error[{self.code}]: {self.message}"
        if self.hint:
            text += f"\n  next: {self.hint}"
        return text


class SpecError(PascalForgeError):
    """A spec file (or the built-in spec) is malformed or inconsistent."""

    exit_code = 2
    code = "spec-invalid"


class UnknownPackageError(PascalForgeError):
    """A package or recipe name that no recipe provides."""

    exit_code = 2
    code = "unknown-package"


class UnknownVersionError(PascalForgeError):
    """An upstream version that no stack in the spec covers."""

    exit_code = 2
    code = "version-not-in-stack"


class PatchLibraryError(PascalForgeError):
    """The patch library is inconsistent: a missing file, a path outside it, bad metadata."""

    exit_code = 3
    code = "patch-library"


class PatchFailedError(PascalForgeError):
    """A patch does not apply cleanly (no fuzz) to its pinned source."""

    exit_code = 4
    code = "patch-failed"


class SourceError(PascalForgeError):
    """A pinned source could not be obtained."""

    exit_code = 5
    code = "source-unavailable"


class HashMismatchError(SourceError):
    """A downloaded or cached file does not match its pinned sha256."""

    exit_code = 6
    code = "hash-mismatch"


class StaleRecipesError(PascalForgeError):
    """`generate --check`: the committed recipes differ from what the spec renders."""

    exit_code = 7
    code = "recipes-stale"


class RenderError(PascalForgeError):
    """A template failed to render, or the engine rejected a generated recipe."""

    exit_code = 8
    code = "render-failed"


class ToolchainError(PascalForgeError):
    """A compiler or tool is missing, or cannot target Pascal (e.g. CUDA 13 nvcc)."""

    exit_code = 9
    code = "arch-unsupported"


class CompileError(PascalForgeError):
    """A CUDA source failed to compile for a Pascal arch."""

    exit_code = 10
    code = "compile-failed"


class CMakeEvalError(PascalForgeError):
    """vLLM's CMake text uses a construct the arch evaluator does not model, or is malformed."""

    exit_code = 11
    code = "cmake-unsupported"


class ChannelError(PascalForgeError):
    """The local channel cannot be read, indexed or changed."""

    exit_code = 12
    code = "channel-invalid"


class ChannelLockedError(ChannelError):
    """Another process holds the channel's write lock."""

    exit_code = 13
    code = "channel-locked"


class BuildError(PascalForgeError):
    """A package build failed (the channel is left as it was)."""

    exit_code = 14
    code = "build-failed"


class StockResolvableError(PascalForgeError):
    """A solve put a triton or pytorch without the Pascal token into the environment."""

    exit_code = 15
    code = "stock-triton-resolvable"


class UnsatisfiableError(PascalForgeError):
    """No solution exists for a channel setup (fails loudly instead of swapping packages)."""

    exit_code = 16
    code = "unsatisfiable"


class ArchiveError(PascalForgeError):
    """An upstream package archive is malformed or unsafe (a member escapes the target folder)."""

    exit_code = 17
    code = "archive-unsafe"


class EnvironmentBrokenError(PascalForgeError):
    """`doctor` found at least one problem in the environment (each printed with its fix)."""

    exit_code = 40
    code = "environment-broken"


class PrefixError(PascalForgeError):
    """No conda environment to inspect: none given and none active, or the path is not one."""

    exit_code = 41
    code = "prefix-invalid"


class FatbinError(PascalForgeError):
    """A compiled library's ELF or ``.nv_fatbin`` section cannot be read."""

    exit_code = 42
    code = "fatbin-unreadable"
