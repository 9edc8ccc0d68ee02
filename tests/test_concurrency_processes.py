"""Several gunicorn worker processes on one database: stock rules hold under concurrent requests.

Each test starts a real gunicorn (4 workers) on a free loopback port against its own
database (a temporary SQLite file, or a fresh database on the PostgreSQL server the suite
uses), fires concurrent API requests from threads, then checks the books in-process.
"""

import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from testkit import AUDIT_KEY, PASSWORD, TEST_DATABASE_URL, base_config, run_at_once, stop_process

from compounding import create_app
from compounding.extensions import db
from compounding.models import (
    Batch,
    Location,
    Lot,
    SessionUse,
    Site,
    StatusChange,
    StockMovement,
    Transfer,
    TransferLine,
    Vial,
)
from compounding.services import audit, batches, formulas, ingredients, inventory, transfers, treatments, users
from compounding.services.sites import main_site

ROOT = Path(__file__).resolve().parent.parent
WORKERS = 4


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def database_url(tmp_path):
    if TEST_DATABASE_URL.startswith("postgresql"):
        server = sa.make_url(TEST_DATABASE_URL)
        name = f"concurrency_{os.getpid()}_{int(time.time() * 1000) % 100000}"
        admin = sa.create_engine(server.set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
        yield server.set(database=name).render_as_string(hide_password=False)
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    else:
        yield f"sqlite:///{tmp_path / 'concurrency.db'}"


@pytest.fixture
def live(database_url):
    """(app, base url): the schema migrated as in production, a gunicorn serving it."""
    app = create_app(base_config(SQLALCHEMY_DATABASE_URI=database_url, AUTO_MIGRATE=True, TESTING=False,
                                 SERVER_NAME=None))
    port = _free_port()
    env = {**os.environ, "DATABASE_URL": database_url, "SECRET_KEY": "concurrency-test", "AUTO_MIGRATE": "1",
           # The workers key the audit rows this test verifies with the same key.
           "AUDIT_KEY": AUDIT_KEY, "AUDIT_CHECKPOINT_FILE": app.config["AUDIT_CHECKPOINT_FILE"]}
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--workers", str(WORKERS), "--bind", f"127.0.0.1:{port}",
         "--timeout", "60", "--log-level", "warning", "wsgi:app"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            try:
                connection.request("GET", "/healthz")
                if connection.getresponse().status == 200:
                    break
            except OSError:
                time.sleep(0.2)
            finally:
                connection.close()
        else:
            server.kill()
            pytest.fail("gunicorn did not start: " + server.stdout.read().decode(errors="replace")[-2000:])
        with app.app_context():
            yield app, port
            db.session.remove()
            db.engine.dispose()
    finally:
        stop_process(server)
        server.stdout.close()


def _fire(port: int, requests: list[tuple[str, str, dict, dict]]) -> list[tuple[int, dict]]:
    """Send all requests at the same moment from one thread each; return (status, body) in order."""
    barrier = threading.Barrier(len(requests))
    answers: list = [None] * len(requests)

    def one(index, method, path, body, headers):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        payload = json.dumps(body)
        barrier.wait()
        try:
            connection.request(method, path, payload, {"Content-Type": "application/json", **headers})
            response = connection.getresponse()
            raw = response.read()
            answers[index] = (response.status, json.loads(raw) if raw.startswith(b"{") else {"raw": raw[:200]})
        finally:
            connection.close()

    run_at_once(one, [(i, *request) for i, request in enumerate(requests)], timeout=90)
    return answers


def _setup_formula():
    pharmacist = users.create_user(None, username="pharm", display_name="Pharm One", role="pharmacist",
                                   password=PASSWORD)
    verifier = users.create_user(None, username="pharm2", display_name="Pharm Two", role="pharmacist",
                                 password=PASSWORD)
    technician = users.create_user(None, username="tech", display_name="Tech", role="technician",
                                   password=PASSWORD)
    active = ingredients.create_ingredient(pharmacist, {"name": "Biotin", "kind": "active", "unit": "mL",
                                                      "storage": "room", "sterile": True, "gtins": []})
    formula = formulas.create_formula(pharmacist, {
        "code": "HAIR", "name": "Hair", "indication": "hair_loss", "route": "intradermal",
        "dosage_form": "solution", "unit_volume_ml": "1", "instructions": "Mix.", "storage": "fridge",
        "bud_category": "category_2_aseptic_sterile_components",
        "components": [{"ingredient_id": active.id, "quantity": "1"}]})
    formulas.approve_formula(verifier, formula.id, PASSWORD)  # not its author
    return pharmacist, verifier, technician, active, formula


def _books_balance():
    """remaining == sum of ledger rows, never negative, for every lot and batch; audit chain intact."""
    for model, column, key in ((Lot, Lot.remaining, StockMovement.lot_id),
                               (Batch, Batch.remaining_volume_ml, StockMovement.batch_id)):
        sums = dict(db.session.execute(sa.select(key, sa.func.sum(StockMovement.quantity))
                                       .where(key.is_not(None)).group_by(key)).all())
        for row_id, remaining in db.session.execute(sa.select(model.id, column)).all():
            assert remaining >= 0
            assert Decimal(remaining) == Decimal(sums.get(row_id, 0)), (model.__name__, row_id)
        assert db.session.scalar(sa.select(sa.func.min(StockMovement.balance_after))) >= 0
    assert audit.verify_chain().ok


def test_concurrent_compoundings_from_one_lot_never_oversell_it(live):
    app, port = live
    pharmacist, verifier, technician, active, formula = _setup_formula()
    lot = inventory.receive_lot(technician, ingredient_id=active.id, supplier="S", supplier_lot_number="X",
                                expires_on=date.today() + timedelta(days=90), quantity=Decimal("5"))
    inventory.release_lot(pharmacist, lot.id, PASSWORD, reason="Certificate requested")
    token = users.create_token(None, technician, "test")
    attempts = 12  # each batch of 2 units needs 2 mL: exactly 2 can be made from 5 mL
    # Each client scanned the container and allocates it explicitly.
    body = {"formula_id": formula.id, "units": 2, "allocations": [{"lot_id": lot.id, "quantity": "2"}],
            "scanned_lot_ids": [lot.id]}
    answers = _fire(port, [("POST", "/api/v1/batches", body, {"Authorization": f"Bearer {token}"})] * attempts)
    statuses = sorted(status for status, _ in answers)
    assert all(status < 500 for status in statuses), answers
    assert statuses.count(201) == 2 and statuses.count(409) == attempts - 2, statuses
    db.session.rollback()  # end our snapshot: read what the workers committed
    assert db.session.get(Lot, lot.id).remaining == Decimal("1")
    _books_balance()


def test_concurrent_session_uses_of_one_batch_never_overdraw_it(live):
    app, port = live
    pharmacist, verifier, technician, active, formula = _setup_formula()
    lot = inventory.receive_lot(technician, ingredient_id=active.id, supplier="S", supplier_lot_number="Y",
                                expires_on=date.today() + timedelta(days=90), quantity=Decimal("50"))
    inventory.release_lot(pharmacist, lot.id, PASSWORD, reason="Certificate requested")
    # One multiple-dose vial of 10 mL that every session draws on.
    shared = formulas.create_formula(pharmacist, {
        "code": "HAIR-MD", "name": "Hair", "indication": "hair_loss", "route": "intradermal",
        "dosage_form": "solution", "unit_volume_ml": "10", "instructions": "Mix.", "storage": "fridge",
        "bud_category": "category_2_aseptic_sterile_components", "dose": "multiple", "in_use_hours": "672",
        "antimicrobial_evidence": "AET report, passed",
        "components": [{"ingredient_id": active.id, "quantity": "10"}]})
    formulas.approve_formula(verifier, shared.id, PASSWORD)
    batch = batches.compound_batch(technician, shared.id, 1)  # 10 mL
    batches.verify_batch(verifier, batch.id, PASSWORD)
    practitioner = users.create_user(None, username="doc", display_name="Doc", role="practitioner",
                                     password=PASSWORD)
    patient = treatments.create_patient(practitioner, {"chart_number": "C-1"})
    token = users.create_token(None, practitioner, "test")
    attempts = 16  # 1.5 mL each from 10 mL: exactly 6 fit
    body = {"patient_id": patient.id, "uses": [{"batch_code": batch.code, "volume_ml": "1.5"}]}
    answers = _fire(port, [("POST", "/api/v1/treatment-sessions", body,
                            {"Authorization": f"Bearer {token}"})] * attempts)
    statuses = sorted(status for status, _ in answers)
    assert all(status < 500 for status in statuses), answers
    assert statuses.count(201) == 6 and statuses.count(409) == attempts - 6, statuses
    db.session.rollback()  # end our snapshot: read what the workers committed
    assert db.session.get(Batch, batch.id).remaining_volume_ml == Decimal("1")
    _books_balance()


# --- one single-dose vial, several practitioners at once -----------------------------------------------

VIAL_ATTEMPTS = 8


def test_two_practitioners_scanning_one_single_dose_vial_at_once_only_one_session_gets_it(live):
    app, port = live
    pharmacist, verifier, technician, active, formula = _setup_formula()
    lot = inventory.receive_lot(technician, ingredient_id=active.id, supplier="S", supplier_lot_number="V",
                                expires_on=date.today() + timedelta(days=90), quantity=Decimal("10"))
    inventory.release_lot(pharmacist, lot.id, PASSWORD, reason="Certificate requested")
    batch = batches.compound_batch(technician, formula.id, 2)  # two single-dose vials of 1 mL
    batches.verify_batch(verifier, batch.id, PASSWORD)
    vial = f"{batch.code}-01"
    tokens = []
    for name in ("doc-a", "doc-b"):
        practitioner = users.create_user(None, username=name, display_name=name.title(), role="practitioner",
                                         password=PASSWORD)
        tokens.append(users.create_token(None, practitioner, "test"))
    patients = [treatments.create_patient(pharmacist, {"chart_number": f"V-{n}"}).id for n in range(VIAL_ATTEMPTS)]
    requests = [("POST", "/api/v1/treatment-sessions",
                 {"patient_id": patients[n], "uses": [{"vial_code": vial, "volume_ml": "0.4", "area": "scalp"}]},
                 {"Authorization": f"Bearer {tokens[n % 2]}"}) for n in range(VIAL_ATTEMPTS)]
    answers = _fire(port, requests)
    statuses = sorted(status for status, _ in answers)
    assert all(status < 500 for status in statuses), answers
    assert statuses.count(201) == 1 and statuses.count(409) == VIAL_ATTEMPTS - 1, answers
    refused = [body for status, body in answers if status == 409]
    assert all("single-dose" in " ".join(body["details"]["reasons"][vial]) for body in refused), refused
    [winner] = [body for status, body in answers if status == 201]
    assert [use["vial_code"] for use in winner["uses"]] == [vial]

    db.session.rollback()  # end our snapshot: read what the workers committed
    vials = db.session.scalars(sa.select(Vial).where(Vial.batch_id == batch.id).order_by(Vial.number)).all()
    assert [(v.status, v.remaining_ml, v.first_session_id) for v in vials] == [
        ("spent", 0, winner["id"]), ("sealed", 1, None)]
    assert db.session.get(Batch, batch.id).remaining_volume_ml == sum(v.remaining_ml for v in vials) == 1
    assert db.session.scalar(sa.select(sa.func.count(SessionUse.id)).where(SessionUse.vial_id == vials[0].id)) == 1
    movements = db.session.execute(sa.select(StockMovement.kind, StockMovement.quantity)
                                   .where(StockMovement.vial_id == vials[0].id).order_by(StockMovement.id)).all()
    assert [(kind, Decimal(quantity)) for kind, quantity in movements] == [
        ("use", Decimal("-0.4")), ("waste", Decimal("-0.6"))]
    _books_balance()


@pytest.mark.skipif(not TEST_DATABASE_URL.startswith("postgresql"),
                    reason="row locks between concurrent transactions are exercised on PostgreSQL")
def test_two_receipts_of_one_transfer_at_once_only_one_counts(live):
    app, port = live
    pharmacist, verifier, technician, active, formula = _setup_formula()
    lot = inventory.receive_lot(technician, ingredient_id=active.id, supplier="S", supplier_lot_number="T",
                                expires_on=date.today() + timedelta(days=90), quantity=Decimal("10"))
    inventory.release_lot(pharmacist, lot.id, PASSWORD, reason="Certificate requested")
    batch = batches.compound_batch(technician, formula.id, 3)
    batches.verify_batch(verifier, batch.id, PASSWORD)
    lyon = Site(code="LYON", name="Lyon", timezone="Europe/Paris", address="")
    db.session.add(lyon)
    db.session.flush()
    db.session.add(Location(site_id=lyon.id, code="LOC-LYON", name="Lyon store", kind="room", is_default=True))
    db.session.commit()
    vials = db.session.scalars(sa.select(Vial).where(Vial.batch_id == batch.id).order_by(Vial.id)).all()
    transfer = transfers.create_transfer(pharmacist, main_site().id, lyon.id, [{"vial_code": v.code} for v in vials])
    transfers.dispatch(pharmacist, transfer.id)
    receivers = [users.create_user(None, username=f"lyon{n}", display_name=f"Lyon {n}", role="technician",
                                   password=PASSWORD, site_codes=["LYON"]) for n in range(2)]
    requests = [("POST", f"/api/v1/transfers/{transfer.id}/receive", {},
                 {"Authorization": f"Bearer {users.create_token(None, user, 'test')}"}) for user in receivers]
    answers = _fire(port, requests)
    statuses = sorted(status for status, _ in answers)
    assert statuses == [200, 409], answers
    db.session.rollback()  # end our snapshot: read what the workers committed
    assert db.session.get(Transfer, transfer.id).status == "received"
    assert {v.status for v in db.session.scalars(sa.select(Vial).where(Vial.batch_id == batch.id))} == {"sealed"}
    arrivals = db.session.scalar(sa.select(sa.func.count(StatusChange.id)).where(
        StatusChange.entity_type == "vial", StatusChange.from_status == "in_transit"))
    assert arrivals == len(vials)
    assert db.session.scalar(sa.select(sa.func.count(TransferLine.id)).where(
        TransferLine.transfer_id == transfer.id, TransferLine.received == 1)) == len(vials)
    assert audit.verify_chain().ok


@pytest.mark.skipif(not TEST_DATABASE_URL.startswith("postgresql"),
                    reason="row locks between concurrent transactions are exercised on PostgreSQL")
def test_stock_received_into_a_fridge_while_a_reading_opens_an_excursion_is_held_or_refused(live):
    """A receipt either commits before the excursion (and is held by it) or waits and is refused."""
    app, port = live
    pharmacist, verifier, technician, active, formula = _setup_formula()
    fridge = Location(site_id=main_site().id, code="FRIDGE1", name="Fridge 1", kind="fridge",
                      min_celsius=Decimal("2"), max_celsius=Decimal("8"))
    db.session.add(fridge)
    db.session.commit()
    tech_token = users.create_token(None, technician, "test")
    pharm_token = users.create_token(None, pharmacist, "test")
    receipts = [("POST", "/api/v1/lots", {
        "ingredient_id": active.id, "supplier": "S", "lot_number": f"RACE-{n}",
        "expiry_date": (date.today() + timedelta(days=90)).isoformat(), "quantity": "5", "location_id": fridge.id},
        {"Authorization": f"Bearer {tech_token}"}) for n in range(3)]
    reading = ("POST", f"/api/v1/locations/{fridge.id}/readings", {
        "measured_at": (datetime.now(UTC) - timedelta(seconds=5)).isoformat(), "celsius": "14", "source": "manual"},
        {"Authorization": f"Bearer {pharm_token}"})
    answers = _fire(port, [*receipts[:2], reading, receipts[2]])
    assert answers[2][0] == 201, answers
    db.session.rollback()  # end our snapshot: read what the workers committed
    received = [body["id"] for status, body in (answers[0], answers[1], answers[3]) if status == 201]
    refused = [status for status, _ in (answers[0], answers[1], answers[3]) if status != 201]
    assert set(refused) <= {409}, answers
    statuses = {lot.id: lot.status for lot in db.session.scalars(sa.select(Lot).where(Lot.id.in_(received)))}
    assert set(statuses.values()) <= {"on_hold"}, statuses
    assert audit.verify_chain().ok
