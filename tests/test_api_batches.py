"""The batches API: compounding (FEFO or picked lots), verification by a second pharmacist, the list."""

import threading
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa
from testkit import PASSWORD, QueryCounter, run_at_once, sign_in_session

from compounding.errors import CONFLICT_MESSAGE
from compounding.extensions import db
from compounding.models import AuditEvent, Batch, BatchTest, Ingredient, Lot, Signature, StockMovement, User
from compounding.services import batches, ingredients
from compounding.services.audit import verify_chain
from compounding.services.clock import clinic_today, utcnow
from compounding.services.errors import InsufficientStock
from compounding.services.ledger import ledger_balance

BATCH_FIELDS = {
    "id", "code", "status", "beyond_use_at", "remaining_volume_ml", "total_volume_ml", "units", "formula",
    "components", "compounded_at", "compounded_by", "verified_at", "verified_by", "deviations", "notes",
    "usable", "reasons", "expired", "storage", "status_reason", "discard_reason", "preparation_started_at",
    "required_tests", "tests",
}
COMPONENT_FIELDS = {"lot_id", "lot_code", "ingredient_id", "ingredient_name", "unit", "theoretical_quantity",
                    "quantity", "scanned", "strength", "supplier_lot_number", "lot_expires_on", "lot_expiry_date"}


@pytest.fixture
def auth_role() -> str:
    """The role `auth()` makes an account of when it is given none."""
    return "technician"


@pytest.fixture
def pc(make_ingredient):
    return make_ingredient(name="Phosphatidylcholine", unit="mg", sterile=True)


@pytest.fixture
def saline(make_ingredient):
    return make_ingredient(name="Sodium chloride 0.9 %", kind="diluent", unit="mL", sterile=True, vehicle=True)


@pytest.fixture
def formula(make_formula, pc, saline):
    """2 mg of phosphatidylcholine and 8 mL of saline per 8 mL vial."""
    return make_formula([(pc, "2"), (saline, "8")], code="PCDC", name="Lipolytic", unit_volume_ml="8")


@pytest.fixture
def stocked(formula, pc, saline, make_lot):
    """One lot of each ingredient: enough for a few vials."""
    return make_lot(pc, quantity="100"), make_lot(saline, quantity="1000")


def _stock_rows() -> tuple[int, int]:
    return (db.session.scalar(sa.select(sa.func.count()).select_from(Batch)),
            db.session.scalar(sa.select(sa.func.count()).select_from(StockMovement)))


def _remaining(*lots) -> list[Decimal]:
    db.session.expire_all()
    return [db.session.get(Lot, lot.id).remaining for lot in lots]


def _status(batch_id: int) -> str:
    db.session.expire_all()
    return db.session.get(Batch, batch_id).status


def _compound(client, headers, formula, units=3, **body):
    """Compound as a scanning client does: every container is scanned.

    Lots left to FEFO come back as `details.proposed_lots` (409); the client scans them and
    sends them as `allocations` with `scanned_lot_ids`. A body naming `scanned_lot_ids`
    itself is sent as it is.
    """
    scanning = "scanned_lot_ids" not in body
    body = {"formula_id": formula.id, "units": units, **body}
    if scanning and body.get("allocations"):
        body["scanned_lot_ids"] = [row["lot_id"] for row in body["allocations"]]
    response = client.post("/api/v1/batches", headers=headers, json=body)
    proposed = (response.json.get("details") or {}).get("proposed_lots") if response.status_code == 409 else None
    if scanning and proposed:
        allocations = [{"lot_id": row["lot_id"], "quantity": row["quantity"]} for row in proposed]
        response = client.post("/api/v1/batches", headers=headers, json={
            **body, "allocations": allocations, "scanned_lot_ids": [row["lot_id"] for row in proposed]})
    return response


@pytest.fixture
def prepared(client, auth, technician, stocked, formula):
    """A batch of 3 vials compounded by a technician through the API."""
    response = _compound(client, auth(technician), formula)
    assert response.status_code == 201, response.json
    return response.json


# --- compounding ----------------------------------------------------------------------------------


