"""seed-scale at a tiny size: the synthetic data obeys the same rules as real data."""

from datetime import date
from decimal import Decimal

import pytest
import sqlalchemy as sa
from testkit import reset_database

from compounding.extensions import db
from compounding.models import (
    AuditEvent,
    Batch,
    BatchComponent,
    CodeCounter,
    Equipment,
    Formula,
    Ingredient,
    Location,
    Lot,
    Patient,
    SessionUse,
    Site,
    StockMovement,
    TreatmentSession,
    User,
    UserSite,
    Vial,
)
from compounding.services import audit, batches, ingredients, inventory

TINY = ["--lots", "30", "--batches", "60", "--sessions", "200", "--patients", "50"]


def _seed(runner, *extra):
    db.session.remove()  # the command works on its own connection and transaction
    result = runner.invoke(args=["seed-scale", *TINY, *extra])
    return result.exit_code, result.output + (result.stderr or "")


def _exact(value) -> Decimal:
    # SQLite hands sums of NUMERIC back as floats: compare at the three decimals the columns keep.
    return Decimal(str(value or 0)).quantize(Decimal("0.001")) + 0


def _ledger_mismatches(model, balance, owner) -> list:
    """Lots (or batches) whose cached balance differs from the sum of their ledger rows: one GROUP BY."""
    sums = (sa.select(owner.label("owner_id"), sa.func.sum(StockMovement.quantity).label("total"))
            .where(owner.is_not(None)).group_by(owner).subquery())
    rows = db.session.execute(sa.select(model.id, balance, sums.c.total)
                              .outerjoin(sums, sums.c.owner_id == model.id)).all()
    return [row for row in rows if _exact(row[1]) != _exact(row[2])]


def _count(model, *where) -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(model).where(*where))


def _scale_user(username: str) -> User:
    return db.session.scalar(sa.select(User).where(User.username == username))


def test_seed_scale_builds_data_whose_balances_equal_their_ledgers_and_whose_audit_chain_verifies(runner):
    exit_code, output = _seed(runner)
    assert exit_code == 0, output
    assert _count(Lot) == 30 and _count(Batch) == 60 and _count(Patient) == 50
    assert _count(TreatmentSession) >= 200 and _count(SessionUse) >= _count(TreatmentSession)
    verify = runner.invoke(args=["audit", "verify"])
    assert verify.exit_code == 0 and "Audit trail intact" in verify.output
    assert audit.verify_chain().checked == _count(AuditEvent)
    assert _ledger_mismatches(Lot, Lot.remaining, StockMovement.lot_id) == []
    assert _ledger_mismatches(Batch, Batch.remaining_volume_ml, StockMovement.batch_id) == []
    outside = _count(Batch, sa.or_(Batch.remaining_volume_ml < 0, Batch.remaining_volume_ml > Batch.total_volume_ml))
    assert outside == 0


def test_seed_scale_respects_the_rules_of_lots_batches_and_sessions(runner):
    assert _seed(runner)[0] == 0
    # What each lot gave to batches is exactly what its ledger says was consumed.
    components = dict(db.session.execute(sa.select(BatchComponent.lot_id, sa.func.sum(BatchComponent.quantity))
                                         .group_by(BatchComponent.lot_id)).all())
    consumed = dict(db.session.execute(sa.select(StockMovement.lot_id, sa.func.sum(StockMovement.quantity))
                                       .where(StockMovement.kind == "consume").group_by(StockMovement.lot_id)).all())
    assert {k: _exact(v) for k, v in components.items()} == {k: -_exact(v) for k, v in consumed.items()}
    assert _count(StockMovement, StockMovement.kind == "receive", StockMovement.lot_id.is_not(None)) == 30
    assert _count(StockMovement, StockMovement.kind == "receive", StockMovement.batch_id.is_not(None)) == 60
    # A session uses only a released batch, between its verification and its beyond-use time.
    misplaced = _count(SessionUse, SessionUse.batch_id == Batch.id, SessionUse.session_id == TreatmentSession.id,
                       sa.or_(Batch.verified_at.is_(None), TreatmentSession.performed_at < Batch.verified_at,
                              TreatmentSession.performed_at >= Batch.beyond_use_at))
    assert misplaced == 0
    # A lot went into batches only after its release; a batch was verified by someone else.
    early = _count(BatchComponent, BatchComponent.lot_id == Lot.id, BatchComponent.batch_id == Batch.id,
                   Batch.compounded_at < Lot.released_at)
    assert early == 0
    assert _count(Batch, Batch.verified_by_id == Batch.compounded_by_id) == 0
    assert set(db.session.scalars(sa.select(Batch.status).distinct())) <= {
        "prepared", "released", "rejected", "discarded", "depleted"}


