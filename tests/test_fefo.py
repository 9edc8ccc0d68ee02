"""FEFO allocation as a pure function: no app, no database."""

from datetime import date, datetime
from decimal import Decimal

import pytest

from compounding.services.errors import InsufficientStock
from compounding.services.fefo import Candidate, allocate


def lot(lot_id, code, expires, remaining, received="2026-01-01T00:00:00+00:00"):
    return Candidate(lot_id, code, date.fromisoformat(expires), datetime.fromisoformat(received),
                     Decimal(remaining))


def test_allocation_takes_the_earliest_expiring_lot_first():
    lots = [lot(1, "L000001", "2027-06-30", "50"), lot(2, "L000002", "2027-01-31", "50")]
    result = allocate(lots, Decimal("10"))
    assert [(a.code, a.quantity) for a in result] == [("L000002", Decimal("10"))]


def test_allocation_spans_several_lots_when_one_is_not_enough():
    lots = [lot(1, "L000001", "2027-06-30", "50"), lot(2, "L000002", "2027-01-31", "8")]
    result = allocate(lots, Decimal("20.5"))
    assert [(a.code, a.quantity) for a in result] == [("L000002", Decimal("8")),
                                                       ("L000001", Decimal("12.5"))]


def test_ties_on_expiry_go_to_the_oldest_receipt_then_the_lowest_code():
    lots = [
        lot(3, "L000003", "2027-01-31", "5", "2026-03-01T00:00:00+00:00"),
        lot(2, "L000002", "2027-01-31", "5", "2026-02-01T00:00:00+00:00"),
        lot(1, "L000009", "2027-01-31", "5", "2026-02-01T00:00:00+00:00"),
    ]
    result = allocate(lots, Decimal("15"))
    assert [a.code for a in result] == ["L000002", "L000009", "L000003"]


def test_not_enough_stock_raises_insufficient_stock_naming_the_shortfall():
    lots = [lot(1, "L000001", "2027-06-30", "3"), lot(2, "L000002", "2027-01-31", "2")]
    with pytest.raises(InsufficientStock) as caught:
        allocate(lots, Decimal("7"), what="Minoxidil", unit="mL")
    assert "Minoxidil" in caught.value.message
    assert "short by 2 mL" in caught.value.message
    assert caught.value.details["shortfall"] == "2"


def test_an_exact_fit_uses_every_lot_completely():
    lots = [lot(1, "L000001", "2027-06-30", "3"), lot(2, "L000002", "2027-01-31", "2")]
    assert sum(a.quantity for a in allocate(lots, Decimal("5"))) == Decimal("5")


def test_empty_lots_are_skipped():
    lots = [lot(1, "L000001", "2026-12-31", "0"), lot(2, "L000002", "2027-01-31", "4")]
    assert [a.code for a in allocate(lots, Decimal("1"))] == ["L000002"]