# A partly scanned batch can only be saved where the clinic turned scan confirmation off.
@pytest.mark.parametrize("config_overrides", [{"REQUIRE_SCAN_CONFIRMATION": False}], indirect=True)
def test_compounding_answers_201_prepared_with_the_design_shape(client, auth, make_user, stocked, formula):
    tech = make_user("technician", display_name="Tom Bench")
    pc_lot, saline_lot = stocked
    response = _compound(client, auth(tech), formula, units=3, notes="  Morning run  ",
                         scanned_lot_ids=[pc_lot.id])

    assert response.status_code == 201, response.json
    batch = response.json
    assert set(batch) >= BATCH_FIELDS
    assert batch["code"].startswith("B") and len(batch["code"]) == 11
    assert (batch["status"], batch["units"]) == ("prepared", 3)
    assert (batch["total_volume_ml"], batch["remaining_volume_ml"]) == ("24", "24")
    assert batch["formula"] == {"id": formula.id, "code": "PCDC", "version": 1, "name": "Lipolytic"}
    assert (batch["compounded_by"], batch["verified_at"], batch["verified_by"]) == ("Tom Bench", None, None)
    assert (batch["notes"], batch["deviations"]) == ("Morning run", "")
    for stamp in (batch["compounded_at"], batch["beyond_use_at"]):
        assert datetime.fromisoformat(stamp).utcoffset() is not None
    # Category 2, aseptic, sterile components, in the fridge: 10 days.
    assert (datetime.fromisoformat(batch["beyond_use_at"]) - datetime.fromisoformat(batch["compounded_at"])
            == timedelta(days=10))
    assert batch["usable"] is False
    assert batch["reasons"] == ["not released: awaiting verification by a second pharmacist"]
    assert all(set(c) >= COMPONENT_FIELDS for c in batch["components"])
    assert [(c["lot_id"], c["lot_code"], c["ingredient_name"], c["unit"], c["theoretical_quantity"],
             c["quantity"], c["scanned"]) for c in batch["components"]] == [
        (pc_lot.id, pc_lot.code, "Phosphatidylcholine", "mg", "6", "6", True),
        (saline_lot.id, saline_lot.code, "Sodium chloride 0.9 %", "mL", "24", "24", False),
    ]
    assert _remaining(pc_lot, saline_lot) == [Decimal("94"), Decimal("976")]
    assert client.get(f"/api/v1/batches/{batch['id']}", headers=auth("auditor")).json == batch


def test_without_allocations_the_earliest_expiring_lot_is_used(client, auth, formula, pc, saline, make_lot):
    today = clinic_today()
    later = make_lot(pc, quantity="100", expires_on=today + timedelta(days=300))
    sooner = make_lot(pc, quantity="100", expires_on=today + timedelta(days=60))
    make_lot(saline, quantity="1000")
    response = _compound(client, auth(), formula, units=3)

    assert response.status_code == 201, response.json
    pc_rows = [c for c in response.json["components"] if c["ingredient_id"] == pc.id]
    assert [(c["lot_id"], c["quantity"]) for c in pc_rows] == [(sooner.id, "6")]
    assert _remaining(sooner, later) == [Decimal("94"), Decimal("100")]


def test_explicit_allocations_are_honoured_and_other_ingredients_go_fefo(client, auth, formula, pc, saline,
                                                                       make_lot):
    today = clinic_today()
    sooner = make_lot(pc, quantity="100", expires_on=today + timedelta(days=60))
    later = make_lot(pc, quantity="100", expires_on=today + timedelta(days=300))
    saline_lot = make_lot(saline, quantity="1000")
    response = _compound(client, auth(), formula, units=3,
                         allocations=[{"lot_id": later.id, "quantity": "4"}, {"lot_id": sooner.id, "quantity": 2}])

    assert response.status_code == 201, response.json
    assert [(c["lot_id"], c["quantity"]) for c in response.json["components"]] == [
        (later.id, "4"), (sooner.id, "2"), (saline_lot.id, "24")]
    assert response.json["deviations"] == ""
    assert _remaining(sooner, later, saline_lot) == [Decimal("98"), Decimal("96"), Decimal("976")]


def test_a_deviation_without_a_note_answers_422_naming_deviation_note(client, auth, stocked, formula):
    pc_lot, _ = stocked
    headers = auth()
    before = _stock_rows(), _remaining(*stocked)
    allocations = [{"lot_id": pc_lot.id, "quantity": "6.5"}]
    response = _compound(client, headers, formula, allocations=allocations)

    assert response.status_code == 422, response.json
    assert list(response.json["details"]) == ["deviation_note"]
    assert "Phosphatidylcholine: 6.5 mg used instead of 6 mg" in response.json["error"]
    assert (_stock_rows(), _remaining(*stocked)) == before

    response = _compound(client, headers, formula, allocations=allocations, deviation_note="Overfill for priming")
    assert response.status_code == 201, response.json
    assert "Overfill for priming" in response.json["deviations"]
    assert "6.5 mg used instead of 6 mg" in response.json["deviations"]


def test_not_enough_stock_answers_409_naming_the_ingredient_and_shortfall_and_consumes_nothing(
        client, auth, formula, pc, saline, make_lot):
    lots = make_lot(pc, quantity="5"), make_lot(saline, quantity="1000")
    before = _stock_rows(), _remaining(*lots)
    response = _compound(client, auth(), formula, units=3)

    assert response.status_code == 409, response.json
    details = response.json["details"]
    assert (details["ingredient"], details["needed"], details["available"], details["shortfall"]) == (
        "Phosphatidylcholine", "6", "5", "1")
    assert "Phosphatidylcholine" in response.json["error"]
    assert (_stock_rows(), _remaining(*lots)) == before


