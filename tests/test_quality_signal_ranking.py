"""Quality signals against a brute-force ranking of every batch and lot, on random data.

`signals.quality_signals` reads only the batches and lots the adverse events touch, and counts a
lot's exposure only when the lot can still be flagged (a quality-class or severe event, or enough
events at a patient rate whose lower bound could pass the bar) and could still rank among the
first `limit` (its lower bound is bounded by its busiest batch's patients). Here the same ranking
is computed the slow way, over all rows, and the two must agree for every `limit`: a lot wrongly
pruned, or a ranking rule changed, shows at once.
"""

import random
from collections import defaultdict
from datetime import timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa
from flask import current_app

from compounding.extensions import db
from compounding.models import (
    AdverseEvent,
    Batch,
    BatchComponent,
    BatchStatus,
    Lot,
    SessionUse,
    TreatmentSession,
)
from compounding.models.treatment import ADVERSE_EVENT_TYPES, SEVERE_EVENT_TYPES
from compounding.services import exposure
from compounding.services.clock import utcnow
from compounding.services.rates import QUALITY_EVENT_TYPES, wilson_interval
from compounding.services.signals import quality_signals

SEEDS = range(20)
ROUNDS = 6  # random worlds per seed, on the same lots
MILD_TYPES = [t for t in ADVERSE_EVENT_TYPES if t not in QUALITY_EVENT_TYPES]


def brute_force_ranking() -> list[tuple]:
    """Every batch and lot with its exposure and events counted from all rows, flagged and ranked as the
    clinic's rule says: a quality-class event, or one graded severe, or at least QUALITY_MIN_EVENTS events
    with the patient rate's 95 % lower bound above the clinic's patient rate (floored at
    QUALITY_EVENT_RATE_THRESHOLD); quality class first, then most severe events, then the highest lower
    bound, then the code. Answers (kind, id, events, severe, sessions, patients, event sessions, event
    patients, class) in that order."""
    config = current_app.config
    patient_of = dict(db.session.execute(sa.select(TreatmentSession.id, TreatmentSession.patient_id)).all())
    sessions_of_batch = defaultdict(set)
    for session_id, batch_id in db.session.execute(sa.select(SessionUse.session_id, SessionUse.batch_id)):
        sessions_of_batch[batch_id].add(session_id)
    batches_of_lot = defaultdict(set)
    for batch_id, lot_id in db.session.execute(sa.select(BatchComponent.batch_id, BatchComponent.lot_id)):
        batches_of_lot[lot_id].add(batch_id)
    events = db.session.execute(sa.select(AdverseEvent.session_id, AdverseEvent.type, AdverseEvent.severity)).all()
    used = set().union(*sessions_of_batch.values())
    used_events = [e for e in events if e.session_id in used]
    bar = max(len({patient_of[e.session_id] for e in used_events}) / len({patient_of[s] for s in used}),
              config["QUALITY_EVENT_RATE_THRESHOLD"])

    def figures(kind: str, item_id: int, sessions: set[int]) -> tuple:
        reached = [e for e in events if e.session_id in sessions]
        severe = [e for e in reached if e.type in SEVERE_EVENT_TYPES or e.severity == "severe"]
        quality = any(e.type in QUALITY_EVENT_TYPES for e in reached)
        patients = {patient_of[s] for s in sessions}
        event_patients = {patient_of[e.session_id] for e in reached}
        return (kind, item_id, len(reached), len(severe), len(sessions), len(patients),
                len({e.session_id for e in reached}), len(event_patients), "quality" if quality else "expected")

    candidates = [(figures("batch", b.id, sessions_of_batch[b.id]), b.code)
                  for b in db.session.scalars(sa.select(Batch))]
    for lot in db.session.scalars(sa.select(Lot)):
        sessions = set().union(*(sessions_of_batch[b] for b in batches_of_lot[lot.id]))
        candidates.append((figures("lot", lot.id, sessions), lot.code))

    def low(f: tuple) -> float:
        return wilson_interval(f[7], f[5])[0]

    def flagged(f: tuple) -> bool:
        graded = any(e.severity == "severe" for e in events
                     if e.session_id in (sessions_of_batch[f[1]] if f[0] == "batch"
                                         else set().union(*(sessions_of_batch[b] for b in batches_of_lot[f[1]]))))
        return f[2] > 0 and (f[8] == "quality" or graded or (f[2] >= config["QUALITY_MIN_EVENTS"] and low(f) > bar))

    ranked = sorted((c for c in candidates if flagged(c[0])),
                    key=lambda c: (c[0][8] != "quality", -c[0][3], -low(c[0]), c[1], c[0][0]))
    return [f for f, _ in ranked]


def as_figures(signal) -> tuple:
    return (signal.kind, signal.id, signal.events, signal.severe, signal.sessions, signal.patients,
            signal.event_sessions, signal.event_patients, signal.signal_class)


