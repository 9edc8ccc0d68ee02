"""Quality signals: batches and lots whose adverse events call for a hold or a recall, worst first.

Set-based like the trace: the events are read once, and only the batches and lots they
touch are counted, never one query per row.
"""

from collections import defaultdict
from dataclasses import dataclass

import sqlalchemy as sa
from flask import current_app

from ..extensions import db
from ..models import AdverseEvent, Batch, BatchComponent, Lot, SessionUse
from ..models.treatment import SEVERE_EVENT_TYPES


@dataclass
class Signal:
    kind: str  # "batch" or "lot"
    id: int
    code: str
    status: str
    events: int
    severe: int
    sessions: int

    @property
    def rate(self) -> float:
        return self.events / self.sessions if self.sessions else 0.0


def _is_flagged(events: int, severe: int, sessions: int) -> bool:
    config = current_app.config
    if severe:
        return True
    return events >= config["QUALITY_MIN_EVENTS"] and sessions > 0 and (
        events / sessions > config["QUALITY_EVENT_RATE_THRESHOLD"])


def _severe_clause():
    # A serious reaction type, or any event graded severe, flags at once.
    return sa.or_(AdverseEvent.type.in_(SEVERE_EVENT_TYPES), AdverseEvent.severity == "severe")


def _event_batches():
    """The batches used in a session that had an adverse event (a batch once per event)."""
    return (sa.select(SessionUse.batch_id)
            .select_from(AdverseEvent)
            .join(SessionUse, SessionUse.session_id == AdverseEvent.session_id))


def _events_touched():
    """Event ids by batch and by lot, each lot's batches among them, and the severe event ids: one statement."""
    touched = (_event_batches()
               .add_columns(BatchComponent.lot_id, AdverseEvent.id, AdverseEvent.type, AdverseEvent.severity)
               .outerjoin(BatchComponent, BatchComponent.batch_id == SessionUse.batch_id))
    by_batch: dict[int, set[int]] = defaultdict(set)
    by_lot: dict[int, set[int]] = defaultdict(set)
    lot_batches: dict[int, set[int]] = defaultdict(set)
    severe: set[int] = set()
    for batch_id, lot_id, event_id, kind, severity in db.session.execute(touched):
        by_batch[batch_id].add(event_id)
        if kind in SEVERE_EVENT_TYPES or severity == "severe":
            severe.add(event_id)
        if lot_id is not None:
            by_lot[lot_id].add(event_id)
            lot_batches[lot_id].add(batch_id)
    return by_batch, by_lot, lot_batches, severe


def _session_count():
    return sa.select(sa.func.count(sa.distinct(SessionUse.session_id))).select_from(SessionUse)


def _add_if_flagged(signals: list[Signal], kind: str, events: set[int], severe: set[int], row) -> None:
    figures = (len(events), len(events & severe), row.sessions)
    if _is_flagged(*figures):
        signals.append(Signal(kind, row.id, row.code, row.status, *figures))


def _rank(signal: Signal) -> tuple:
    return (-signal.severe, -signal.rate, signal.code)


def _add_batch_signals(signals: list[Signal], by_batch, severe: set[int]) -> dict[int, int]:
    """Add the flagged batches; answer the sessions of every batch the events touch, counted on the index."""
    batch_sessions = {}
    for row in db.session.execute(
            sa.select(Batch.id, Batch.code, Batch.status,
                      _session_count().where(SessionUse.batch_id == Batch.id).scalar_subquery().label("sessions"))
            .where(Batch.id.in_(_event_batches()))):
        batch_sessions[row.id] = row.sessions
        _add_if_flagged(signals, "batch", by_batch[row.id], severe, row)
    return batch_sessions


def _lot_contenders(by_lot, lot_batches, severe: set[int], batch_sessions: dict[int, int], bar) -> list[int]:
    """The lots that can be flagged and, at their best possible rate, could still rank above `bar`.

    A lot has at least as many sessions as its busiest batch, so its rate is at most its
    events over that batch's sessions: a lot that cannot pass the bar even at that rate is
    not counted. No bar (fewer flagged batches than the limit) lets every flaggable lot in.
    """
    minimum = current_app.config["QUALITY_MIN_EVENTS"]
    contenders = []
    for lot_id, events in by_lot.items():
        n_severe = len(events & severe)
        if not n_severe and len(events) < minimum:
            continue
        busiest = max(batch_sessions.get(batch_id, 0) for batch_id in lot_batches[lot_id])
        best_rate = len(events) / busiest if busiest else float("inf")
        if bar is None or (-n_severe, -best_rate) <= bar:
            contenders.append(lot_id)
    return contenders


def _add_lot_signals(signals: list[Signal], contenders: list[int], by_lot, severe: set[int]) -> None:
    """Count the sessions of the contending lots (every use of every batch made from them) and add the flagged."""
    lot_sessions = (_session_count().join(BatchComponent, BatchComponent.batch_id == SessionUse.batch_id)
                    .where(BatchComponent.lot_id == Lot.id).scalar_subquery().label("sessions"))
    for row in db.session.execute(sa.select(Lot.id, Lot.code, Lot.status, lot_sessions)
                                  .where(Lot.id.in_(contenders))):
        _add_if_flagged(signals, "lot", by_lot[row.id], severe, row)


def quality_signals(limit: int = 50) -> list[Signal]:
    """Batches and lots whose adverse events call for quarantine or recall, worst first.

    Bounded by the adverse events, not by the uses (events are few, uses are millions): the
    events are read with the batches and lots they touch, then the sessions of each of those
    batches are counted on the index. A lot's sessions cost far more (every use of every batch
    made from it), so they are counted only for the lots that can be flagged and could still
    rank among the first `limit`. Three statements whatever the size of the data.

    A voided session keeps counting, with its events: a void must not
    hide a reaction from the signals.
    """
    by_batch, by_lot, lot_batches, severe = _events_touched()
    if not by_batch:
        return []
    signals: list[Signal] = []
    batch_sessions = _add_batch_signals(signals, by_batch, severe)
    signals.sort(key=_rank)
    # The `limit`-th flagged batch sets the bar a lot must be able to reach.
    bar = _rank(signals[limit - 1])[:2] if 0 < limit <= len(signals) else None
    contenders = _lot_contenders(by_lot, lot_batches, severe, batch_sessions, bar)
    if contenders:
        _add_lot_signals(signals, contenders, by_lot, severe)
    signals.sort(key=_rank)
    return signals[:limit]


def adverse_event_counts(kind: str, ids) -> dict[int, tuple[int, int]]:
    """(events, severe) for a few batches or lots, for their pages: one statement (voided sessions count)."""
    if not ids:
        return {}
    severe = sa.func.count(sa.distinct(sa.case((_severe_clause(), AdverseEvent.id))))
    query = (sa.select(SessionUse.batch_id if kind == "batch" else BatchComponent.lot_id,
                       sa.func.count(sa.distinct(AdverseEvent.id)), severe)
             .select_from(SessionUse)
             .join(AdverseEvent, AdverseEvent.session_id == SessionUse.session_id))
    if kind == "batch":
        query = query.where(SessionUse.batch_id.in_(ids)).group_by(SessionUse.batch_id)
    else:
        query = (query.join(BatchComponent, BatchComponent.batch_id == SessionUse.batch_id)
                 .where(BatchComponent.lot_id.in_(ids)).group_by(BatchComponent.lot_id))
    return {row[0]: (row[1], row[2]) for row in db.session.execute(query)}