def test_allocating_more_than_a_lot_holds_answers_409_and_consumes_nothing(client, auth, formula, pc, saline,
                                                                          make_lot):
    lots = make_lot(pc, quantity="5"), make_lot(saline, quantity="1000")
    before = _stock_rows(), _remaining(*lots)
    response = _compound(client, auth(), formula, units=3, allocations=[{"lot_id": lots[0].id, "quantity": "6"}])

    assert response.status_code == 409
    assert list(response.json["details"]) == ["allocations"]
    assert (_stock_rows(), _remaining(*lots)) == before


@pytest.mark.parametrize("allocation, status", [
    ("quarantined", 409), ("other ingredient", 422), ("unknown lot", 422), ("twice", 422), ("zero", 422),
])
def test_an_ineligible_or_malformed_allocation_is_refused_naming_allocations(
        client, auth, stocked, formula, make_lot, make_ingredient, allocation, status):
    pc_lot, _ = stocked
    quarantined = make_lot(formula.components[0].ingredient, release=False)
    other = make_lot(make_ingredient(name="Biotin"))
    rows = {
        "quarantined": [{"lot_id": quarantined.id, "quantity": "6"}],
        "other ingredient": [{"lot_id": other.id, "quantity": "6"}],
        "unknown lot": [{"lot_id": 99999, "quantity": "6"}],
        "twice": [{"lot_id": pc_lot.id, "quantity": "3"}, {"lot_id": pc_lot.id, "quantity": "3"}],
        "zero": [{"lot_id": pc_lot.id, "quantity": "0"}],
    }[allocation]
    before = _stock_rows()
    response = _compound(client, auth(), formula, allocations=rows)

    assert response.status_code == status, response.json
    assert "allocations" in response.json["details"]
    assert _stock_rows() == before


def test_a_draft_formula_cannot_be_compounded(client, auth, make_formula, pc, saline, stocked):
    draft = make_formula([(pc, "2"), (saline, "8")], approve=False, unit_volume_ml="8")
    before = _stock_rows()
    response = _compound(client, auth(), draft)

    assert response.status_code == 409
    assert list(response.json["details"]) == ["formula_id"]
    assert "draft" in response.json["error"]
    assert _stock_rows() == before


def test_an_unknown_formula_answers_422_naming_formula_id(client, auth):
    response = client.post("/api/v1/batches", headers=auth(), json={"formula_id": 99999, "units": 1})
    assert response.status_code == 422
    assert list(response.json["details"]) == ["formula_id"]


@pytest.mark.parametrize("units", [0, -1, "x", "3", 2.5, 10001, True, None])
def test_units_must_be_a_whole_number_from_1_to_10000(client, auth, stocked, formula, units):
    before = _stock_rows()
    response = _compound(client, auth(), formula, units=units)

    assert response.status_code == 422, response.json
    assert list(response.json["details"]) == ["units"]
    assert _stock_rows() == before


def test_when_scans_are_required_an_unscanned_container_is_refused(client, auth, stocked, formula, app):
    app.config["REQUIRE_SCAN_CONFIRMATION"] = True
    pc_lot, saline_lot = stocked
    headers = auth()
    before = _stock_rows()
    response = _compound(client, headers, formula, scanned_lot_ids=[pc_lot.id])

    assert response.status_code == 409
    assert saline_lot.code in response.json["error"]
    assert _stock_rows() == before
    response = _compound(client, headers, formula, scanned_lot_ids=[pc_lot.id, saline_lot.id])
    assert response.status_code == 201
    assert all(c["scanned"] for c in response.json["components"])


# --- verification, rejection, discard ---------------------------------------------------------------


def test_the_compounding_pharmacist_cannot_verify_their_own_batch(client, auth, make_user, stocked, formula):
    compounder = make_user("pharmacist")
    headers = auth(compounder)
    batch = _compound(client, headers, formula).json
    response = client.post(f"/api/v1/batches/{batch['id']}/verify", headers=headers, json={"password": PASSWORD})

    assert response.status_code == 403
    assert "second pharmacist" in response.json["error"]
    assert _status(batch["id"]) == "prepared"


def test_a_technician_cannot_verify(client, auth, prepared):
    response = client.post(f"/api/v1/batches/{prepared['id']}/verify", headers=auth("technician"),
                           json={"password": PASSWORD})
    assert response.status_code == 403
    assert _status(prepared["id"]) == "prepared"