def test_seed_scale_codes_are_unique_and_later_receipts_and_batches_take_the_next_ones(runner):
    assert _seed(runner)[0] == 0
    for column in (Lot.code, Batch.code, Patient.chart_number):
        assert db.session.scalar(sa.select(sa.func.count(sa.distinct(column)))) == _count(column.class_)
    highest = db.session.scalar(sa.select(sa.func.max(Lot.code)))
    assert db.session.get(CodeCounter, "lot").value == int(highest[1:])
    technician = _scale_user("scale.technician")
    saline = db.session.scalar(sa.select(Ingredient).where(Ingredient.name == "Sodium chloride 0.9 %"))
    lot = inventory.receive_lot(technician, ingredient_id=saline.id, supplier="B. Braun",
                                supplier_lot_number="NS-REAL-1", expires_on=date(2099, 12, 31), quantity="100")
    assert lot.code == f"L{int(highest[1:]) + 1:06d}"
    codes = set(db.session.scalars(sa.select(Batch.code)))
    formula = db.session.scalar(sa.select(Formula).where(Formula.code == "SCALE-HAIR", Formula.status == "approved"))
    bench = db.session.scalars(sa.select(Equipment.id).where(Equipment.code.in_(("BAL-MAIN", "HOOD-MAIN")))).all()
    batch = batches.compound_batch(technician, formula.id, 1, equipment_ids=list(bench))
    assert batch.code not in codes


def test_seed_scale_appends_to_its_own_data_and_the_chain_still_verifies(runner):
    assert _seed(runner)[0] == 0
    exit_code, output = _seed(runner, "--seed", "2")
    assert exit_code == 0, output
    assert _count(Lot) == 60 and _count(Batch) == 120 and _count(Patient) == 100
    assert audit.verify_chain().ok
    assert _ledger_mismatches(Lot, Lot.remaining, StockMovement.lot_id) == []
    assert _ledger_mismatches(Batch, Batch.remaining_volume_ml, StockMovement.batch_id) == []
    assert db.session.scalar(sa.select(sa.func.count(sa.distinct(Batch.code)))) == 120


@pytest.mark.parametrize("force", [False, True])
def test_seed_scale_refuses_a_clinic_database_unless_forced(runner, make_user, force):
    technician = make_user("technician")
    ingredient = ingredients.create_ingredient(make_user("pharmacist"), {
        "name": "Biotin", "kind": "active", "unit": "mL", "storage": "room"})
    inventory.receive_lot(technician, ingredient_id=ingredient.id, supplier="TrichoSource Ltd",
                          supplier_lot_number="BT-1", expires_on=date(2099, 1, 31), quantity="40")
    exit_code, output = _seed(runner, *(["--force"] if force else []))
    if not force:
        assert exit_code == 1 and "--force" in output
        assert _count(Lot) == 1 and _count(Batch) == 0
    else:
        assert exit_code == 0, output
        assert _count(Lot) == 31 and audit.verify_chain().ok
        assert _ledger_mismatches(Lot, Lot.remaining, StockMovement.lot_id) == []


def _vials_by_batch() -> dict:
    found = {}
    for vial in db.session.scalars(sa.select(Vial).order_by(Vial.batch_id, Vial.number)):
        found.setdefault(vial.batch_id, []).append(vial)
    return found


