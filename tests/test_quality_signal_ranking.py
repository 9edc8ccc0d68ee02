"""Quality signals against a brute-force ranking of every batch and lot, on random data.

`signals.quality_signals` reads only the batches and lots the adverse events touch, and counts a
lot's sessions only when the lot can still be flagged (a severe event, or at least the minimum
number of events) and could still rank among the first `limit` (its rate is bounded by its
busiest batch's). Here the same ranking is computed the slow way, over all rows, and the two
must agree for every `limit`: a lot wrongly pruned, or a ranking rule changed, shows at once.
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
from compounding.services.clock import utcnow
from compounding.services.signals import Signal, quality_signals

SEEDS = range(20)
ROUNDS = 6  # random worlds per seed, on the same lots
MILD_TYPES = [t for t in ADVERSE_EVENT_TYPES if t not in SEVERE_EVENT_TYPES]


def brute_force_ranking() -> list[Signal]:
    """Every batch and lot with its events, severe events and sessions counted from all rows, flagged
    and ranked as the clinic's rule says: any severe event, or at least QUALITY_MIN_EVENTS events at a
    rate above QUALITY_EVENT_RATE_THRESHOLD; most severe events first, then the highest rate, then the code."""
    config = current_app.config
    sessions_of_batch = defaultdict(set)
    for session_id, batch_id in db.session.execute(sa.select(SessionUse.session_id, SessionUse.batch_id)):
        sessions_of_batch[batch_id].add(session_id)
    batches_of_lot = defaultdict(set)
    for batch_id, lot_id in db.session.execute(sa.select(BatchComponent.batch_id, BatchComponent.lot_id)):
        batches_of_lot[lot_id].add(batch_id)
    events = db.session.execute(sa.select(AdverseEvent.session_id, AdverseEvent.type, AdverseEvent.severity)).all()

    def figures(sessions: set[int]) -> tuple[int, int, int]:
        reached = [e for e in events if e.session_id in sessions]
        severe = [e for e in reached if e.type in SEVERE_EVENT_TYPES or e.severity == "severe"]
        return len(reached), len(severe), len(sessions)

    candidates = [Signal("batch", b.id, b.code, b.status, *figures(sessions_of_batch[b.id]))
                  for b in db.session.scalars(sa.select(Batch))]
    for lot in db.session.scalars(sa.select(Lot)):
        sessions = set().union(*(sessions_of_batch[b] for b in batches_of_lot[lot.id]))
        candidates.append(Signal("lot", lot.id, lot.code, lot.status, *figures(sessions)))

    def flagged(s: Signal) -> bool:
        return s.severe > 0 or (s.events >= config["QUALITY_MIN_EVENTS"] and s.sessions > 0
                                and s.events / s.sessions > config["QUALITY_EVENT_RATE_THRESHOLD"])

    def rate(s: Signal) -> float:
        return s.events / s.sessions if s.sessions else 0.0

    return sorted((s for s in candidates if flagged(s)), key=lambda s: (-s.severe, -rate(s), s.code))


def build_base(rng: random.Random, make_user, make_ingredient, make_lot, make_formula, make_patient) -> dict:
    """The records every round shares: lots received (most released) through the real services."""
    ingredient = make_ingredient()
    return {"practitioner": make_user("practitioner"), "patient": make_patient(), "formula": make_formula(),
            "lots": [make_lot(ingredient, release=rng.random() < 0.8) for _ in range(rng.randint(2, 7))]}


def add_random_uses_and_events(rng: random.Random, base: dict) -> None:
    """Batches, sessions and events inserted directly, many of them: most events mild (the ones the
    pruning is about), a few severe, some sessions voided (they keep counting)."""
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
                                          theoretical_quantity=Decimal("1"), quantity=Decimal("1")))
        batches.append(batch)
    # Busy and quiet batches: a few take most of the sessions, so rates differ widely.
    weights = [rng.choice([1, 1, 2, 8]) for _ in batches]
    sessions = []
    for _ in range(rng.randint(3, 40)):
        voided = rng.random() < 0.1
        session = TreatmentSession(patient_id=base["patient"].id, practitioner_id=practitioner.id,
                                   voided_at=now if voided else None,
                                   voided_by_id=practitioner.id if voided else None,
                                   void_code="entered_in_error" if voided else None)
        db.session.add(session)
        db.session.flush()
        for batch in {b.id: b for b in rng.choices(batches, weights=weights, k=rng.choice([1, 1, 1, 2]))}.values():
            db.session.add(SessionUse(session_id=session.id, batch_id=batch.id, volume_ml=Decimal("1")))
        sessions.append(session)
    for _ in range(rng.randint(0, 25)):
        severe_type = rng.random() < 0.08
        db.session.add(AdverseEvent(
            session_id=rng.choice(sessions).id,
            type=rng.choice(SEVERE_EVENT_TYPES if severe_type else MILD_TYPES),
            severity=rng.choices(["mild", "moderate", "severe"], weights=[12, 4, 1])[0],
            recorded_by_id=practitioner.id))
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
            assert quality_signals(limit=limit) == expected[:limit], (seed, round_, limit)
        remove_uses_and_events()