def test_a_wrong_password_refuses_the_verification_and_the_batch_stays_prepared(client, auth, prepared):
    response = client.post(f"/api/v1/batches/{prepared['id']}/verify", headers=auth("pharmacist"),
                           json={"password": "not-the-password"})

    assert response.status_code == 403
    assert "password" in response.json["details"]
    assert _status(prepared["id"]) == "prepared"
    assert db.session.scalar(sa.select(sa.func.count()).where(Signature.entity_type == "batch")) == 0


def test_a_second_pharmacist_verifies_and_releases_with_a_signature(client, auth, make_user, prepared):
    verifier = make_user("pharmacist", display_name="Dana Whitfield")
    response = client.post(f"/api/v1/batches/{prepared['id']}/verify", headers=auth(verifier),
                           json={"password": PASSWORD})

    assert response.status_code == 200, response.json
    batch = response.json
    assert (batch["status"], batch["verified_by"], batch["verified_by_id"]) == ("released", "Dana Whitfield",
                                                                                verifier.id)
    assert datetime.fromisoformat(batch["verified_at"]).utcoffset() is not None
    assert (batch["usable"], batch["reasons"]) == (True, [])
    signature = db.session.scalar(sa.select(Signature).where(Signature.entity_type == "batch",
                                                             Signature.entity_id == prepared["id"]))
    assert (signature.meaning, signature.signer_id) == ("verified", verifier.id)

    again = client.post(f"/api/v1/batches/{prepared['id']}/verify", headers=auth("pharmacist"),
                        json={"password": PASSWORD})
    assert again.status_code == 409


def test_rejecting_needs_a_reason_and_keeps_the_lots_consumed(client, auth, prepared, stocked):
    headers = auth("pharmacist")
    url = f"/api/v1/batches/{prepared['id']}/reject"
    missing = client.post(url, headers=headers, json={"password": PASSWORD})
    assert missing.status_code == 422
    assert list(missing.json["details"]) == ["reason"]

    response = client.post(url, headers=headers, json={"password": PASSWORD, "reason": "Cloudy solution"})
    assert response.status_code == 200, response.json
    assert (response.json["status"], response.json["status_reason"]) == ("rejected", "Cloudy solution")
    assert response.json["usable"] is False
    assert response.json["reasons"][0] == "rejected: Cloudy solution"
    assert _remaining(*stocked) == [Decimal("94"), Decimal("976")]
    assert client.post(f"/api/v1/batches/{prepared['id']}/verify", headers=headers,
                       json={"password": PASSWORD}).status_code == 409


def test_discarding_writes_off_the_remaining_volume_with_a_coded_reason(client, auth, prepared):
    headers = auth("pharmacist")
    url = f"/api/v1/batches/{prepared['id']}/discard"
    unknown = client.post(url, headers=headers, json={"reason": "dropped"})
    assert unknown.status_code == 422
    assert list(unknown.json["details"]) == ["reason"]
    undescribed = client.post(url, headers=headers, json={"reason": "other"})
    assert undescribed.status_code == 422
    assert list(undescribed.json["details"]) == ["note"]
    assert _status(prepared["id"]) == "prepared"

    response = client.post(url, headers=headers, json={"reason": "damaged", "note": "Vial cracked"})
    assert response.status_code == 200, response.json
    batch = response.json
    assert (batch["status"], batch["discard_reason"], batch["remaining_volume_ml"]) == ("discarded", "damaged", "0")
    assert ledger_balance(batch_id=prepared["id"]) == 0
    assert client.post(url, headers=headers, json={"reason": "damaged"}).status_code == 409


def test_an_auditor_is_refused_every_batch_change(client, auth, prepared, formula):
    headers = auth("auditor")
    calls = [
        ("/api/v1/batches", {"formula_id": formula.id, "units": 1}),
        (f"/api/v1/batches/{prepared['id']}/verify", {"password": PASSWORD}),
        (f"/api/v1/batches/{prepared['id']}/reject", {"password": PASSWORD, "reason": "No"}),
        (f"/api/v1/batches/{prepared['id']}/discard", {"reason": "damaged"}),
    ]
    before = _stock_rows(), _status(prepared["id"])
    for url, body in calls:
        response = client.post(url, headers=headers, json=body)
        assert response.status_code == 403, url
        assert response.json["error"]
    assert (_stock_rows(), _status(prepared["id"])) == before


def test_an_unknown_batch_answers_404(client, auth):
    assert client.get("/api/v1/batches/99999", headers=auth()).status_code == 404
    response = client.post("/api/v1/batches/99999/verify", headers=auth("pharmacist"), json={"password": PASSWORD})
    assert response.status_code == 404
    assert response.json["error"]


