"""Quality signals: batches and lots whose adverse events call for a hold or a recall, worst first.

A signal measures exposure: the sessions and patients a batch or lot reached, the share of them
with an adverse event (each with its 95 % Wilson interval) beside the clinic's own rates, and the
class of its events. One quality-class event (infection, necrosis, nodule, allergic reaction,
abscess, granuloma) flags, and so does any event graded severe; expected-class events (redness,
swelling, bruising, pain, other) flag only when there are at least QUALITY_MIN_EVENTS and the
patient rate's lower bound is above the clinic's patient rate (never below the
QUALITY_EVENT_RATE_THRESHOLD floor): one patient's three mild reactions do not flag a busy batch.

A lot's events and exposure both include the batches made from its child lots (a transfer's
destination: the same supplier lot), so its rates compare like with like.

Set-based like the trace: the events are read once, and only the batches and lots they touch are
counted, never one query per row.
"""

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import NamedTuple

import sqlalchemy as sa
from flask import current_app

from ..extensions import db
from ..models import AdverseEvent, Batch, BatchComponent, ExposureCount, Lot, Patient, SessionUse, TreatmentSession
from ..models.exposure import ALL_SITES
from ..models.treatment import SEVERE_EVENT_TYPES
from . import exposure
from .rates import QUALITY_EVENT_TYPES, percent, rate_with_interval, wilson_interval

KINDS = ("batch", "lot")
# Nouns whose plural is not the noun plus "s" (and those that stay as they are).
PLURALS = {"abscess": "abscesses", "necrosis": "necroses", "redness": "redness", "swelling": "swellings",
           "bruising": "bruising", "pain": "pain", "other": "other events"}


class Event(NamedTuple):
    session_id: int
    patient_id: int
    type: str
    severity: str


class ExposureRates:
    """The share of exposed sessions and patients with an adverse event: fractions in [0, 1]."""

    sessions: int
    patients: int
    event_sessions: int
    event_patients: int

    @property
    def session_rate(self) -> float:
        return self.event_sessions / self.sessions if self.sessions else 0.0

    @property
    def patient_rate(self) -> float:
        return self.event_patients / self.patients if self.patients else 0.0


@dataclass(frozen=True)
class Baseline(ExposureRates):
    """The clinic's own rates, over every session with a use (voided ones included)."""

    sessions: int
    patients: int
    event_sessions: int
    event_patients: int


@dataclass
class Signal(ExposureRates):
    kind: str  # "batch" or "lot"
    id: int
    code: str
    status: str
    events: int
    severe: int  # of a serious type (infection, necrosis, allergic reaction) or graded severe
    sessions: int  # exposed: distinct sessions that used it, voided ones included
    patients: int  # exposed: distinct patients of those sessions
    event_sessions: int  # of those, the sessions with at least one event
    event_patients: int
    signal_class: str  # "quality" or "expected"
    flagged: bool
    baseline_session_rate: float
    baseline_patient_rate: float
    reasons: list[str] = field(default_factory=list)

    # Today's `rate` keeps its name and is the session rate: a fraction, never above 1.
    rate = ExposureRates.session_rate

    @property
    def session_ci(self) -> tuple[float, float]:
        return wilson_interval(self.event_sessions, self.sessions)

    @property
    def patient_ci(self) -> tuple[float, float]:
        return wilson_interval(self.event_patients, self.patients)

    @property
    def session_text(self) -> str:
        return rate_with_interval(self.event_sessions, self.sessions)

    @property
    def patient_text(self) -> str:
        return rate_with_interval(self.event_patients, self.patients)

    @property
    def baseline_text(self) -> tuple[str, str]:
        """The clinic's session and patient rates, as percentages."""
        return percent(self.baseline_session_rate), percent(self.baseline_patient_rate)

    session_ci_low = property(lambda self: self.session_ci[0])
    session_ci_high = property(lambda self: self.session_ci[1])
    patient_ci_low = property(lambda self: self.patient_ci[0])
    patient_ci_high = property(lambda self: self.patient_ci[1])


