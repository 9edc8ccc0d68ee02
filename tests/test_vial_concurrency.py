"""Several worker processes, one single-dose vial: exactly one session gets it.

A real gunicorn (several workers) serves the app on its own database (a temporary SQLite
file, or a fresh PostgreSQL database), as tests/test_concurrency_processes.py does; the
requests leave from threads released together.
"""

from decimal import Decimal

import sqlalchemy as sa
from test_concurrency_processes import _books_balance, _fire, _setup_formula, database_url, live  # noqa: F401
from testkit import PASSWORD

from compounding.extensions import db
from compounding.models import Batch, SessionUse, StockMovement, Vial
from compounding.services import batches, inventory, treatments, users

ATTEMPTS = 8


def test_two_practitioners_scanning_one_single_dose_vial_at_once_only_one_session_gets_it(live):  # noqa: F811
    app, port = live
    pharmacist, verifier, technician, active, formula = _setup_formula()
    from datetime import date, timedelta

    lot = inventory.receive_lot(technician, ingredient_id=active.id, supplier="S", supplier_lot_number="V",
                                expires_on=date.today() + timedelta(days=90), quantity=Decimal("10"))
    inventory.release_lot(pharmacist, lot.id, PASSWORD)
    batch = batches.compound_batch(technician, formula.id, 2)  # two single-dose vials of 1 mL
    batches.verify_batch(verifier, batch.id, PASSWORD)
    vial = f"{batch.code}-01"
    tokens = []
    for name in ("doc-a", "doc-b"):
        practitioner = users.create_user(None, username=name, display_name=name.title(), role="practitioner",
                                         password=PASSWORD)
        tokens.append(users.create_token(None, practitioner, "test"))
    patients = [treatments.create_patient(pharmacist, {"chart_number": f"V-{n}"}).id for n in range(ATTEMPTS)]
    requests = [("POST", "/api/v1/treatment-sessions",
                 {"patient_id": patients[n], "uses": [{"vial_code": vial, "volume_ml": "0.4", "area": "scalp"}]},
                 {"Authorization": f"Bearer {tokens[n % 2]}"}) for n in range(ATTEMPTS)]
    answers = _fire(port, requests)
    statuses = sorted(status for status, _ in answers)
    assert all(status < 500 for status in statuses), answers
    assert statuses.count(201) == 1 and statuses.count(409) == ATTEMPTS - 1, answers
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