def test_every_batch_route_is_in_the_openapi_document(client):
    paths = client.get("/api/v1/openapi.json").json["paths"]
    assert set(paths["/api/v1/batches"]) == {"get", "post"}
    for path, method in (("/api/v1/batches/{batch_id}", "get"), ("/api/v1/batches/{batch_id}/verify", "post"),
                         ("/api/v1/batches/{batch_id}/reject", "post"),
                         ("/api/v1/batches/{batch_id}/discard", "post"), ("/api/v1/batches/{batch_id}/tests", "post")):
        assert method in paths[path], path
    assert "409" in paths["/api/v1/batches"]["post"]["responses"]
    assert "201" in paths["/api/v1/batches/{batch_id}/tests"]["post"]["responses"]


# --- the list -----------------------------------------------------------------------------------


def test_the_list_filters_like_the_batch_page(client, auth, make_formula, make_lot, make_ingredient, technician,
                                              pharmacist):
    # Sterile: immediate use takes sterile products only.
    vitamin = make_ingredient(name="Ascorbic acid", sterile=True)
    lipo = make_formula([(vitamin, "1")], code="LIPO", unit_volume_ml="1")
    quick = make_formula([(vitamin, "1")], code="QUICK", bud_category="immediate_use", unit_volume_ml="1")
    tested = make_formula([(vitamin, "1")], code="TESTED", bud_category="category_2_aseptic_sterility_tested",
                          unit_volume_ml="1")
    make_lot(vitamin, quantity="1000")
    old = batches.compound_batch(technician, lipo.id, 1, compounded_at=utcnow() - timedelta(days=3))
    waiting = batches.compound_batch(technician, tested.id, 1, compounded_at=utcnow() - timedelta(days=3))
    recent = batches.compound_batch(technician, lipo.id, 1)
    soon = batches.compound_batch(technician, quick.id, 1)
    batches.verify_batch(pharmacist, recent.id, PASSWORD)
    batches.verify_batch(pharmacist, waiting.id, PASSWORD)
    headers = auth("auditor")

    def codes(**args):
        response = client.get("/api/v1/batches", headers=headers, query_string=args)
        assert response.status_code == 200, response.json
        return {item["code"] for item in response.json["items"]}

    listing = client.get("/api/v1/batches", headers=headers).json
    assert (listing["page"], listing["per_page"], listing["total"]) == (1, 50, 4)
    assert [item["code"] for item in listing["items"]] == [soon.code, recent.code, waiting.code, old.code]
    assert codes(formula="lipo") == {old.code, recent.code}
    assert codes(status="released") == {recent.code}
    assert codes(status="awaiting_tests") == {waiting.code}
    assert codes(bud_within_hours=24) == {soon.code}
    # A batch awaiting its tests may yet be used: its beyond-use date still matters.
    assert codes(bud_within_hours=24 * 50) == {old.code, recent.code, soon.code, waiting.code}
    assert codes(compounded_to=(clinic_today() - timedelta(days=2)).isoformat()) == {old.code, waiting.code}
    assert codes(compounded_from=(clinic_today() - timedelta(days=1)).isoformat()) == {recent.code, soon.code}
    assert codes(q=soon.code[-5:]) == {soon.code}
    assert codes(per_page=1, page=2) == {recent.code}
    for bad in ({"status": "lost"}, {"bud_within_hours": "soon"}, {"compounded_from": "2026-02-30"}):
        response = client.get("/api/v1/batches", headers=headers, query_string=bad)
        assert response.status_code == 422, bad
        assert list(response.json["details"]) == list(bad)


def test_the_list_costs_the_same_statements_for_5_or_60_batches(client, auth, make_formula, make_lot,
                                                                 make_ingredient, make_user, pharmacist):
    vitamin = make_ingredient(name="Ascorbic acid")
    formula = make_formula([(vitamin, "1"), (make_ingredient(name="Water", kind="diluent"), "9")])
    for ingredient in (vitamin, formula.components[1].ingredient):
        make_lot(ingredient, quantity="10000")
    compounders = [make_user("technician") for _ in range(3)]
    headers = auth("auditor")

    def compound(count):
        made = [batches.compound_batch(compounders[i % 3], formula.id, 1) for i in range(count)]
        batches.verify_batch(pharmacist, made[0].id, PASSWORD)

    def statements() -> int:
        db.session.expire_all()
        with QueryCounter(db.engine) as counter:
            response = client.get("/api/v1/batches", headers=headers, query_string={"per_page": 100})
        assert response.status_code == 200
        return counter.count, len(response.json["items"])

    compound(5)
    few, listed = statements()
    assert listed == 5
    compound(55)
    many, listed = statements()
    assert listed == 60
    assert few == many
    assert many <= 10


# --- two writers at the same moment ----------------------------------------------------------------


