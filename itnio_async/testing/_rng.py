"""Cheap, stateless, seeded hashing: the fake's only source of randomness.

Every random choice the fake makes (generated task fields, jitter, random
faults) is a pure function of ``(seed, stream, index)``, so it never depends on
how requests interleave and a million-task dataset costs no memory.
"""

from __future__ import annotations

from typing import Final

MASK64: Final = (1 << 64) - 1
GOLDEN: Final = 0x9E3779B97F4A7C15  # 2**64 / golden ratio, splitmix64's increment
MIX1: Final = 0xBF58476D1CE4E5B9  # splitmix64's multipliers
MIX2: Final = 0x94D049BB133111EB
_STREAM: Final = 0xD1B54A32D192ED03  # an odd constant that separates streams


def mix64(x: int) -> int:
    """The splitmix64 finaliser: a fast, well-mixed 64-bit hash of ``x``."""
    x &= MASK64
    x = ((x ^ (x >> 30)) * MIX1) & MASK64
    x = ((x ^ (x >> 27)) * MIX2) & MASK64
    return x ^ (x >> 31)


def stream_key(seed: int, stream: int) -> int:
    """A 64-bit key for one named stream of draws under ``seed``."""
    return mix64(seed * GOLDEN + stream * _STREAM + 1)


def draw(key: int, index: int) -> int:
    """The 64-bit draw number ``index`` of the stream ``key``."""
    return mix64(key + (index + 1) * GOLDEN)


def unit(key: int, index: int) -> float:
    """The draw ``index`` of the stream ``key`` as a float in ``[0, 1)``."""
    return (draw(key, index) >> 11) * (1.0 / (1 << 53))
