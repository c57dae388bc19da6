"""Deterministic seed derivation: every random choice is a pure function of the config seed and labels."""

from __future__ import annotations

import hashlib


def derive_seed(base_seed: int, *labels: object) -> int:
    """A 63-bit seed from a base seed and labels (trial, purpose, level...), stable across processes."""
    text = "/".join([str(base_seed), *map(str, labels)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1
