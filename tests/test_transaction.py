"""The transaction boundary: a use case commits on return, writes nothing when it fails, and
one made of others is still one transaction; a refusal keeps only its own record."""

import contextlib
from datetime import date, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa
from testkit import PASSWORD, count_rows

from compounding.extensions import db
from compounding.models import AuditEvent, AuthFailure, Lot, LotStatus, StockMovement
from compounding.services import inventory
from compounding.services.errors import InvalidState, SignatureRejected
from compounding.services.transaction import UseCaseFailed, alone, in_transaction, refusal, transaction, transactional


class Boom(Exception):
    """A failure after the work is done: everything written before it must go."""


def _counts() -> tuple[int, int, int]:
    return count_rows(Lot), count_rows(StockMovement), count_rows(AuditEvent)


def _receive(technician, ingredient, number: str = "SL-1") -> Lot:
    return inventory.receive_lot(technician, ingredient_id=ingredient.id, supplier="Supplier A",
                                 supplier_lot_number=number, expires_on=date.today() + timedelta(days=365),
                                 quantity=Decimal("10"))


def _visible_elsewhere(lot_id: int) -> bool:
    """Whether the lot survives throwing the session's unsaved work away, i.e. it was committed."""
    db.session.rollback()
    db.session.expunge_all()
    return db.session.get(Lot, lot_id) is not None


def test_a_use_case_commits_when_it_returns(make_user, make_ingredient):
    technician, ingredient = make_user("technician"), make_ingredient()
    lot_id = _receive(technician, ingredient).id
    assert not in_transaction()
    assert _visible_elsewhere(lot_id)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(AuditEvent)
                             .where(AuditEvent.action == "lot.received", AuditEvent.entity_id == lot_id)) == 1


def test_a_failing_use_case_writes_nothing(make_user, make_ingredient):
    technician, ingredient = make_user("technician"), make_ingredient()
    before = _counts()

    @transactional
    def receive_then_fail():
        _receive(technician, ingredient)
        assert in_transaction()
        raise Boom

    with pytest.raises(Boom):
        receive_then_fail()
    assert not in_transaction()
    assert _counts() == before  # no lot, no ledger row, no audit row


def test_a_refused_service_writes_nothing(make_user, make_lot):
    pharmacist = make_user("pharmacist")
    lot = make_lot()  # released already
    before = _counts()
    with pytest.raises(InvalidState, match="only a lot in quarantine can be released"):
        inventory.release_lot(pharmacist, lot.id, PASSWORD)
    assert _counts() == before


def test_nested_use_cases_join_the_outer_one(make_user, make_ingredient):
    """The inner service returned (and would have committed alone); the outer one fails: nothing stays."""
    technician, ingredient = make_user("technician"), make_ingredient()
    before = _counts()
    with pytest.raises(Boom), transaction():
        first = _receive(technician, ingredient, "SL-1")
        _receive(technician, ingredient, "SL-2")
        assert in_transaction() and first.id is not None
        raise Boom
    assert _counts() == before


def test_nested_use_cases_commit_once_with_the_outer_one(make_user, make_ingredient):
    technician, ingredient = make_user("technician"), make_ingredient()
    commits = []
    count = commits.append
    sa.event.listen(db.session(), "after_commit", count)
    try:
        with transaction():
            lots = [_receive(technician, ingredient, f"SL-{n}") for n in range(3)]
            assert not commits
    finally:
        sa.event.remove(db.session(), "after_commit", count)
    assert len(commits) == 1
    ids = [lot.id for lot in lots]
    assert all(_visible_elsewhere(lot_id) for lot_id in ids)


def test_a_refusal_keeps_only_its_record(make_user, make_ingredient):
    """A wrong signature inside a use case: the use case's work goes, the refusal's record stays."""
    technician, pharmacist, ingredient = make_user("technician"), make_user("pharmacist"), make_ingredient()
    lot = _receive(technician, ingredient)
    before = _counts()
    with pytest.raises(SignatureRejected), transaction():
        _receive(technician, ingredient, "SL-2")  # unfinished work the refusal throws away
        inventory.release_lot(pharmacist, lot.id, "not the password", reason="Certificate requested")
    assert _counts()[:2] == before[:2]  # no new lot, no new ledger row
    new_actions = list(db.session.scalars(sa.select(AuditEvent.action).order_by(AuditEvent.id)))[before[2]:]
    assert new_actions == ["signature.refused"]
    assert count_rows(AuthFailure) == 1
    assert db.session.get(Lot, lot.id).status == LotStatus.QUARANTINE


def test_refusal_commits_what_is_written_inside_it(make_user):
    user = make_user("pharmacist")
    with pytest.raises(Boom), transaction():
        db.session.add(AuthFailure(user_id=user.id, occurred_at=user.password_changed_at, kind="login"))
        with refusal():  # throws the failure above away, then keeps what it writes itself
            db.session.add(AuthFailure(user_id=user.id, occurred_at=user.password_changed_at, kind="signature"))
        raise Boom
    assert list(db.session.scalars(sa.select(AuthFailure.kind))) == ["signature"]


def test_a_use_case_inside_a_refusal_joins_its_single_commit(make_user):
    """A decorated service called while a refusal writes its record commits with it, not alone."""
    user = make_user("pharmacist")
    commits = []

    def count(session):
        commits.append(1)

    @transactional
    def note_failure():
        assert in_transaction()
        db.session.add(AuthFailure(user_id=user.id, occurred_at=user.password_changed_at, kind="signature"))

    sa.event.listen(db.session(), "after_commit", count)
    try:
        with refusal():
            note_failure()
            note_failure()
    finally:
        sa.event.remove(db.session(), "after_commit", count)
    assert len(commits) == 1
    assert count_rows(AuthFailure) == 2


def test_a_caught_failure_of_a_joined_use_case_saves_nothing(make_user, make_ingredient):
    """No savepoints: a step that failed and was swallowed must not be committed as if it had worked."""
    technician, pharmacist, ingredient = make_user("technician"), make_user("pharmacist"), make_ingredient()
    lot = _receive(technician, ingredient)
    inventory.release_lot(pharmacist, lot.id, PASSWORD, reason="Certificate requested")
    before = _counts()
    with pytest.raises(UseCaseFailed), transaction():
        _receive(technician, ingredient, "SL-2")
        with contextlib.suppress(InvalidState):
            inventory.release_lot(pharmacist, lot.id, PASSWORD)  # released already: refused
    assert _counts() == before
    # The session is usable again afterwards, and the next use case commits as usual.
    _receive(technician, ingredient, "SL-3")
    assert _counts()[0] == before[0] + 1


def test_a_write_that_commits_alone_refuses_to_join_another(make_user):
    user = make_user("pharmacist")
    with pytest.raises(RuntimeError, match="commits on its own"), transaction(), alone():
        db.session.add(AuthFailure(user_id=user.id, occurred_at=user.password_changed_at, kind="login"))
    assert count_rows(AuthFailure) == 0
    with alone():
        db.session.add(AuthFailure(user_id=user.id, occurred_at=user.password_changed_at, kind="login"))
    assert count_rows(AuthFailure) == 1
