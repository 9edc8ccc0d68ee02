"""Faults: the database going away, and a transaction that fails half-way."""

from datetime import date, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa
from testkit import base_config

from compounding import create_app
from compounding.extensions import db
from compounding.models import AuditEvent, CodeCounter, Lot, StockMovement
from compounding.services import inventory


@pytest.fixture
def file_app(tmp_path):
    """An app on an SQLite file, so the pool can really lose and regain its connections."""
    app = create_app(base_config(SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'faults.db'}"))
    with app.app_context():
        db.create_all()
        yield app
        db.session.remove()
        db.engine.dispose()


def test_an_unreachable_database_answers_503_without_a_traceback_and_the_app_recovers(file_app, monkeypatch):
    from testkit import sign_in

    from compounding.services import users

    client = file_app.test_client()
    user = users.create_user(None, username="pharm", display_name="Pharm", role="pharmacist",
                             password="correct-horse-battery")
    token = users.create_token(None, user, "test")
    sign_in(client, user)
    state = {"down": True}

    def refuse(dialect, conn_rec, cargs, cparams):
        if state["down"]:
            raise sa.exc.OperationalError("connect", {}, Exception("connection refused"))

    sa.event.listen(db.engine, "do_connect", refuse)
    db.session.remove()  # as at the end of a real request: no connection is held
    db.engine.dispose()
    try:
        api = client.get("/healthz", headers={"Accept": "application/json"})
        assert api.status_code == 503
        assert api.json["error"].startswith("The database cannot be reached")
        assert "Traceback" not in api.get_data(as_text=True)
        api = client.get("/api/v1/lots", headers={"Authorization": f"Bearer {token}"})
        assert api.status_code == 503 and api.is_json and "Traceback" not in api.get_data(as_text=True)
        assert int(api.headers["Retry-After"]) > 0
        page = client.get("/lots/")
        assert page.status_code == 503 and "Service unavailable" in page.get_data(as_text=True)
        state["down"] = False
        assert client.get("/healthz").status_code == 200
    finally:
        sa.event.remove(db.engine, "do_connect", refuse)


def test_a_transaction_failing_after_its_first_write_leaves_nothing_behind(technician, make_ingredient,
                                                                           monkeypatch):
    ingredient = make_ingredient()
    before = {
        "lots": db.session.scalar(sa.select(sa.func.count(Lot.id))),
        "movements": db.session.scalar(sa.select(sa.func.count(StockMovement.id))),
        "audit": db.session.scalar(sa.select(sa.func.count(AuditEvent.id))),
        "counter": db.session.scalar(sa.select(CodeCounter.value).where(CodeCounter.key == "lot")),
    }

    def crash(*args, **kwargs):
        raise RuntimeError("power cut between the lot row and its ledger row")

    monkeypatch.setattr(inventory, "move_lot", crash)
    with pytest.raises(RuntimeError):
        inventory.receive_lot(technician, ingredient_id=ingredient.id, supplier="S", supplier_lot_number="X1",
                              expires_on=date.today() + timedelta(days=90), quantity=Decimal("5"))
    db.session.rollback()
    after = {
        "lots": db.session.scalar(sa.select(sa.func.count(Lot.id))),
        "movements": db.session.scalar(sa.select(sa.func.count(StockMovement.id))),
        "audit": db.session.scalar(sa.select(sa.func.count(AuditEvent.id))),
        "counter": db.session.scalar(sa.select(CodeCounter.value).where(CodeCounter.key == "lot")),
    }
    assert after == before
