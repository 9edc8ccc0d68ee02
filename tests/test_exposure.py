"""Exposure counts follow every use, void, patient correction, late entry and child lot, and can be checked."""

from datetime import date, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa
from testkit import PASSWORD

from compounding.extensions import db
from compounding.models import BatchComponent, ExposureCount, Location, Lot, SessionUse, Site, TreatmentSession
from compounding.models.exposure import ALL_SITES
from compounding.services import batches, exposure, recalls, treatments, voids
from compounding.services.clock import utcnow


def counts(kind: str, item_id: int, site_id: int = ALL_SITES) -> dict:
    row = db.session.get(ExposureCount, (kind, item_id, site_id), populate_existing=True)
    if row is None:
        return {}
    return {field: getattr(row, field) for field in exposure.COUNTED}


def no_drift() -> None:
    drifts, _ = exposure.check_all()
    assert drifts == [], [str(d) for d in drifts]


def lot_of(batch) -> int:
    return db.session.scalar(sa.select(BatchComponent.lot_id).where(BatchComponent.batch_id == batch.id)
                             .order_by(BatchComponent.lot_id).limit(1))


def use(batch, volume):
    return {"batch_code": batch.code, "volume_ml": volume}


@pytest.fixture
def lyon(app):
    site = Site(code="LYON", name="Lyon", timezone="Europe/Paris", address="", active=True, created_at=utcnow())
    db.session.add(site)
    db.session.flush()
    db.session.add(Location(site_id=site.id, code="LOC0900", name="Lyon store", kind="room", is_default=True))
    db.session.commit()
    return site


def test_a_session_counts_its_batch_and_lots_once_even_with_two_uses_of_one_batch(chain):
    first, lot = chain["first"], chain["lot"]
    # Patient b's session used first (1 mL) and second (2 mL): the lot counts it once, with 3 mL.
    assert counts("batch", first.id) == {"batches": 1, "vials": counts("batch", first.id)["vials"], "sessions": 2,
                                         "voided_sessions": 0, "patients": 2, "volume_ml": Decimal("4")}
    assert counts("lot", lot.id) == {"batches": 2, "vials": counts("lot", lot.id)["vials"], "sessions": 4,
                                     "voided_sessions": 0, "patients": 3, "volume_ml": Decimal("11")}
    main = db.session.scalar(sa.select(Site.id).where(Site.code == "MAIN"))
    assert counts("lot", lot.id, main) == counts("lot", lot.id)
    before = counts("batch", first.id)
    treatments.record_session(chain["practitioner"], patient_id=chain["a"].id, uses=[use(first, "1"), use(first, "1")])
    after = counts("batch", first.id)
    assert (after["sessions"], after["patients"], after["volume_ml"]) == (
        before["sessions"] + 1, before["patients"], before["volume_ml"] + 2)
    no_drift()


def test_a_void_keeps_the_session_and_patient_counted_and_takes_the_volume_out(chain):
    voids.void_session(chain["practitioner"], chain["sessions"][0].id, reason_code="entered_in_error",
                       reason="typed on the wrong chart")
    assert counts("lot", chain["lot"].id) | {"vials": 0} == {
        "batches": 2, "vials": 0, "sessions": 4, "voided_sessions": 1, "patients": 3, "volume_ml": Decimal("8")}
    no_drift()


def test_a_patient_correction_adds_the_right_patient_and_keeps_the_wrong_one_flagged(chain, pharmacist):
    right = chain["other"]
    voids.correct_patient(pharmacist, chain["sessions"][0].id, patient_id=right.id, reason="wrong chart",
                          password=PASSWORD)
    lot = counts("lot", chain["lot"].id)
    assert (lot["sessions"], lot["voided_sessions"], lot["patients"], lot["volume_ml"]) == (5, 1, 4, Decimal("11"))
    member = exposure.MEMBERSHIPS["patients"][0]
    assert db.session.scalar(sa.select(member.c.uses).where(
        member.c.kind == "lot", member.c.item_id == chain["lot"].id, member.c.site_id == ALL_SITES,
        member.c.patient_id == right.id)) == 1
    no_drift()