def test_two_batches_racing_for_the_last_stock_of_a_lot_never_overdraw_it(app, make_ingredient, make_formula,
                                                                           make_lot, make_user):
    if db.engine.dialect.name != "postgresql":
        pytest.skip("row locks between concurrent transactions are exercised on PostgreSQL")
    pc = make_ingredient(name="Phosphatidylcholine")
    formula_id = make_formula([(pc, "5")], unit_volume_ml="5").id
    lot_id = make_lot(pc, quantity="10").id  # exactly one batch of 2 vials
    compounder_ids = [make_user("technician").id, make_user("technician").id]
    db.session.commit()
    barrier = threading.Barrier(len(compounder_ids))
    outcomes: list[tuple[str, str]] = []

    def compound(user_id: int) -> None:
        # Its own app context, so its own session and connection: a second workstation.
        with app.app_context():
            actor = db.session.get(User, user_id)
            try:
                barrier.wait(timeout=10)
                outcomes.append(("made", batches.compound_batch(actor, formula_id, 2).code))
            except InsufficientStock as exc:
                db.session.rollback()
                outcomes.append(("short", exc.message))
            except Exception as exc:  # reported below: the test must not hang or hide it
                db.session.rollback()
                outcomes.append(("error", repr(exc)))

    run_at_once(compound, [(user_id,) for user_id in compounder_ids])  # fails if a thread hangs
    assert sorted(kind for kind, _ in outcomes) == ["made", "short"], outcomes
    db.session.expire_all()
    lot = db.session.get(Lot, lot_id)
    assert (lot.remaining, lot.status) == (0, "depleted")
    assert lot.remaining == ledger_balance(lot_id=lot_id)
    balances = db.session.scalars(sa.select(StockMovement.balance_after).where(StockMovement.lot_id == lot_id))
    assert min(balances) >= 0
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Batch)) == 1


def test_a_batch_code_taken_at_the_same_moment_answers_409_and_saves_nothing(client, auth, stocked, formula,
                                                                             monkeypatch):
    headers = auth()
    first = _compound(client, headers, formula, units=1).json
    # Two workstations handed the same code: the unique constraint is what refuses the second.
    monkeypatch.setattr(batches, "next_batch_code", lambda compounded_at: first["code"])
    before = _stock_rows(), _remaining(*stocked), db.session.scalar(sa.select(sa.func.count(AuditEvent.id)))
    response = _compound(client, headers, formula, units=1)

    assert response.status_code == 409
    assert response.json == {"error": CONFLICT_MESSAGE, "details": None}
    after = _stock_rows(), _remaining(*stocked), db.session.scalar(sa.select(sa.func.count(AuditEvent.id)))
    assert after == before
    assert verify_chain().ok
    monkeypatch.undo()
    assert _compound(client, headers, formula, units=1).status_code == 201


def test_a_duplicate_refused_by_the_database_shows_the_conflict_page(client, make_user, make_ingredient,
                                                                     monkeypatch):
    make_ingredient(name="Biotin")
    # As if a colleague had saved "Biotin" between the service's check and our insert.
    monkeypatch.setattr(ingredients, "_check_ingredient_fields", lambda data, ingredient=None: [])
    sign_in_session(client, make_user("pharmacist"))
    before = db.session.scalar(sa.select(sa.func.count()).select_from(Ingredient))
    response = client.post("/ingredients/new", data={"name": "Biotin", "kind": "active", "unit": "mg",
                                                      "storage": "room", "reorder_level": "0"})

    assert response.status_code == 409
    assert response.mimetype == "text/html"
    assert "This conflicts with a record saved at the same moment; reload and try again." in response.get_data(
        as_text=True)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Ingredient)) == before


# --- the batch record: copied components, preparation start, release tests ------------------------

TESTED = "category_2_aseptic_sterility_tested"


@pytest.fixture
def tested(make_formula, make_ingredient, make_lot):
    """A sterility-tested formula: 2 mL of a sterile active made up to a 5 mL vial with sterile saline."""
    active = make_ingredient(name="Hyaluronic acid", unit="mL", strength="20 mg/mL", sterile=True)
    water = make_ingredient(name="Sterile saline", kind="diluent", unit="mL", strength="", sterile=True,
                            vehicle=True)
    formula = make_formula([(active, "2"), (water, "3")], code="HA5", unit_volume_ml="5", bud_category=TESTED)
    make_lot(active, quantity="100", supplier_lot_number="HA-2211")
    make_lot(water, quantity="100")
    return formula


@pytest.fixture
def awaiting(client, auth, tested, make_user):
    """A batch of 4 vials of the tested formula, verified: awaiting its sterility result."""
    batch = _compound(client, auth(), tested, units=4).json
    response = client.post(f"/api/v1/batches/{batch['id']}/verify", headers=auth("pharmacist"),
                           json={"password": PASSWORD})
    assert response.status_code == 200, response.json
    return response.json


