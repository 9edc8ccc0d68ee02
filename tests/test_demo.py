"""seed-demo shows vials: single-dose vials spent after their session, a multiple-dose vial open."""

import sqlalchemy as sa

from compounding.demo import DEMO_BATCHES, DEMO_SESSIONS, seed_demo
from compounding.extensions import db
from compounding.models import Batch, Formula, Hold, SessionUse, StockMovement, Vial


def _seed() -> None:
    for _ in range(2):  # idempotent
        for _ in seed_demo():
            pass


def _batches_by_formula() -> dict:
    found = {}
    for batch, code in db.session.execute(sa.select(Batch, Formula.code).join(Formula).order_by(Batch.id)):
        found.setdefault(code, []).append(batch)
    return found


def test_the_demo_has_a_multiple_dose_formula_and_every_batch_its_vials(app):
    _seed()
    multiple = db.session.scalars(sa.select(Formula).where(Formula.dose == "multiple")).all()
    assert [f.code for f in multiple] == ["MESO-HA-MD"]
    assert multiple[0].in_use_hours == 168 and "USP <51>" in multiple[0].antimicrobial_evidence
    for batch in db.session.scalars(sa.select(Batch)):
        codes = db.session.scalars(sa.select(Vial.code).where(Vial.batch_id == batch.id).order_by(Vial.number)).all()
        assert codes == [f"{batch.code}-{n:02d}" for n in range(1, batch.units + 1)]
    # The stories the demo already told: a batch awaiting verification, one awaiting its tests, a recall, a hold.
    statuses = {b.status for b in db.session.scalars(sa.select(Batch))}
    assert {"prepared", "awaiting_tests", "recalled", "on_hold"} <= statuses
    assert db.session.scalar(sa.select(sa.func.count(Hold.id)).where(Hold.released_at.is_(None))) >= 1


def test_no_demo_batch_is_used_in_more_sessions_than_it_has_vials():
    """With single-dose the default, a batch of N units serves at most N sessions (the demo has one
    verified batch per formula, which its sessions use)."""
    units = {}
    for code, count, verified in DEMO_BATCHES:
        if verified:
            assert code not in units, f"two verified {code} batches: say which one the sessions use"
            units[code] = count
    sessions = {}
    for _, uses, _ in DEMO_SESSIONS:
        for code in {code for code, _, _ in uses}:
            sessions[code] = sessions.get(code, 0) + 1
    assert all(sessions[code] <= units[code] for code in sessions), (sessions, units)


def test_the_demo_sessions_draw_from_vials_single_dose_spent_and_one_multiple_dose_vial_open(app):
    _seed()
    uses = db.session.scalars(sa.select(SessionUse)).all()
    assert uses and all(use.vial_id is not None for use in uses)
    vials = {v.id: v for v in db.session.scalars(sa.select(Vial))}
    by_vial = {}
    for use in uses:
        by_vial.setdefault(use.vial_id, set()).add(use.session_id)
    for vial_id, sessions in by_vial.items():
        vial = vials[vial_id]
        if vial.dose == "single":
            assert len(sessions) == 1 and vial.status == "spent" and vial.remaining_ml == 0, vial.code
    shared = [vials[v] for v, sessions in by_vial.items() if vials[v].dose == "multiple"]
    assert len(shared) == 1 and shared[0].status == "open" and len(by_vial[shared[0].id]) == 3
    assert shared[0].punctured_at is not None and shared[0].remaining_ml == 4.5
    for batch in db.session.scalars(sa.select(Batch)):
        in_vials = sum(v.remaining_ml for v in vials.values() if v.batch_id == batch.id)
        assert in_vials == batch.remaining_volume_ml, batch.code
    remainders = db.session.scalar(sa.select(sa.func.count(StockMovement.id)).where(
        StockMovement.kind == "waste", StockMovement.vial_id.is_not(None)))
    assert remainders >= 1
