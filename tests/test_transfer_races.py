"""Two receipts of one transfer at once, from two gunicorn workers on PostgreSQL: exactly one counts.

The receipt locks the transfer row first (FOR UPDATE), so the second waits, then finds it
received and is refused (409). SQLite has no row locks to prove: skipped there.
"""

import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from testkit import AUDIT_KEY, PASSWORD, TEST_DATABASE_URL, base_config, run_at_once, stop_process

from compounding import create_app
from compounding.extensions import db
from compounding.models import Location, Site, StatusChange, Transfer, TransferLine, Vial
from compounding.services import audit, batches, formulas, ingredients, inventory, transfers, users
from compounding.services.sites import main_site

pytestmark = pytest.mark.skipif(not TEST_DATABASE_URL.startswith("postgresql"),
                                reason="row locks between concurrent transactions are exercised on PostgreSQL")

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




def test_two_receipts_of_one_transfer_at_once_only_one_counts(live):
    app, port = live
    pharmacist, verifier, technician, active, formula = _setup_formula()
    lot = inventory.receive_lot(technician, ingredient_id=active.id, supplier="S", supplier_lot_number="T",
                                expires_on=date.today() + timedelta(days=90), quantity=Decimal("10"))
    inventory.release_lot(pharmacist, lot.id, PASSWORD)
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
