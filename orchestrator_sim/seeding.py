"""Deterministic randomness: every simulated decision is a hash of the seed and its inputs.

No global random state is used anywhere in the simulator, so the same seed and the same
requests give the same answers, flaws and faults, in any order and on any machine.
"""

from __future__ import annotations

import hashlib
import random
import string

__all__ = ["digest", "seeded_random", "short_id", "unit"]

_ALPHABET = string.ascii_letters + string.digits


def digest(*parts: object) -> str:
    """Return a hex SHA-256 of the parts (``bytes`` taken as is, anything else as ``str``)."""
    h = hashlib.sha256()
    for part in parts:
        h.update(part if isinstance(part, bytes) else str(part).encode("utf-8"))
        h.update(b"\x1f")
    return h.hexdigest()


def unit(*parts: object) -> float:
    """Return a number in ``[0, 1)`` determined by the parts."""
    return int(digest(*parts)[:13], 16) / float(16**13)


def seeded_random(*parts: object) -> random.Random:
    """Return a ``random.Random`` seeded by the parts (for choosing several things)."""
    return random.Random(int(digest(*parts)[:16], 16))  # simulation, not secrets


def short_id(prefix: str, *parts: object, length: int = 24) -> str:
    """Return ``prefix`` plus ``length`` letters and digits determined by the parts."""
    number = int(digest(*parts), 16)
    chars = []
    for _ in range(length):
        number, index = divmod(number, len(_ALPHABET))
        chars.append(_ALPHABET[index])
    return prefix + "".join(chars)
