"""The package version, in a module of its own so every layer can record it without importing the package root
(whose lazy names reach the top layers). pyproject.toml states the same version; tests/test_version.py checks
that they agree."""

__version__ = "0.1.0"
