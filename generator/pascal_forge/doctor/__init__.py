"""Diagnosing an installed prefix: the checks, the prefix reader, the GPU/driver probes."""