def test_seed_scale_gives_every_batch_its_vials_whose_volumes_add_up_to_the_batch_and_their_ledger(runner):
    assert _seed(runner)[0] == 0
    vials = _vials_by_batch()
    for batch in db.session.scalars(sa.select(Batch)):
        mine = vials.get(batch.id, [])
        width = max(2, len(str(batch.units)))
        assert [v.number for v in mine] == list(range(1, batch.units + 1)), batch.code
        assert [v.code for v in mine] == [f"{batch.code}-{n:0{width}d}" for n in range(1, batch.units + 1)]
        assert all(v.volume_ml * batch.units == batch.total_volume_ml and not v.legacy for v in mine)
        assert _exact(sum(v.remaining_ml for v in mine)) == _exact(batch.remaining_volume_ml), batch.code
        finished = {"spent", "discarded"}
        if batch.status in ("discarded", "rejected", "depleted"):
            assert {v.status for v in mine} <= finished, (batch.code, batch.status)
        if batch.status == "prepared":
            assert {v.status for v in mine} == {"sealed"}
    # A vial's balance is its fill plus the ledger rows naming it; each of those rows names its batch too.
    moved = dict(db.session.execute(sa.select(StockMovement.vial_id, sa.func.sum(StockMovement.quantity))
                                    .where(StockMovement.vial_id.is_not(None)).group_by(StockMovement.vial_id)).all())
    for vial in db.session.scalars(sa.select(Vial)):
        assert _exact(vial.remaining_ml) == _exact(vial.volume_ml) + _exact(moved.get(vial.id)), vial.code
    strays = _count(StockMovement, StockMovement.vial_id == Vial.id, StockMovement.batch_id != Vial.batch_id)
    assert strays == 0
    assert _count(StockMovement, StockMovement.vial_id.is_not(None), StockMovement.kind.not_in(("use", "waste"))) == 0


def test_seed_scale_uses_draw_from_vials_by_the_single_and_multiple_dose_rules(runner):
    assert _seed(runner)[0] == 0
    uses = db.session.execute(
        sa.select(SessionUse, TreatmentSession.performed_at, Batch.beyond_use_at)
        .join(TreatmentSession, TreatmentSession.id == SessionUse.session_id)
        .join(Batch, Batch.id == SessionUse.batch_id)).all()
    assert uses and all(use.vial_id is not None for use, _, _ in uses)
    vials = {v.id: v for v in db.session.scalars(sa.select(Vial))}
    # Every use's ledger row names the use's vial.
    ledger = dict(db.session.execute(sa.select(StockMovement.reference_id, StockMovement.vial_id)
                                     .where(StockMovement.kind == "use")).all())
    assert {use.id: use.vial_id for use, _, _ in uses} == ledger
    sessions_of, times_of = {}, {}
    for use, performed_at, _ in uses:
        vial = vials[use.vial_id]
        assert vial.batch_id == use.batch_id
        sessions_of.setdefault(vial.id, set()).add(use.session_id)
        times_of.setdefault(vial.id, []).append((performed_at, use.session_id))
    remainders = dict(db.session.execute(
        sa.select(StockMovement.vial_id, sa.func.sum(StockMovement.quantity))
        .where(StockMovement.kind == "waste", StockMovement.reason == "single_dose_remainder")
        .group_by(StockMovement.vial_id)).all())
    beyond_use = dict(db.session.execute(sa.select(Batch.id, Batch.beyond_use_at)).all())
    shared = 0
    for vial_id, sessions in sessions_of.items():
        vial = vials[vial_id]
        first_at, first_session = min(times_of[vial_id])
        assert vial.first_session_id == first_session and vial.punctured_at == first_at, vial.code
        if vial.dose == "single":
            # One patient, one session, then spent: what that session left is written off.
            assert len(sessions) == 1 and vial.status == "spent" and vial.remaining_ml == 0, vial.code
            used = sum(use.volume_ml for use, _, _ in uses if use.vial_id == vial_id)
            assert _exact(used) - _exact(remainders.get(vial_id)) == _exact(vial.volume_ml), vial.code
        else:
            deadline = vial.in_use_until(beyond_use[vial.batch_id])
            assert all(at < deadline for at, _ in times_of[vial_id]), vial.code
            assert vial.status in ("open", "spent", "discarded"), vial.code
            shared += len(sessions) > 1
    assert shared > 0, "no multiple-dose vial served several sessions"
    assert {v.dose for v in vials.values()} == {"single", "multiple"}
    for vial in vials.values():
        if vial.id not in sessions_of:
            assert vial.punctured_at is None and vial.first_session_id is None, vial.code
            assert vial.status in ("sealed", "discarded"), vial.code
        if vial.status == "sealed":
            assert vial.remaining_ml == vial.volume_ml and vial.id not in sessions_of
        if vial.status == "open":
            assert vial.dose == "multiple" and 0 < vial.remaining_ml < vial.volume_ml
        if vial.status in ("spent", "discarded"):
            assert vial.remaining_ml == 0
        if vial.status == "discarded":
            assert vial.status_reason
    multiple = db.session.scalars(sa.select(Formula).where(Formula.dose == "multiple")).all()
    assert multiple and all(f.in_use_hours and f.antimicrobial_evidence for f in multiple)