class Tally:
    """What the events say about one batch or lot, before its exposure is counted."""

    def __init__(self, events: dict[int, Event], ids: set[int]):
        chosen = [events[i] for i in ids]
        self.events = len(chosen)
        self.severe = sum(e.type in SEVERE_EVENT_TYPES or e.severity == "severe" for e in chosen)
        self.graded_severe = sum(e.severity == "severe" for e in chosen)
        self.types = Counter(e.type for e in chosen)
        self.event_sessions = len({e.session_id for e in chosen})
        self.event_patients = len({e.patient_id for e in chosen})
        self.quality = any(t in QUALITY_EVENT_TYPES for t in self.types)

    def flags_at_once(self) -> bool:
        return self.quality or self.graded_severe > 0


def _rate_bar(baseline: Baseline) -> float:
    """The patient rate an expected-class signal's lower bound must exceed."""
    return max(baseline.patient_rate, current_app.config["QUALITY_EVENT_RATE_THRESHOLD"])


def _flags_by_rate(tally: Tally, patients: int, baseline: Baseline) -> bool:
    return (tally.events >= current_app.config["QUALITY_MIN_EVENTS"]
            and wilson_interval(tally.event_patients, patients)[0] > _rate_bar(baseline))


def _noun(kind: str, count: int) -> str:
    name = kind.replace("_", " ")
    return name if count == 1 else PLURALS.get(kind, name + "s")


def _reasons(tally: Tally, patients: int, baseline: Baseline) -> list[str]:
    """Why the signal is (or is not) flagged, in the words a pharmacist reads on the page."""
    reasons = [f"{n} {_noun(t, n)} (quality-class)" for t in QUALITY_EVENT_TYPES if (n := tally.types[t])]
    if tally.graded_severe:
        reasons.append(f"{tally.graded_severe} event{'s' if tally.graded_severe != 1 else ''} graded severe")
    expected = [(t, n) for t, n in sorted(tally.types.items()) if t not in QUALITY_EVENT_TYPES]
    if not expected:
        return reasons
    reasons += [f"{n} {_noun(t, n)} (expected-class)" for t, n in expected]
    low = wilson_interval(tally.event_patients, patients)[0]
    bar, clinic = _rate_bar(baseline), percent(baseline.patient_rate)
    floored = bar != baseline.patient_rate
    against = f"the {percent(bar)} floor (clinic {clinic})" if floored else f"the clinic's {clinic}"
    reasons.append(f"patient rate {rate_with_interval(tally.event_patients, patients)} "
                   f"{'above' if low > bar else 'not above'} {against}")
    minimum = current_app.config["QUALITY_MIN_EVENTS"]
    if tally.events < minimum and not tally.flags_at_once():
        reasons.append(f"{tally.events} event{'s' if tally.events != 1 else ''}, fewer than the {minimum} "
                       "a rate needs to flag")
    return reasons


def _signal(kind: str, row, tally: Tally, baseline: Baseline) -> Signal:
    flagged = tally.flags_at_once() or _flags_by_rate(tally, row.patients, baseline)
    return Signal(kind, row.id, row.code, row.status, tally.events, tally.severe, row.sessions, row.patients,
                  tally.event_sessions, tally.event_patients, "quality" if tally.quality else "expected",
                  flagged, baseline.session_rate, baseline.patient_rate, _reasons(tally, row.patients, baseline))


def _rank(signal: Signal) -> tuple:
    """Quality class first, then the most severe events, then the highest patient-rate lower bound."""
    return (signal.signal_class != "quality", -signal.severe, -signal.patient_ci_low, signal.code, signal.kind)


# --- statements ---------------------------------------------------------------------------------


