"""The BUD clock starts when preparation starts (bench page or API), and immediate use keeps its limits."""

from datetime import timedelta

import pytest
import sqlalchemy as sa
from testkit import count_rows, sign_in

from compounding.extensions import db
from compounding.models import Batch, StockMovement
from compounding.services import batches
from compounding.services.clock import to_clinic, utcnow
from compounding.services.errors import InvalidInput, InvalidState

LOCAL = "%Y-%m-%dT%H:%M"


@pytest.fixture
def sterile(make_ingredient, make_lot):
    """Sterile ingredients in stock, made on demand: `sterile("Lidocaine 2 %")`."""

    def make(name, *, is_sterile=True, kind="active"):
        ingredient = make_ingredient(name=name, unit="mL", sterile=is_sterile, kind=kind)
        make_lot(ingredient, quantity="500")
        return ingredient

    return make


@pytest.fixture
def vial(sterile, make_formula):
    """2 mL of a sterile active made up to a 10 mL vial with sterile saline: Category 2, 10 days in the fridge."""
    return make_formula([(sterile("Hyaluronic acid"), "2"), (sterile("Saline", kind="diluent"), "8")])


@pytest.fixture
def syringe(sterile, make_formula):
    """Immediate use: one 1 mL syringe of one sterile product."""
    return make_formula([(sterile("Lidocaine 2 %"), "1")], unit_volume_ml="1", bud_category="immediate_use",
                        storage="room")


def _bench(formula, units, preparation_started_at=None) -> dict:
    """The bench page's form as posted: each FEFO lot with its quantity and its container scanned."""
    data = {"formula_id": str(formula.id), "units": str(units)}
    for component in batches.propose(formula, units):
        for lot in component.lots:
            if lot.id in component.proposed:
                data[f"lot-{lot.id}-quantity"] = str(component.proposed[lot.id])
                data[f"lot-{lot.id}-scan"] = lot.code
    if preparation_started_at is not None:
        data["preparation_started_at"] = preparation_started_at
    return data


def test_a_batch_whose_preparation_started_three_hours_before_saving_gets_a_bud_three_hours_earlier(
        vial, technician):
    saved_at = utcnow()
    at_once = batches.compound_batch(technician, vial.id, 1, compounded_at=saved_at)
    slow = batches.compound_batch(technician, vial.id, 1, compounded_at=saved_at,
                                  preparation_started_at=saved_at - timedelta(hours=3))

    assert slow.preparation_started_at == saved_at - timedelta(hours=3)
    assert at_once.preparation_started_at == saved_at
    assert at_once.beyond_use_at - slow.beyond_use_at == timedelta(hours=3)
    assert slow.beyond_use_at == slow.preparation_started_at + timedelta(days=10)


@pytest.mark.parametrize("offset", [timedelta(hours=1), -timedelta(days=3)])
def test_a_preparation_start_in_the_future_or_days_before_the_record_is_refused(vial, technician, offset):
    before = count_rows(Batch), count_rows(StockMovement)
    with pytest.raises(InvalidInput) as refused:
        batches.compound_batch(technician, vial.id, 1, preparation_started_at=utcnow() + offset)
    assert refused.value.field == "preparation_started_at"
    assert (count_rows(Batch), count_rows(StockMovement)) == before


def test_immediate_use_is_usable_four_hours_from_the_start_of_preparation(syringe, technician):
    started = utcnow() - timedelta(minutes=30)
    batch = batches.compound_batch(technician, syringe.id, 1, preparation_started_at=started)
    assert batch.beyond_use_at == started + timedelta(hours=4)


def test_immediate_use_started_more_than_four_hours_ago_cannot_be_recorded(syringe, technician):
    with pytest.raises(InvalidState, match="already passed"):
        batches.compound_batch(technician, syringe.id, 1, preparation_started_at=utcnow() - timedelta(hours=5))
    assert count_rows(Batch) == 0


def test_immediate_use_is_one_unit_from_at_most_three_sterile_products(sterile, make_formula, technician):
    # Four products never reach the bench: the formula is refused at approval.
    with pytest.raises(InvalidState, match="at most 3 sterile products"):
        make_formula([(sterile(f"Product {n}"), "1") for n in range(4)], unit_volume_ml="4",
                     bud_category="immediate_use", storage="room")
    assert count_rows(Batch) == 0


def test_the_bench_page_offers_the_minute_it_was_opened_as_the_preparation_start(client, as_role, vial):
    as_role("technician")
    before = to_clinic(utcnow()).strftime(LOCAL)
    page = client.get(f"/batches/new?formula_id={vial.id}&units=2").get_data(as_text=True)
    after = to_clinic(utcnow()).strftime(LOCAL)

    assert "Preparation started" in page
    assert (f'name="preparation_started_at" type="datetime-local" value="{before}"' in page
            or f'name="preparation_started_at" type="datetime-local" value="{after}"' in page)


def test_the_start_typed_on_the_bench_page_starts_the_bud_clock(client, as_role, vial):
    as_role("technician")
    started = (utcnow() - timedelta(hours=3)).replace(second=0, microsecond=0)
    response = client.post("/batches/new", data=_bench(vial, 2, to_clinic(started).strftime(LOCAL)))

    assert response.status_code == 302, response.get_data(as_text=True)
    batch = db.session.scalar(sa.select(Batch))
    assert batch.preparation_started_at == started
    assert batch.beyond_use_at == started + timedelta(days=10)
    assert to_clinic(started).strftime("%Y-%m-%d %H:%M") in client.get(response.headers["Location"]).get_data(
        as_text=True)


def test_a_start_in_the_future_redraws_the_bench_page_with_the_reason(client, as_role, vial):
    as_role("technician")
    later = to_clinic(utcnow() + timedelta(hours=2)).strftime(LOCAL)
    response = client.post("/batches/new", data=_bench(vial, 2, later))

    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert "Preparation cannot start in the future." in page
    assert f'value="{later}"' in page
    assert count_rows(Batch) == 0


def test_immediate_use_of_two_units_is_refused_on_the_bench_page(client, make_user, syringe):
    sign_in(client, make_user("technician"))
    response = client.post("/batches/new", data=_bench(syringe, 2))

    assert response.status_code == 422
    assert "immediate use is one unit at a time (2 asked)" in response.get_data(as_text=True)
    assert count_rows(Batch) == 0
    assert client.post("/batches/new", data=_bench(syringe, 1)).status_code == 302