# A chain: `--sites 3` at a tiny size (each site receives a lot of every ingredient, so a few more lots).
CHAIN = ["--lots", "40", "--batches", "90", "--sessions", "300", "--patients", "60", "--sites", "3"]


def _seed_chain(runner, *extra):
    db.session.remove()
    result = runner.invoke(args=["seed-scale", *CHAIN, *extra])
    return result.exit_code, result.output + (result.stderr or "")


def test_seed_scale_sites_put_everything_at_a_location_of_its_own_site_and_staff_at_their_sites(runner):
    exit_code, output = _seed_chain(runner)
    assert exit_code == 0, output
    sites = {s.code: s for s in db.session.scalars(sa.select(Site))}
    assert set(sites) == {"MAIN", "S002", "S003"}
    assert all(s.timezone and s.name for s in sites.values())
    for site in sites.values():
        kinds = sorted((loc.kind, loc.is_default) for loc in db.session.scalars(
            sa.select(Location).where(Location.site_id == site.id)))
        assert kinds == [("fridge", False), ("room", True)], site.code
    # Every lot, batch and vial is at a location of its own site, and every site holds some of each.
    for model in (Lot, Batch, Vial):
        assert _count(model, model.location_id.is_(None)) == 0
        assert _count(model, Location.id == model.location_id, Location.site_id != model.site_id) == 0, model
        assert db.session.scalar(sa.select(sa.func.count(sa.distinct(model.site_id)))) == 3, model
    assert _count(Vial, Batch.id == Vial.batch_id, sa.or_(Batch.site_id != Vial.site_id,
                                                          Batch.location_id != Vial.location_id)) == 0
    # A batch takes lots of its own site; a session is performed where its vials and batches are.
    assert _count(BatchComponent, Lot.id == BatchComponent.lot_id, Batch.id == BatchComponent.batch_id,
                  Lot.site_id != Batch.site_id) == 0
    assert _count(SessionUse, TreatmentSession.id == SessionUse.session_id, Vial.id == SessionUse.vial_id,
                  TreatmentSession.site_id != Vial.site_id) == 0
    assert db.session.scalar(sa.select(sa.func.count(sa.distinct(TreatmentSession.site_id)))) == 3
    # Every ledger row names the location of its lot or batch (a vial's row, its batch's location).
    assert _count(StockMovement, StockMovement.location_id.is_(None)) == 0
    assert _count(StockMovement, Lot.id == StockMovement.lot_id, Lot.location_id != StockMovement.location_id) == 0
    assert _count(StockMovement, Batch.id == StockMovement.batch_id,
                  Batch.location_id != StockMovement.location_id) == 0
    # A pharmacist and a practitioner per site, members of it alone; the chain pharmacists see every site.
    for code, site in sites.items():
        for role in ("pharmacist", "practitioner"):
            user = _scale_user(f"scale.{code.lower()}.{role}")
            assert user is not None and user.role == role and not user.all_sites
            assert db.session.scalars(sa.select(UserSite.site_id).where(UserSite.user_id == user.id)).all() == [site.id]
    for username in ("scale.pharmacist1", "scale.pharmacist2"):
        user = _scale_user(username)
        assert user.all_sites
        assert _count(UserSite, UserSite.user_id == user.id) == 3
    # Who did it belongs where it was done: the receiver of a lot, the compounder of a batch, the practitioner.
    member = sa.exists().where(UserSite.user_id == TreatmentSession.practitioner_id,
                               UserSite.site_id == TreatmentSession.site_id)
    assert _count(TreatmentSession, ~member) == 0
    member = sa.exists().where(UserSite.user_id == Batch.compounded_by_id, UserSite.site_id == Batch.site_id)
    assert _count(Batch, ~member) == 0
    member = sa.exists().where(UserSite.user_id == Lot.received_by_id, UserSite.site_id == Lot.site_id)
    assert _count(Lot, ~member) == 0
    # The rules of a single site still hold.
    assert audit.verify_chain().ok
    assert _ledger_mismatches(Lot, Lot.remaining, StockMovement.lot_id) == []
    assert _ledger_mismatches(Batch, Batch.remaining_volume_ml, StockMovement.batch_id) == []
    assert _count(Batch, Batch.verified_by_id == Batch.compounded_by_id) == 0


