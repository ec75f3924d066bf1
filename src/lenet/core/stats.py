"""How far an accuracy measured on a few images can be trusted: the Wilson score interval.

An accuracy on n test images moves by 1/n per image (24 images: about 4 points each), so a small
test set's figure is a range, not a number. The Wilson interval (Wilson, 1927) stays inside 0-1 and
is right near 0% and 100%, where the normal approximation (p +- z * sqrt(p(1-p)/n)) is not.
"""

from __future__ import annotations

import math

# Under this many test images an accuracy gets its interval and a warning. At 500 the 95% interval
# of a 90% accuracy is about +-2.7 points (5 points wide): wider than most differences worth
# reporting between two models; Fashion-MNIST's 10,000 give +-0.6.
SMALL_TEST_SET = 500


def wilson_interval(correct: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval (low, high) of the accuracy correct/total, in 0-1; z = 1.96 is 95%.

    (0.0, 1.0) when total is 0: nothing was measured.

    >>> tuple(round(x, 4) for x in wilson_interval(20, 24))
    (0.6415, 0.9332)
    """
    if total <= 0:
        return 0.0, 1.0
    p = correct / total
    z2 = z * z
    centre = (p + z2 / (2 * total)) / (1 + z2 / total)
    half = z / (1 + z2 / total) * math.sqrt(p * (1 - p) / total + z2 / (4 * total * total))
    return max(0.0, centre - half), min(1.0, centre + half)


def is_small(total: int) -> bool:
    """Whether a test set of `total` images is too small for its accuracy to stand without an interval."""
    return total < SMALL_TEST_SET


def interval_text(correct: int, total: int) -> str:
    """'95% interval 64.1%-93.3%', for a table or a line."""
    low, high = wilson_interval(correct, total)
    return f"95% interval {low:.1%}-{high:.1%}"


def small_test_warning(correct: int, total: int) -> str:
    """One line for a test set under SMALL_TEST_SET images ("" otherwise), to follow "warning: "."""
    if not is_small(total):
        return ""
    return (f"only {total:,} test images, so each moves the accuracy by {1 / max(total, 1):.1%}; "
            f"the accuracy lies in its {interval_text(correct, total)}: test on {SMALL_TEST_SET:,} or more "
            "images for a figure to compare models by")
