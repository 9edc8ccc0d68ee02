"""Scanning a vial: the scan API and the scan station answer for the one vial, on top of its batch."""

from urllib.parse import quote

import pytest
from testkit import PASSWORD, QueryCounter
from vialkit import use_vial, vials_of

from compounding.extensions import db
from compounding.models import Vial
from compounding.services import holds
from compounding.services.scan import resolve


def scan(client, code):
    return client.get(f"/api/v1/scan?code={quote(code)}").get_json()


def test_a_sealed_vial_scans_as_a_usable_vial_of_its_batch(client, as_role, make_batch):
    batch = make_batch(units=3)
    vial = vials_of(batch)[1]
    as_role("practitioner")
    answer = scan(client, vial.code.lower())
    assert answer["kind"] == "vial" and answer["usable"] is True and answer["reasons"] == []
    assert (answer["code"], answer["batch_code"], answer["status"], answer["dose"]) == (
        vial.code, batch.code, "sealed", "single")
    assert answer["remaining_ml"] == "10.000" or float(answer["remaining_ml"]) == 10
    assert answer["in_use_until"] is None and answer["first_punctured"] is None
    page = client.get(f"/scan/?code={vial.code}").get_data(as_text=True)
    assert 'data-kind="vial" data-usable="yes"' in page and "USABLE" in page and vial.code in page
    assert f"vial_code={vial.code}" in page  # the session form, this vial filled in


def test_a_spent_vial_scans_do_not_use_spent(client, as_role, make_user, make_batch, make_patient):
    batch = make_batch(units=2)
    vial = vials_of(batch)[0]
    use_vial(make_user("practitioner"), make_patient(), vial, "3")
    as_role("practitioner")
    answer = scan(client, vial.code)
    assert answer["usable"] is False and answer["status"] == "spent"
    assert any(reason.startswith("spent") for reason in answer["reasons"])
    page = client.get(f"/scan/?code={vial.code}").get_data(as_text=True)
    assert 'data-kind="vial" data-usable="no"' in page and "DO NOT USE" in page and "spent" in page
    assert f"vial_code={vial.code}" not in page
    # Its sister vial is still good.
    assert scan(client, vials_of(batch)[1].code)["usable"] is True


def test_a_punctured_multiple_dose_vial_shows_its_first_puncture_and_in_use_deadline(
        client, as_role, make_user, make_batch, multiple_dose, make_patient):
    batch = make_batch(multiple_dose, units=2)
    vial = vials_of(batch)[0]
    use_vial(make_user("practitioner"), make_patient(), vial, "2")
    as_role("practitioner")
    answer = scan(client, vial.code)
    assert answer["usable"] is True and answer["status"] == "open" and answer["dose"] == "multiple"
    assert answer["first_punctured"] is not None and answer["in_use_until"] is not None
    assert float(answer["remaining_ml"]) == 8
    page = client.get(f"/scan/?code={vial.code}").get_data(as_text=True)
    assert "In use until" in page and "First punctured" in page


def test_a_vial_of_a_held_batch_says_do_not_use_with_the_batch_s_reasons(client, as_role, pharmacist, make_batch):
    batch = make_batch(units=2)
    vial = vials_of(batch)[0]
    holds.quality_signal_hold(pharmacist, "batch", batch.id, "three nodules")
    as_role("practitioner")
    answer = scan(client, vial.code)
    assert answer["usable"] is False and answer["status"] == "on_hold"
    assert any("three nodules" in reason for reason in answer["reasons"])
    holds.release_hold(pharmacist, "batch", batch.id, "quality_signal", "reviewed", PASSWORD)
    assert scan(client, vial.code)["usable"] is True


def test_a_vial_s_own_hold_makes_it_do_not_use_while_its_batch_is_usable(client, as_role, pharmacist, make_batch):
    batch = make_batch(units=2)
    first, second = vials_of(batch)
    holds.place_hold(pharmacist, db.session.get(Vial, first.id), "quality_signal", "cracked stopper")
    db.session.commit()
    as_role("practitioner")
    answer = scan(client, first.code)
    assert answer["usable"] is False and any("cracked stopper" in reason for reason in answer["reasons"])
    assert scan(client, second.code)["usable"] is True
    assert scan(client, batch.code)["usable"] is True


@pytest.mark.parametrize(("raw", "says"), [
    ("B2612060001-", "vial number after the hyphen is missing"),
    ("-00", "no batch code before the hyphen"),
    ("-999", "no batch code before the hyphen"),
])
def test_a_malformed_vial_code_is_refused_saying_what_is_wrong_not_unknown(client, as_role, raw, says):
    as_role("practitioner")
    answer = scan(client, raw)
    assert answer["kind"] == "vial" and answer["usable"] is False
    assert any(says in reason for reason in answer["reasons"]) and says in answer["error"]
    page = client.get(f"/scan/?code={quote(raw)}").get_data(as_text=True)
    assert 'data-kind="vial" data-usable="no"' in page and "Unknown code" not in page and says in page


def test_a_vial_number_the_batch_does_not_have_is_refused_naming_its_last_vial(client, as_role, make_batch):
    batch = make_batch(units=3)
    as_role("practitioner")
    answer = scan(client, f"{batch.code}-999")
    assert answer["kind"] == "vial" and answer["usable"] is False
    assert f"{batch.code}-03" in answer["error"]
    # The contract's fields stand even for a code that names no vial: what was read, and its batch.
    assert (answer["code"], answer["batch_code"]) == (f"{batch.code}-999", batch.code)
    assert scan(client, "-00")["batch_code"] is None
    answer = scan(client, "B2001010001-01")
    assert answer["kind"] == "vial" and "there is no batch B2001010001" in answer["error"]


def test_resolving_a_vial_costs_the_statements_of_resolving_a_batch(app, make_batch):
    code = make_batch(units=3).code
    db.session.expire_all()
    with QueryCounter(db.engine) as batch_scan:
        assert resolve(code).kind == "batch"
    db.session.expire_all()
    with QueryCounter(db.engine) as vial_scan:
        assert resolve(f"{code}-02").usable is True
    assert (vial_scan.count, batch_scan.count) == (2, 2), vial_scan.statements
