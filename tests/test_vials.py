"""Vials made at compounding, and what a vial code may look like."""

import pytest
import sqlalchemy as sa

from compounding.extensions import db
from compounding.models import StatusChange, Vial
from compounding.services.codes import vial_code
from compounding.services.errors import InvalidInput, NotFound
from compounding.services.vials import find_vial, parse_vial_code


def test_a_batch_of_n_units_is_made_with_n_sealed_vials_each_with_its_code_and_history(make_batch):
    batch = make_batch(units=3)
    vials = db.session.scalars(sa.select(Vial).where(Vial.batch_id == batch.id).order_by(Vial.number)).all()
    assert [v.code for v in vials] == [f"{batch.code}-01", f"{batch.code}-02", f"{batch.code}-03"]
    assert {v.status for v in vials} == {"sealed"}
    assert all(v.remaining_ml == v.volume_ml == 10 and not v.legacy and v.dose == "single" for v in vials)
    assert sum(v.remaining_ml for v in vials) == batch.remaining_volume_ml
    first_rows = db.session.scalars(sa.select(StatusChange.to_status).where(
        StatusChange.entity_type == "vial", StatusChange.entity_id.in_([v.id for v in vials]))).all()
    assert first_rows == ["sealed"] * 3


def test_vial_numbers_are_padded_to_two_digits_or_to_the_width_of_the_unit_count():
    assert vial_code("B2612060001", 2, 3) == "B2612060001-02"
    assert vial_code("B2612060001", 7, 120) == "B2612060001-007"
    assert vial_code("B2612060001", 120, 120) == "B2612060001-120"


@pytest.mark.parametrize("raw, says", [
    ("B2612060001-", "vial number after the hyphen is missing"),
    ("-00", "no batch code before the hyphen"),
    ("B26-01", "B26 is not a batch code"),
    ("B2612060001-1", "two or more digits"),
    ("B2612060001-00", "vial numbers start at 01"),
    ("", "not a vial code"),
])
def test_a_malformed_vial_code_is_refused_saying_what_is_wrong(raw, says):
    with pytest.raises(InvalidInput, match=says):
        parse_vial_code(raw)


def test_an_unknown_vial_number_names_the_batch_and_its_last_vial(make_batch):
    batch = make_batch(units=3)
    with pytest.raises(NotFound, match=f"no vial 999 .*run to {batch.code}-03"):
        find_vial(f"{batch.code}-999")
    with pytest.raises(NotFound, match="there is no batch B2001019999"):
        find_vial("B2001019999-01")
    assert find_vial(f" {batch.code.lower()}-02 ").number == 2
