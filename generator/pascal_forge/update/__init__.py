"""Following upstream: PyPI / conda-forge discovery, the stack planner, requirement derivation."""
