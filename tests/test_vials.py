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


def test_a_formula_is_single_dose_unless_multiple_dose_with_evidence_and_at_most_28_days(make_formula):
    assert make_formula().dose == "single"
    evidence = "AET report 2026-014 (USP <51>), passed"
    multiple = make_formula(dose="multiple", in_use_hours="672", antimicrobial_evidence=evidence)
    assert (multiple.dose, multiple.in_use_hours, multiple.antimicrobial_evidence) == ("multiple", 672, evidence)
    with pytest.raises(InvalidInput, match="1 to 672 hours"):
        make_formula(dose="multiple", in_use_hours="673", antimicrobial_evidence=evidence)
    with pytest.raises(InvalidInput, match="antimicrobial-effectiveness evidence"):
        make_formula(dose="multiple", in_use_hours="24")
    with pytest.raises(InvalidInput, match="multiple-dose vials only"):
        make_formula(in_use_hours="24")
    with pytest.raises(InvalidInput, match="single-dose or multiple-dose"):
        make_formula(dose="twice")


def test_vials_copy_their_formula_s_dose_and_in_use_period(make_formula, make_batch, make_lot):
    formula = make_formula(dose="multiple", in_use_hours="48", antimicrobial_evidence="AET 2026-014 passed")
    for component in formula.components:
        make_lot(component.ingredient, quantity="1000")
    batch = make_batch(formula, units=2)
    vials = db.session.scalars(sa.select(Vial).where(Vial.batch_id == batch.id)).all()
    assert {(v.dose, v.in_use_hours) for v in vials} == {("multiple", 48)}
