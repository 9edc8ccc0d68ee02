"""Event rates with their 95 % Wilson score intervals, and the two classes of adverse event."""

from math import sqrt

from ..models.treatment import ADVERSE_EVENT_TYPES

# Events that point at the product (contamination, a foreign-body or immune reaction): one flags.
# A moderate nodule after mesotherapy can be the first sign of a mycobacterial infection.
QUALITY_EVENT_TYPES = ("infection", "necrosis", "nodule", "allergic_reaction", "abscess", "granuloma")
# Events expected after any injection: they flag only at a rate above the clinic's own.
EXPECTED_EVENT_TYPES = tuple(t for t in ADVERSE_EVENT_TYPES if t not in QUALITY_EVENT_TYPES)
Z_95 = 1.959963984540054


def wilson_interval(successes: int, trials: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of successes / trials (95 % by default); (0, 1) when no one was exposed."""
    if trials < 0 or successes < 0 or successes > trials:
        raise ValueError(f"{successes} of {trials} is not a rate")
    if trials == 0:
        return 0.0, 1.0
    p, z2 = successes / trials, z * z
    centre = p + z2 / (2 * trials)
    half = z * sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials))
    scale = 1 + z2 / trials
    # The ends are exact at 0 and 1; rounding must not push them past.
    low = 0.0 if successes == 0 else max(0.0, (centre - half) / scale)
    high = 1.0 if successes == trials else min(1.0, (centre + half) / scale)
    return low, high


def percent(fraction: float) -> str:
    """A rate as people read it: whole percents, one decimal below 1 % so a small rate is not shown as 0."""
    value = fraction * 100
    if 0 < value < 1:
        return f"{value:.1f} %"
    return f"{value:.0f} %"


def rate_with_interval(successes: int, trials: int) -> str:
    """"12 % (95 % CI 6–21 %)": the rate and its Wilson interval as the pages and reasons print them."""
    low, high = wilson_interval(successes, trials)
    rate = successes / trials if trials else 0.0
    return f"{percent(rate)} (95 % CI {percent(low).removesuffix(' %')}–{percent(high)})"
