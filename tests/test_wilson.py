"""The 95 % Wilson score interval and the event classes, as pure functions: no database."""

import pytest

from compounding.models.treatment import ADVERSE_EVENT_TYPES
from compounding.services.rates import EXPECTED_EVENT_TYPES, QUALITY_EVENT_TYPES, percent, wilson_interval


@pytest.mark.parametrize("successes, trials, low, high", [
    (0, 10, 0.0, 0.2775),
    (5, 10, 0.2366, 0.7634),
    (10, 10, 0.7225, 1.0),
    (1, 1, 0.2065, 1.0),
    (1, 20, 0.0089, 0.2361),
    (12, 100, 0.0700, 0.1981),
])
def test_the_wilson_interval_matches_known_values(successes, trials, low, high):
    assert wilson_interval(successes, trials) == pytest.approx((low, high), abs=5e-5)


def test_the_wilson_interval_stays_inside_zero_and_one_and_holds_the_observed_rate():
    for trials in range(1, 60):
        for successes in range(trials + 1):
            low, high = wilson_interval(successes, trials)
            assert 0.0 <= low <= successes / trials <= high <= 1.0


def test_the_lower_bound_falls_as_more_are_exposed_to_the_same_events():
    # The signals rely on it: a lot has at least its busiest batch's patients, so its bound is no higher.
    for successes in range(0, 30):
        bounds = [wilson_interval(successes, trials)[0] for trials in range(max(successes, 1), 300)]
        assert bounds == sorted(bounds, reverse=True)


def test_no_one_exposed_gives_the_whole_interval_and_impossible_counts_are_refused():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    for successes, trials in ((3, 2), (-1, 5), (1, -1)):
        with pytest.raises(ValueError):
            wilson_interval(successes, trials)


def test_every_adverse_event_type_is_in_exactly_one_class():
    assert set(QUALITY_EVENT_TYPES) == {"infection", "necrosis", "nodule", "allergic_reaction", "abscess",
                                        "granuloma"}
    assert set(QUALITY_EVENT_TYPES) | set(EXPECTED_EVENT_TYPES) == set(ADVERSE_EVENT_TYPES)
    assert not set(QUALITY_EVENT_TYPES) & set(EXPECTED_EVENT_TYPES)


def test_percentages_drop_the_decimals_unless_the_rate_is_small():
    assert [percent(x) for x in (0.0, 0.12, 0.0566, 0.0089, 1.0)] == ["0 %", "12 %", "6 %", "0.9 %", "100 %"]