def _test_body(**overrides) -> dict:
    return {"kind": "sterility", "result": "pass", "method": "rapid", "lab": "North Lab",
            "sampled_on": clinic_today().isoformat(), "password": PASSWORD, **overrides}


def test_a_batch_answers_its_components_as_copied_at_compounding(client, auth, prepared, pc, make_user):
    pharmacist = make_user("pharmacist")
    ingredients.update_ingredient(pharmacist, pc, {"name": "Phosphatidylcholine 100", "kind": "active",
                                                   "unit": "mg", "strength": "100 mg/mL", "storage": "fridge"})
    lot = db.session.get(Lot, prepared["components"][0]["lot_id"])
    answer = client.get(f"/api/v1/batches/{prepared['id']}", headers=auth("auditor")).json

    component = answer["components"][0]
    assert (component["ingredient_name"], component["strength"], component["unit"]) == (
        "Phosphatidylcholine", "10 mg/mL", "mg")
    assert (component["lot_code"], component["supplier_lot_number"], component["lot_expires_on"],
            component["lot_expiry_date"]) == (lot.code, lot.supplier_lot_number, lot.expires_on.isoformat(),
                                              lot.expires_on.isoformat())
    assert (answer["required_tests"], answer["tests"]) == ([], [])
    assert datetime.fromisoformat(answer["preparation_started_at"]) == datetime.fromisoformat(
        answer["compounded_at"])


def test_verifying_a_tested_batch_answers_awaiting_tests_and_its_scan_says_why(client, auth, awaiting):
    assert (awaiting["status"], awaiting["required_tests"], awaiting["usable"]) == (
        "awaiting_tests", ["sterility"], False)
    assert awaiting["reasons"] == ["not released: awaiting test results (sterility)"]
    scan = client.get("/api/v1/scan", headers=auth("practitioner"), query_string={"code": awaiting["code"]}).json
    assert (scan["usable"], scan["reasons"]) == (False, ["not released: awaiting test results (sterility)"])


def test_recording_a_test_result_answers_201_with_the_result_and_the_batch_status(client, auth, make_user,
                                                                                    awaiting):
    signer = make_user("pharmacist", display_name="Lena Lab")
    response = client.post(f"/api/v1/batches/{awaiting['id']}/tests", headers=auth(signer),
                           json=_test_body(units_sampled=1, note="one vial sent"))

    assert response.status_code == 201, response.json
    result = response.json
    assert (result["kind"], result["result"], result["method"], result["lab"], result["units_sampled"]) == (
        "sterility", "pass", "rapid", "North Lab", 1)
    assert (result["signed_by"], result["sampled_on"], result["note"]) == (
        "Lena Lab", clinic_today().isoformat(), "one vial sent")
    assert result["status"] == "released"
    assert (result["batch"]["status"], result["batch"]["remaining_volume_ml"]) == ("released", "15")
    batch = client.get(f"/api/v1/batches/{awaiting['id']}", headers=auth("auditor")).json
    assert (batch["usable"], [t["id"] for t in batch["tests"]]) == (True, [result["id"]])
    assert batch["tests"][0]["signed_by"] == "Lena Lab"


def test_a_test_result_counts_once_per_idempotency_key(client, auth, awaiting):
    headers = {**auth("pharmacist"), "Idempotency-Key": "sterility-result-0001"}
    url = f"/api/v1/batches/{awaiting['id']}/tests"
    first = client.post(url, headers=headers, json=_test_body())
    again = client.post(url, headers=headers, json=_test_body())

    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json == first.json
    assert again.headers.get("Idempotent-Replayed") == "true"


@pytest.mark.parametrize(("overrides", "field"), [
    ({"kind": "pyrogen"}, "kind"), ({"result": "unclear"}, "result"), ({"method": "visual"}, "method"),
    ({"sampled_on": "2026-02-30"}, "sampled_on"), ({"lab": ""}, "lab"), ({"units_sampled": -1}, "units_sampled"),
    ({"password": None}, "password"),
])
def test_a_malformed_test_result_answers_422_naming_the_field(client, auth, awaiting, overrides, field):
    response = client.post(f"/api/v1/batches/{awaiting['id']}/tests", headers=auth("pharmacist"),
                           json=_test_body(**overrides))
    assert response.status_code == 422, response.json
    assert field in response.json["details"]
    assert _status(awaiting["id"]) == "awaiting_tests"