def test_a_late_entry_after_a_recall_opened_counts_like_any_other_session(chain, pharmacist):
    performed_at = utcnow()
    recalls.open_recall(pharmacist, reason="endotoxin", password=PASSWORD, lot_id=chain["lot"].id)
    treatments.record_session(pharmacist, patient_id=chain["other"].id, uses=[use(chain["second"], "1")],
                              performed_at=performed_at)
    second = counts("batch", chain["second"].id)
    assert (second["sessions"], second["patients"]) == (4, 3)
    no_drift()


def test_a_batch_made_from_a_child_lot_reaches_the_parent_lot(chain, make_lot, make_patient):
    pc, parent = chain["pc"], chain["lot"]
    child = make_lot(pc, quantity="100")
    db.session.execute(sa.update(Lot).where(Lot.id == child.id).values(parent_lot_id=parent.id))
    # Expiring first, the grandchild is the lot FEFO takes.
    grandchild = make_lot(pc, quantity="100", expires_on=date.today() + timedelta(days=30))
    db.session.execute(sa.update(Lot).where(Lot.id == grandchild.id).values(parent_lot_id=child.id))
    db.session.commit()
    formula_id = chain["first"].formula_id
    batch = batches.compound_batch(chain["technician"], formula_id, 1)
    assert grandchild.id in {row for row in db.session.scalars(
        sa.select(BatchComponent.lot_id).where(BatchComponent.batch_id == batch.id))}
    batches.verify_batch(chain["pharmacist"], batch.id, PASSWORD)
    before = counts("lot", parent.id)
    treatments.record_session(chain["practitioner"], patient_id=make_patient().id, uses=[use(batch, "2")])
    after = counts("lot", parent.id)
    assert (after["batches"], after["sessions"], after["patients"], after["volume_ml"]) == (
        before["batches"] + 1, before["sessions"] + 1, before["patients"] + 1, before["volume_ml"] + 2)
    assert counts("lot", child.id)["sessions"] == 1 and counts("lot", grandchild.id)["sessions"] == 1
    assert counts("lot", child.id)["patients"] == 1
    no_drift()


def test_counts_are_kept_per_site_and_the_chain_counts_a_patient_once(chain, lyon):
    practitioner, patient = chain["practitioner"], chain["a"]
    row = TreatmentSession(patient_id=patient.id, practitioner_id=practitioner.id, site_id=lyon.id,
                           performed_at=utcnow(), recorded_at=utcnow())
    db.session.add(row)
    db.session.flush()
    db.session.add(SessionUse(session_id=row.id, batch_id=chain["first"].id, volume_ml=Decimal("2")))
    db.session.flush()
    exposure.count_session(row)
    db.session.commit()
    at_lyon = counts("lot", chain["lot"].id, lyon.id)
    assert (at_lyon["sessions"], at_lyon["patients"], at_lyon["batches"], at_lyon["volume_ml"]) == (
        1, 1, 1, Decimal("2"))
    chain_wide = counts("lot", chain["lot"].id)
    assert (chain_wide["sessions"], chain_wide["patients"], chain_wide["volume_ml"]) == (5, 3, Decimal("13"))
    no_drift()


def test_recompute_and_rebuild_give_back_what_was_kept(chain):
    kept = {key: counts(*key) for key in (("lot", chain["lot"].id), ("batch", chain["second"].id))}
    db.session.execute(sa.update(ExposureCount).values(sessions=99))
    exposure.recompute("lot", chain["lot"].id)
    assert counts("lot", chain["lot"].id) == kept[("lot", chain["lot"].id)]
    exposure.rebuild_all()
    db.session.commit()
    assert {key: counts(*key) for key in kept} == kept
    no_drift()


def test_exposure_check_names_a_hand_made_drift_and_exits_1(app, chain, runner):
    result = runner.invoke(args=["exposure", "check"])
    assert result.exit_code == 0, result.output
    assert "no drift" in result.output
    db.session.execute(sa.update(ExposureCount).where(ExposureCount.kind == "lot",
                                                      ExposureCount.item_id == chain["lot"].id,
                                                      ExposureCount.site_id == ALL_SITES).values(patients=7))
    db.session.commit()
    result = runner.invoke(args=["exposure", "check"])
    assert result.exit_code == 1
    assert f"lot {chain['lot'].id} (all sites): patients kept 7, counted 3" in result.output
    result = runner.invoke(args=["exposure", "rebuild"])
    assert result.exit_code == 0, result.output
    assert runner.invoke(args=["exposure", "check"]).exit_code == 0