def _read_events(kind: str | None = None, item_id: int | None = None):
    """Every event in a session with a use, with the batches and lots it touches: one statement.

    Answers the events by id, the event ids by batch and by lot, and each lot's batches among them.
    """
    # A lot's events include those of the batches made from its child lots, as its exposure does.
    event_batches = sa.select(SessionUse.batch_id).where(SessionUse.session_id.in_(sa.select(AdverseEvent.session_id)))
    up = exposure.lineage(sa.select(BatchComponent.lot_id).where(BatchComponent.batch_id.in_(event_batches)),
                          "event_lots")
    query = (sa.select(SessionUse.batch_id, up.c.ancestor_id, AdverseEvent.id, AdverseEvent.session_id,
                       TreatmentSession.patient_id, AdverseEvent.type, AdverseEvent.severity)
             .select_from(AdverseEvent)
             .join(SessionUse, SessionUse.session_id == AdverseEvent.session_id)
             .join(TreatmentSession, TreatmentSession.id == AdverseEvent.session_id)
             .outerjoin(BatchComponent, BatchComponent.batch_id == SessionUse.batch_id)
             .outerjoin(up, up.c.lot_id == BatchComponent.lot_id))
    if kind == "batch":
        query = query.where(SessionUse.batch_id == item_id)
    elif kind == "lot":
        query = query.where(up.c.ancestor_id == item_id)
    events: dict[int, Event] = {}
    by = {"batch": defaultdict(set), "lot": defaultdict(set)}
    lot_batches: dict[int, set[int]] = defaultdict(set)
    for batch_id, lot_id, event_id, session_id, patient_id, type_, severity in db.session.execute(query):
        events[event_id] = Event(session_id, patient_id, type_, severity)
        by["batch"][batch_id].add(event_id)
        if lot_id is not None:
            by["lot"][lot_id].add(event_id)
            lot_batches[lot_id].add(batch_id)
    return events, by, lot_batches


def _baseline() -> Baseline:
    """The clinic's sessions, their patients, and those of them with an event: one statement.

    Every session is saved with at least one use (the treatment service refuses one without), so
    the sessions with uses are all the sessions: counted on an index, and the patients as those
    with a session, rather than by reading every use. The events (few) are read in full.
    """
    counts = (
        sa.select(sa.func.count()).select_from(TreatmentSession),
        sa.select(sa.func.count()).select_from(Patient).where(
            sa.exists().where(TreatmentSession.patient_id == Patient.id)),
        sa.select(sa.func.count(sa.distinct(AdverseEvent.session_id))),
        sa.select(sa.func.count(sa.distinct(TreatmentSession.patient_id)))
        .where(TreatmentSession.id.in_(sa.select(AdverseEvent.session_id))),
    )
    return Baseline(*db.session.execute(sa.select(*(c.scalar_subquery() for c in counts))).one())


def _exposure(kind: str, ids) -> list:
    """Each batch's or lot's code, status, exposed sessions and patients (voided sessions count): one statement.

    Read from the exposure counts kept with each use (services/exposure.py), the chain's row;
    a lot's include the batches made from its child lots.
    """
    model = Batch if kind == "batch" else Lot
    kept = ExposureCount
    query = (sa.select(model.id, model.code, model.status, sa.func.coalesce(kept.sessions, 0).label("sessions"),
                       sa.func.coalesce(kept.patients, 0).label("patients"))
             .outerjoin(kept, sa.and_(kept.kind == kind, kept.item_id == model.id, kept.site_id == ALL_SITES))
             .where(model.id.in_(list(ids))))
    return db.session.execute(query).all()


# --- the list and one item ----------------------------------------------------------------------


