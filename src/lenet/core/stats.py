"""How far an accuracy measured on few images can be trusted: the Wilson score interval."""

from __future__ import annotations

import math


def wilson_interval(correct: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval (low, high) of the accuracy correct/total, within 0-1; z = 1.96 gives 95%.
    (0.0, 1.0) when nothing was measured (total 0).

    >>> tuple(round(x, 4) for x in wilson_interval(20, 24))
    (0.6415, 0.9332)
    """
    if total <= 0:
        return 0.0, 1.0
    p, z2 = correct / total, z * z
    centre = (p + z2 / (2 * total)) / (1 + z2 / total)
    half = z / (1 + z2 / total) * math.sqrt(p * (1 - p) / total + z2 / (4 * total * total))
    return max(0.0, centre - half), min(1.0, centre + half)