def build_base(rng: random.Random, make_user, make_ingredient, make_lot, make_formula, make_patient) -> dict:
    """The records every round shares: lots received (most released) through the real services."""
    ingredient = make_ingredient()
    return {"practitioner": make_user("practitioner"), "patients": [make_patient() for _ in range(rng.randint(1, 15))],
            "formula": make_formula(),
            "lots": [make_lot(ingredient, release=rng.random() < 0.8) for _ in range(rng.randint(2, 7))]}


def add_random_uses_and_events(rng: random.Random, base: dict) -> None:
    """Batches, sessions and events inserted directly, many of them: most events of the expected class
    (the ones the pruning is about), a few of the quality class, some sessions voided (they keep counting)."""
    practitioner, lots, now = base["practitioner"], base["lots"], utcnow()
    batches = []
    for n in range(rng.randint(2, 12)):
        # Our batch codes start with B and sort before every lot code; other letters test ties both ways.
        batch = Batch(code=f"{rng.choice('ABMZ')}{n:04d}", formula_id=base["formula"].id, units=1,
                      total_volume_ml=Decimal("10"), remaining_volume_ml=Decimal("5"),
                      compounded_by_id=practitioner.id, beyond_use_at=now + timedelta(days=5), storage="fridge",
                      status=rng.choice(list(BatchStatus)))
        db.session.add(batch)
        db.session.flush()
        # Mostly one to three lots each; now and then none (its events reach no lot).
        for lot in rng.sample(lots, k=min(len(lots), rng.choice([0, 1, 1, 2, 2, 3]))):
            db.session.add(BatchComponent(batch_id=batch.id, lot_id=lot.id, ingredient_id=lot.ingredient_id,
                                          theoretical_quantity=Decimal("1"), quantity=Decimal("1"),
                                          ingredient_name="Active", ingredient_kind="active", ingredient_unit="mL",
                                          lot_code=lot.code, supplier_lot_number=lot.supplier_lot_number,
                                          lot_expires_on=lot.expires_on))
        batches.append(batch)
    # Busy and quiet batches: a few take most of the sessions, so rates differ widely.
    weights = [rng.choice([1, 1, 2, 8]) for _ in batches]
    sessions = []
    for _ in range(rng.randint(3, 40)):
        voided = rng.random() < 0.1
        session = TreatmentSession(patient_id=rng.choice(base["patients"]).id, practitioner_id=practitioner.id,
                                   voided_at=now if voided else None,
                                   voided_by_id=practitioner.id if voided else None,
                                   void_code="entered_in_error" if voided else None)
        db.session.add(session)
        db.session.flush()
        for batch in {b.id: b for b in rng.choices(batches, weights=weights, k=rng.choice([1, 1, 1, 2]))}.values():
            db.session.add(SessionUse(session_id=session.id, batch_id=batch.id, volume_ml=Decimal("1")))
        sessions.append(session)
    # Half the events after one bad batch, so that expected reactions can rise above the clinic's rate.
    bad = rng.choice(batches)
    bad_sessions = [s for s in sessions if any(u.batch_id == bad.id for u in db.session.scalars(
        sa.select(SessionUse).where(SessionUse.session_id == s.id)))] or sessions
    for _ in range(rng.randint(0, 25)):
        severe_type = rng.random() < 0.08
        db.session.add(AdverseEvent(
            session_id=rng.choice(bad_sessions if rng.random() < 0.5 else sessions).id,
            type=rng.choice(QUALITY_EVENT_TYPES if severe_type else MILD_TYPES),
            severity=rng.choices(["mild", "moderate", "severe"], weights=[12, 4, 1])[0],
            recorded_by_id=practitioner.id))
    # Written around the services, as a bulk load is: the exposure counts are recounted after it.
    exposure.rebuild_all()
    db.session.commit()


def remove_uses_and_events() -> None:
    for model in (AdverseEvent, SessionUse, TreatmentSession, BatchComponent, Batch):
        db.session.execute(sa.delete(model))
    db.session.commit()


@pytest.mark.parametrize("seed", SEEDS)
def test_quality_signals_equal_the_brute_force_ranking_for_every_limit(
        app, seed, make_user, make_ingredient, make_lot, make_formula, make_patient):
    rng = random.Random(seed)
    base = build_base(rng, make_user, make_ingredient, make_lot, make_formula, make_patient)
    for round_ in range(ROUNDS):
        add_random_uses_and_events(rng, base)
        app.config["QUALITY_MIN_EVENTS"] = rng.choice([1, 2, 3])
        app.config["QUALITY_EVENT_RATE_THRESHOLD"] = rng.choice([0.0, 0.05, 0.2, 0.5])
        expected = brute_force_ranking()
        for limit in sorted({1, 2, 3, 5, len(expected), len(expected) + 1, 50} - {0}):
            assert [as_figures(s) for s in quality_signals(limit=limit)] == expected[:limit], (seed, round_, limit)
        remove_uses_and_events()
