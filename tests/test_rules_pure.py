"""The pure rules, judged on plain model instances and values: no application, no database."""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from compounding.models import STATUS_TRANSITIONS, Batch, BatchStatus, Lot, LotStatus
from compounding.services.bud import beyond_use_at, bud_duration
from compounding.services.errors import InsufficientStock
from compounding.services.fefo import Candidate, allocate, fefo_order

PARIS = ZoneInfo("Europe/Paris")
NOON = datetime(2026, 6, 10, 10, 0, tzinfo=UTC)  # 12:00 in Paris


def _batch(**overrides) -> Batch:
    values = {"code": "B-1", "status": BatchStatus.RELEASED, "status_reason": "",
              "compounded_at": NOON - timedelta(hours=2), "verified_at": NOON - timedelta(hours=1),
              "beyond_use_at": NOON + timedelta(days=1), "remaining_volume_ml": Decimal("10")}
    values.update(overrides)
    return Batch(**values)


# --- a lot's expiry ------------------------------------------------------------------------


def test_a_lot_is_usable_through_its_expiry_day_in_the_clinics_zone():
    lot = Lot(code="L-1", expires_on=date(2026, 6, 10))
    assert not lot.is_expired(NOON, PARIS)
    # 23:30 UTC on the 10th is already the 11th in Paris: expired there, not yet in UTC.
    late = datetime(2026, 6, 10, 23, 30, tzinfo=UTC)
    assert lot.is_expired(late, PARIS)
    assert not lot.is_expired(late, UTC)


# --- a batch's verdict ---------------------------------------------------------------------


def test_a_released_batch_in_date_with_volume_is_usable():
    assert _batch().unusable_reasons(NOON, Decimal("2"), zone=PARIS) == []


def test_every_reason_is_given_at_once():
    batch = _batch(status=BatchStatus.RECALLED, status_reason="recall 3: sterility",
                   beyond_use_at=NOON - timedelta(minutes=1), remaining_volume_ml=Decimal("0"))
    assert batch.unusable_reasons(NOON, zone=PARIS) == [
        "recalled: recall 3: sterility",
        "expired at 2026-06-10 11:59 CEST (beyond-use date)",
        "empty: no volume left",
    ]


def test_a_batch_is_judged_at_the_time_asked():
    batch = _batch()
    before = batch.compounded_at - timedelta(minutes=5)
    assert batch.unusable_reasons(before, zone=PARIS) == ["it had not been compounded yet at that time"]
    between = batch.verified_at - timedelta(minutes=5)
    assert batch.unusable_reasons(between, zone=PARIS) == [
        "not verified yet at that time (verified 2026-06-10 11:00 CEST)"]


def test_a_prepared_or_held_batch_and_too_little_volume():
    assert _batch(status=BatchStatus.PREPARED).unusable_reasons(NOON, zone=PARIS) == [
        "not released: awaiting verification by a second pharmacist"]
    assert _batch().unusable_reasons(NOON, holds=["adverse event: severe"], zone=PARIS) == [
        "on hold: adverse event: severe"]
    assert _batch(status=BatchStatus.ON_HOLD).unusable_reasons(NOON, zone=PARIS) == ["on hold"]
    assert _batch().unusable_reasons(NOON, Decimal("12"), zone=PARIS) == ["only 10 mL left, 12 mL asked"]


def test_a_batch_expires_at_its_beyond_use_instant():
    batch = _batch()
    assert not batch.is_expired(batch.beyond_use_at - timedelta(seconds=1))
    assert batch.is_expired(batch.beyond_use_at)


# --- FEFO ----------------------------------------------------------------------------------


def _candidate(lot_id: int, expires_on: date, remaining: str, received_day: int = 1) -> Candidate:
    return Candidate(lot_id, f"L-{lot_id}", expires_on, datetime(2026, 1, received_day, tzinfo=UTC),
                     Decimal(remaining))


def test_fefo_takes_the_earliest_expiry_first_then_the_oldest_receipt():
    later = _candidate(1, date(2026, 9, 1), "5")
    sooner_newer = _candidate(2, date(2026, 7, 1), "5", received_day=9)
    sooner_older = _candidate(3, date(2026, 7, 1), "5", received_day=2)
    assert [c.lot_id for c in fefo_order([later, sooner_newer, sooner_older])] == [3, 2, 1]


def test_fefo_ties_go_to_the_lower_code_even_past_six_digits():
    received = datetime(2026, 1, 1, tzinfo=UTC)
    grown = Candidate(1, "L1000000", date(2026, 7, 1), received, Decimal("5"))
    older = Candidate(2, "L999999", date(2026, 7, 1), received, Decimal("5"))
    assert [c.code for c in fefo_order([grown, older])] == ["L999999", "L1000000"]


def test_fefo_spans_lots_and_names_the_shortfall():
    lots = [_candidate(1, date(2026, 9, 1), "5"), _candidate(2, date(2026, 7, 1), "3")]
    assert [(a.lot_id, a.quantity) for a in allocate(lots, Decimal("6"))] == [(2, Decimal("3")), (1, Decimal("3"))]
    with pytest.raises(InsufficientStock, match=r"9 mL needed, 8 mL available .*short by 1 mL"):
        allocate(lots, Decimal("9"), what="biotin", unit="mL")


def test_a_candidate_is_read_off_a_lot():
    lot = Lot(id=7, code="L-7", expires_on=date(2026, 7, 1), received_at=NOON, remaining=Decimal("4"))
    assert Candidate.of(lot) == Candidate(7, "L-7", date(2026, 7, 1), NOON, Decimal("4"))


# --- beyond-use dates ----------------------------------------------------------------------


def test_the_bud_is_the_duration_unless_a_component_expires_sooner():
    duration = bud_duration("category_1", "fridge")
    assert duration == timedelta(hours=24)
    assert beyond_use_at(NOON, duration, [date(2026, 12, 31)], PARIS) == NOON + duration
    # A component expiring today ends the batch at the end of today in the clinic's zone.
    assert beyond_use_at(NOON, duration, [date(2026, 6, 10)], PARIS) == datetime(2026, 6, 10, 22, 0, tzinfo=UTC)


def test_a_formula_may_shorten_the_table_never_lengthen_it():
    assert bud_duration("category_1", "fridge", shorter_hours=6) == timedelta(hours=6)
    assert bud_duration("category_1", "fridge", shorter_hours=48) == timedelta(hours=24)
    with pytest.raises(ValueError):
        bud_duration("category_1", "freezer")


# --- the transition tables -----------------------------------------------------------------


def test_the_tables_say_where_each_change_may_start_and_what_a_refusal_says():
    release = STATUS_TRANSITIONS["lot"]["release"]
    assert release.allows(LotStatus.QUARANTINE) and release.to == LotStatus.RELEASED
    assert not release.allows(LotStatus.RELEASED)
    assert release.refusal_for("L-1", "released") == "L-1 is released; only a lot in quarantine can be released."
    raise_stock = STATUS_TRANSITIONS["lot"]["raise_stock"]
    assert {s for s in LotStatus if not raise_stock.allows(s)} == {
        LotStatus.REJECTED, LotStatus.RECALLED, LotStatus.DEPLETED}
    recall = STATUS_TRANSITIONS["batch"]["recall"]
    assert not recall.allows(BatchStatus.REJECTED) and not recall.allows(BatchStatus.DISCARDED)