def _lot_contenders(events, lot_events, lot_batches, batch_patients: dict[int, int], baseline: Baseline,
                    bar) -> list[int]:
    """The lots that can be flagged and, at their best possible rank, could still make the list.

    A lot reaches at least the patients of its busiest batch, and the lower bound of a rate falls
    as more are exposed to the same events: the bound at that count is the best the lot can have.
    No bar (fewer flagged batches than the limit) lets every lot that can be flagged in.
    """
    contenders = []
    for lot_id, ids in lot_events.items():
        tally = Tally(events, ids)
        fewest = max(tally.event_patients, *(batch_patients.get(b, 0) for b in lot_batches[lot_id]))
        best_low = wilson_interval(tally.event_patients, fewest)[0]
        if not tally.flags_at_once() and not _flags_by_rate(tally, fewest, baseline):
            continue
        if bar is None or (not tally.quality, -tally.severe, -best_low) <= bar:
            contenders.append(lot_id)
    return contenders


def quality_signals(limit: int = 50) -> list[Signal]:
    """Batches and lots whose adverse events call for quarantine or recall, worst first.

    Bounded by the adverse events, not by the uses (events are few, uses are millions): the
    events are read with the batches and lots they touch, the clinic's baseline is counted once,
    then the exposure of each touched batch, read from the exposure counts. A lot's is read only
    for the lots that can be flagged and could still rank among the first `limit`. Four
    statements whatever the size of the data.

    A voided session keeps counting, with its events: a void must not hide a reaction.
    """
    events, by, lot_batches = _read_events()
    if not events:
        return []
    baseline = _baseline()
    signals, batch_patients = [], {}
    for row in _exposure("batch", by["batch"]):
        batch_patients[row.id] = row.patients
        signals.append(_signal("batch", row, Tally(events, by["batch"][row.id]), baseline))
    signals = sorted((s for s in signals if s.flagged), key=_rank)
    # The `limit`-th flagged batch sets the bar a lot must be able to reach.
    bar = _rank(signals[limit - 1])[:3] if 0 < limit <= len(signals) else None
    contenders = _lot_contenders(events, by["lot"], lot_batches, batch_patients, baseline, bar)
    if contenders:
        lots = (_signal("lot", row, Tally(events, by["lot"][row.id]), baseline)
                for row in _exposure("lot", contenders))
        signals += [s for s in lots if s.flagged]
    return sorted(signals, key=_rank)[:limit]


def signal_for(kind: str, item_id: int) -> Signal | None:
    """One batch's or lot's signal for its page, flagged or not; None when no event reached it.

    At most three statements: its events, the clinic's baseline, its exposure.
    """
    if kind not in KINDS:
        raise ValueError(f"no quality signal for a {kind}")
    events, by, _ = _read_events(kind, item_id)
    if not events:
        return None
    rows = _exposure(kind, [item_id])
    return _signal(kind, rows[0], Tally(events, by[kind][item_id]), _baseline()) if rows else None


def adverse_event_counts(kind: str, ids) -> dict[int, tuple[int, int]]:
    """(events, severe) for a few batches or lots, for their pages: one statement (voided sessions count).

    A lot's include those of the batches made from its child lots.
    """
    if not ids:
        return {}
    serious = sa.or_(AdverseEvent.type.in_(SEVERE_EVENT_TYPES), AdverseEvent.severity == "severe")
    severe = sa.func.count(sa.distinct(sa.case((serious, AdverseEvent.id))))
    if kind == "batch":
        item = SessionUse.batch_id
        query = sa.select(item).select_from(SessionUse).where(SessionUse.batch_id.in_(ids))
    else:
        below = exposure.lots_below(list(ids), "counted_lots")
        item = below.c.root_id
        query = (sa.select(item).select_from(SessionUse)
                 .join(BatchComponent, BatchComponent.batch_id == SessionUse.batch_id)
                 .join(below, below.c.lot_id == BatchComponent.lot_id))
    query = (query.add_columns(sa.func.count(sa.distinct(AdverseEvent.id)), severe)
             .join(AdverseEvent, AdverseEvent.session_id == SessionUse.session_id).group_by(item))
    return {row[0]: (row[1], row[2]) for row in db.session.execute(query)}