def test_seed_scale_sites_seeded_twice_add_no_second_site_and_keep_their_staff(runner):
    assert _seed_chain(runner)[0] == 0
    exit_code, output = _seed_chain(runner, "--seed", "2")
    assert exit_code == 0, output
    assert _count(Site) == 3 and _count(Location) == 6
    assert _count(User, User.username.like("scale.%.%")) == 6
    assert audit.verify_chain().ok
    assert _count(Vial, Location.id == Vial.location_id, Location.site_id != Vial.site_id) == 0


def _fingerprint() -> dict:
    """The data set without its clock: ids relative to the first, sites by code, no timestamps."""
    site_code = dict(db.session.execute(sa.select(Site.id, Site.code)).all())
    location = dict(db.session.execute(sa.select(Location.id, Location.name)).all())

    def rows(statement):
        found = db.session.execute(statement).all()
        first = min((row[0] for row in found), default=0)
        return [(row[0] - first, *row[1:]) for row in found]

    return {
        "lots": rows(sa.select(Lot.id, Lot.ingredient_id, Lot.site_id, Lot.location_id, Lot.quantity_received,
                               Lot.remaining, Lot.status).order_by(Lot.id)),
        "batches": rows(sa.select(Batch.id, Batch.formula_id, Batch.site_id, Batch.location_id, Batch.units,
                                  Batch.remaining_volume_ml, Batch.status).order_by(Batch.id)),
        "vials": rows(sa.select(Vial.id, Vial.number, Vial.site_id, Vial.status, Vial.remaining_ml).order_by(Vial.id)),
        "sessions": rows(sa.select(TreatmentSession.id, TreatmentSession.site_id, TreatmentSession.indication)
                         .order_by(TreatmentSession.id)),
        "uses": rows(sa.select(SessionUse.id, SessionUse.volume_ml, SessionUse.area).order_by(SessionUse.id)),
        "sites": sorted(site_code.values()), "locations": sorted(location.values()),
    }


def test_seed_scale_sites_same_seed_gives_the_same_data(app, runner):
    assert _seed_chain(runner)[0] == 0
    first = _fingerprint()
    db.session.remove()
    if db.engine.dialect.name == "sqlite":
        db.drop_all()
        db.create_all()
    else:
        reset_database(app)
    assert _count(Lot) == 0
    assert _seed_chain(runner)[0] == 0
    assert _fingerprint() == first
    db.session.remove()
    assert _seed_chain(runner, "--seed", "2")[0] == 0
    assert _count(Batch) == 180  # and another seed adds different data (checked by its count only)


def test_seed_scale_on_postgresql_puts_back_every_index_and_foreign_key_it_set_aside(runner):
    if db.engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL: the load sets the big tables' indexes aside and builds them after")
    from compounding.scale.writer import index_definitions

    with db.engine.connect() as connection:
        before = index_definitions(connection)
    assert any(name == "ix_stock_movements_lot_id" for _, name, _ in before)
    assert _seed_chain(runner)[0] == 0
    with db.engine.connect() as connection:
        assert index_definitions(connection) == before
