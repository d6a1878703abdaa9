"""Shared test helpers: stand-in conda packages, local servers, synthetic trees."""
