"""Patients are not duplicated by accident (chart numbers, search, same name and birth date)."""

import pytest
import sqlalchemy as sa
from testkit import audit_rows, bearer, sign_in_session

from compounding.extensions import db
from compounding.models import Patient
from compounding.models.patient import fold
from compounding.services import treatments, users
from compounding.services.errors import InvalidState


@pytest.fixture
def practitioner(make_user):
    return make_user("practitioner")


def test_folding_drops_surrounding_spaces_case_and_accents():
    assert fold("  Núñez ") == fold("NUNEZ") == "nunez"
    assert fold(" ch-2001 ") == fold("CH-2001") == "ch-2001"
    assert fold("Ana   María") == "ana maria"
    assert fold(None) == ""


@pytest.mark.parametrize("typed", ["ch-2001", " CH-2001 ", "Ch-2001"])
def test_a_chart_number_differing_only_by_case_or_spaces_is_refused(practitioner, make_patient, typed):
    existing = make_patient(chart_number="CH-2001")
    with pytest.raises(InvalidState) as refused:
        treatments.create_patient(practitioner, {"chart_number": typed})
    assert refused.value.details["existing_patient_id"] == existing.id
    assert db.session.scalar(sa.select(sa.func.count(Patient.id))) == 1


def test_renaming_a_chart_number_to_another_s_in_other_case_is_refused(practitioner, make_patient):
    make_patient(chart_number="CH-2001")
    other = make_patient(chart_number="CH-2002")
    with pytest.raises(InvalidState):
        treatments.update_patient(practitioner, other.id, {"chart_number": "ch-2001"})
    # Its own chart number in another case is no collision.
    assert treatments.update_patient(practitioner, other.id, {"chart_number": "ch-2002"}).chart_key == "ch-2002"


def test_the_database_refuses_two_chart_numbers_that_fold_alike(make_patient):
    make_patient(chart_number="CH-2001")
    twin = Patient(chart_number="ch-2001 ", name="", phone="", email="")
    twin.set_keys()
    db.session.add(twin)
    with pytest.raises(sa.exc.IntegrityError):
        db.session.commit()
    db.session.rollback()


def test_the_api_answers_409_with_the_existing_patient_for_a_chart_number_in_other_case(client, make_user,
                                                                                      make_patient):
    existing = make_patient(chart_number="CH-2001")
    headers = bearer(users.create_token(None, make_user("practitioner"), "test"))
    response = client.post("/api/v1/patients", headers=headers, json={"chart_number": "ch-2001"})
    assert response.status_code == 409
    assert response.get_json()["details"]["existing_patient_id"] == existing.id


def test_searching_ignores_case_and_accents(client, make_user, make_patient):
    make_patient(chart_number="CH-2001", name="Ana Núñez")
    make_patient(chart_number="CH-2002", name="Bob Stone")
    sign_in_session(client, make_user("practitioner"))
    page = client.get("/treatments/patients?q=nunez").get_data(as_text=True)
    assert "CH-2001" in page and "CH-2002" not in page
    assert "Register nunez as a new chart number" not in page
    assert "CH-2001" in client.get("/treatments/patients?q=N%C3%9A%C3%91EZ").get_data(as_text=True)  # NÚÑEZ
    assert "CH-2001" in client.get("/treatments/patients?q=ch-2001").get_data(as_text=True)
    headers = bearer(users.create_token(None, make_user("pharmacist"), "test"))
    items = client.get("/api/v1/patients?q=NUNEZ", headers=headers).get_json()["items"]
    assert [item["chart_number"] for item in items] == ["CH-2001"]


# --- same name and birth date --------------------------------------------------------------------------


def test_a_new_patient_with_the_same_name_and_birth_date_is_shown_the_existing_one_first(practitioner,
                                                                                      make_patient):
    existing = make_patient(chart_number="CH-2001", name="Ana Núñez", birth_on="1985-04-23")
    with pytest.raises(InvalidState) as refused:
        treatments.create_patient(practitioner, {"chart_number": "CH-3000", "name": "ana nunez",
                                                 "birth_on": "1985-04-23"})
    assert refused.value.details["existing_patient_id"] == existing.id
    confirmed = treatments.create_patient(practitioner, {"chart_number": "CH-3000", "name": "ana nunez",
                                                         "birth_on": "1985-04-23"}, confirm_duplicate=True)
    assert confirmed.id != existing.id
    assert "CH-2001" in audit_rows("patient.created", entity_id=confirmed.id)[0].reason


def test_the_same_name_with_another_or_no_birth_date_is_another_person(practitioner, make_patient):
    make_patient(chart_number="CH-2001", name="Ana Núñez", birth_on="1985-04-23")
    treatments.create_patient(practitioner, {"chart_number": "CH-3000", "name": "Ana Núñez",
                                             "birth_on": "1990-01-01"})
    treatments.create_patient(practitioner, {"chart_number": "CH-3001", "name": "Ana Núñez"})
    assert db.session.scalar(sa.select(sa.func.count(Patient.id))) == 3


def test_the_api_answers_409_with_existing_patient_id_unless_the_body_confirms(client, make_user, make_patient):
    existing = make_patient(chart_number="CH-2001", name="Ana Núñez", birth_on="1985-04-23")
    headers = bearer(users.create_token(None, make_user("practitioner"), "test"))
    body = {"chart_number": "CH-3000", "name": "Ana Nunez", "birth_date": "1985-04-23"}
    refused = client.post("/api/v1/patients", headers=headers, json=body)
    assert refused.status_code == 409
    assert refused.get_json()["details"]["existing_patient_id"] == existing.id
    created = client.post("/api/v1/patients", headers=headers, json={**body, "confirm_duplicate": True})
    assert created.status_code == 201
    assert "confirm_duplicate" not in created.get_json()


def test_the_page_warns_links_the_existing_patient_and_registers_only_when_confirmed(client, make_user,
                                                                                   make_patient):
    existing = make_patient(chart_number="CH-2001", name="Ana Núñez", birth_on="1985-04-23")
    client.application.config["WTF_CSRF_ENABLED"] = False
    sign_in_session(client, make_user("practitioner"))
    form = {"chart_number": "CH-3000", "name": "Ana Nunez", "birth_on": "1985-04-23"}
    warned = client.post("/treatments/patients/new", data=form)
    assert warned.status_code == 422
    page = warned.get_data(as_text=True)
    assert f'href="/treatments/patients/{existing.id}"' in page and "same name and date of birth" in page
    assert 'name="confirm_duplicate"' in page and "Register anyway" in page
    assert db.session.scalar(sa.select(sa.func.count(Patient.id))) == 1
    registered = client.post("/treatments/patients/new", data={**form, "confirm_duplicate": "y"})
    assert registered.status_code == 302
    assert db.session.scalar(sa.select(sa.func.count(Patient.id))) == 2


def test_the_registration_form_does_not_offer_to_register_anyway_before_a_duplicate_is_found(client, make_user):
    sign_in_session(client, make_user("practitioner"))
    assert 'name="confirm_duplicate"' not in client.get("/treatments/patients/new").get_data(as_text=True)