def test_test_results_refused_by_the_rules_answer_409_or_403_and_save_nothing(client, auth, awaiting, prepared):
    url = f"/api/v1/batches/{awaiting['id']}/tests"
    headers = auth("pharmacist")
    early = clinic_today().isoformat()
    cases = [
        (f"/api/v1/batches/{prepared['id']}/tests", headers, _test_body(), 409, "needs no test result"),
        (url, headers, _test_body(kind="endotoxin"), 409, "needs no endotoxin test"),
        (url, headers, _test_body(method="compendial", sampled_on=early), 409, "no earlier than"),
        (url, headers, _test_body(sampled_on=(clinic_today() - timedelta(days=1)).isoformat()), 422,
         "before the batch was made"),
        (url, headers, _test_body(units_sampled=5), 409, "only 4 sealed vials left"),
        (url, auth("technician"), _test_body(), 403, ""),
        (url, headers, _test_body(password="wrong-password"), 403, "password"),
    ]
    for target, who, body, status, words in cases:
        response = client.post(target, headers=who, json=body)
        assert response.status_code == status, (body, response.json)
        assert words in response.json["error"], response.json
    assert (_status(awaiting["id"]), _status(prepared["id"])) == ("awaiting_tests", "prepared")
    assert db.session.scalar(sa.select(sa.func.count()).select_from(BatchTest)) == 0


def test_a_second_result_for_the_same_test_answers_409(client, auth, awaiting):
    url = f"/api/v1/batches/{awaiting['id']}/tests"
    assert client.post(url, headers=auth("pharmacist"), json=_test_body(result="fail")).status_code == 201
    response = client.post(url, headers=auth("pharmacist"), json=_test_body())

    assert response.status_code == 409
    assert "already has a sterility result" in response.json["error"]
    assert _status(awaiting["id"]) == "rejected"  # and a rejected batch takes no more results


def test_compounding_takes_the_preparation_start_and_counts_the_bud_from_it(client, auth, tested):
    started = (utcnow() - timedelta(hours=3)).replace(microsecond=0)
    response = _compound(client, auth(), tested, units=1, preparation_started_at=started.isoformat())

    assert response.status_code == 201, response.json
    batch = response.json
    assert datetime.fromisoformat(batch["preparation_started_at"]) == started
    # Category 2, sterility tested, in the fridge: 45 days from the start of preparation.
    assert datetime.fromisoformat(batch["beyond_use_at"]) == started + timedelta(days=45)
    assert datetime.fromisoformat(batch["compounded_at"]) > started + timedelta(hours=2)


@pytest.mark.parametrize(("started", "field"), [("tomorrow", "preparation_started_at"),
                                                ("2026-11-27T10:00", "preparation_started_at")])
def test_a_malformed_preparation_start_answers_422(client, auth, stocked, formula, started, field):
    response = _compound(client, auth(), formula, units=1, preparation_started_at=started)
    assert response.status_code == 422
    assert list(response.json["details"]) == [field]


def test_a_preparation_start_in_the_future_answers_422_and_consumes_nothing(client, auth, stocked, formula):
    before = _stock_rows(), _remaining(*stocked)
    response = _compound(client, auth(), formula, units=1,
                         preparation_started_at=(utcnow() + timedelta(hours=1)).isoformat())
    assert response.status_code == 422, response.json
    assert list(response.json["details"]) == ["preparation_started_at"]
    assert (_stock_rows(), _remaining(*stocked)) == before


def test_immediate_use_of_more_than_one_unit_or_a_non_sterile_product_answers_409(client, auth, make_formula,
                                                                                   make_ingredient, make_lot,
                                                                                   make_user):
    from compounding.services import ingredients

    sterile = make_ingredient(name="Lidocaine 2 %", unit="mL", sterile=True)
    unsterile = make_ingredient(name="Ascorbic acid powder", unit="mL", sterile=True)
    one = make_formula([(sterile, "1")], code="IMM1", unit_volume_ml="1", bud_category="immediate_use")
    mixed = make_formula([(sterile, "1"), (unsterile, "1")], code="IMM2", unit_volume_ml="2",
                         bud_category="immediate_use")
    # Approved while every product was sterile; one of them is not any more.
    ingredients.update_ingredient(make_user("pharmacist"), unsterile, {
        "name": unsterile.name, "kind": "active", "unit": "mL", "storage": "fridge", "sterile": False})
    for ingredient in (sterile, unsterile):
        make_lot(ingredient, quantity="100")
    headers = auth()
    before = _stock_rows()

    two = _compound(client, headers, one, units=2)
    assert two.status_code == 409
    assert "one unit at a time" in two.json["error"]
    powder = _compound(client, headers, mixed, units=1)
    assert powder.status_code == 409
    assert "Ascorbic acid powder is not sterile" in powder.json["error"]
    assert _stock_rows() == before

    made = _compound(client, headers, one, units=1)
    assert made.status_code == 201, made.json
    start = datetime.fromisoformat(made.json["preparation_started_at"])
    assert datetime.fromisoformat(made.json["beyond_use_at"]) == start + timedelta(hours=4)
