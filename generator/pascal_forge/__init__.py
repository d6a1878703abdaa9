"""pascal-forge: pinned, patched conda recipes that make vLLM run on NVIDIA Pascal GPUs."""

__version__ = "0.1.0"
