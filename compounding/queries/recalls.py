"""Recalls and traces: the list and its filter, one recall with its scope and contacts, what a code names.

Shared by the pages, the printable report, the workbook and the API. Each is a fixed
handful of statements whatever the number of batches, sessions or patients.
"""

from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.orm import joinedload

from ..extensions import db
from ..limits import CODE_MAX
from ..models import (
    Batch,
    Lot,
    Patient,
    Recall,
    RecallContact,
    RecallStatus,
    SessionUse,
    TreatmentSession,
    User,
)
from ..models.recall import FINAL_OUTCOMES, RECALL_STATUSES
from ..services import recalls, trace
from ..services.errors import NotFound
from ..services.history import history_of
from ..services.signatures import signatures_for


def normalise_code(raw: str | None) -> str:
    """What a person types or a scanner sends: spaces dropped, any case (our codes are capitals)."""
    return "".join((raw or "").split()).upper()[:CODE_MAX]


def resolve_code(code: str) -> tuple[str, int] | None:
    """("batch", id) or ("lot", id) for one of our codes, batches first (as a scan resolves)."""
    if not code:
        return None
    batch_id = db.session.scalar(sa.select(Batch.id).where(Batch.code == code))
    if batch_id is not None:
        return "batch", batch_id
    lot_id = db.session.scalar(sa.select(Lot.id).where(Lot.code == code))
    return ("lot", lot_id) if lot_id is not None else None


def split_codes(value: str | None) -> list[str]:
    """The batch codes of a trace session row (aggregated by the database with its own separator)."""
    return sorted({code.strip() for code in (value or "").split(",") if code.strip()})


def open_recall_ids() -> dict[tuple[str, int], int]:
    """{("lot"|"batch", target id): recall id} for every open recall, in one statement."""
    rows = db.session.execute(sa.select(Recall.id, Recall.lot_id, Recall.batch_id)
                              .where(Recall.status == RecallStatus.OPEN))
    return {("lot", r.lot_id) if r.lot_id else ("batch", r.batch_id): r.id for r in rows}


def open_recall_count() -> int:
    return db.session.scalar(sa.select(sa.func.count(Recall.id)).where(Recall.status == RecallStatus.OPEN))


def trace_counts(scope: trace.Trace) -> dict:
    """Batches, sessions and patients over the whole scope (and a batch's lots upstream)."""
    return dict(scope.counts)


@dataclass
class RecallRecord:
    """A recall with everything its page, its report and its API answer show."""

    recall: Recall
    opened_by: str
    closed_by: str | None
    signatures: list
    scope: trace.Trace
    contacts: dict = field(default_factory=dict)  # patient id -> their outcome's ContactRow, for this page
    attempts: dict = field(default_factory=dict)  # patient id -> every ContactRow, oldest first, for this page
    contacted: int = 0  # patients with an outcome, over the whole scope
    # Sessions performed before the recall opened but recorded after it: session id -> row.
    late_sessions: dict = field(default_factory=dict)
    reopenings: list = field(default_factory=list)  # StatusChange rows closed -> open

    @property
    def late_patients(self) -> set[int]:
        return {row.patient_id for row in self.late_sessions.values()}

    @property
    def target(self) -> dict:
        if self.recall.lot_id:
            return {"kind": "lot", "id": self.recall.lot_id, "code": self.recall.lot.code}
        return {"kind": "batch", "id": self.recall.batch_id, "code": self.recall.batch.code}

    @property
    def total(self) -> int:
        return self.scope.counts["patients"]

    @property
    def percent(self) -> int:
        return round(100 * self.contacted / self.total) if self.total else 100

    @property
    def progress(self) -> dict:
        return {"contacted": self.contacted, "total": self.total}

    @property
    def without_outcome(self) -> int:
        return self.total - self.contacted

    @property
    def contact_list(self) -> list:
        return [row for rows in self.attempts.values() for row in rows]

    @property
    def patients(self) -> list[dict]:
        """The scope's patients, each with its outcome (or None) and every attempt."""
        return [{**row._mapping, "contacted": row.id in self.contacts, "contact": self.contacts.get(row.id),
                 "outcome": self.contacts[row.id].outcome if row.id in self.contacts else None,
                 "attempts": self.attempts.get(row.id, [])}
                for row in self.scope.patients]


@dataclass
class ContactRow:
    id: int
    patient_id: int
    chart_number: str
    contacted_at: object
    contacted_by_id: int
    contacted_by: str
    method: str | None
    note: str
    outcome: str = "reached"

    @property
    def final(self) -> bool:
        return self.outcome in FINAL_OUTCOMES


def recall_record(recall_id: int, page: int = 1, per_page: int | None = trace.TRACE_PER_PAGE) -> RecallRecord:
    """A recall with one page of its scope (`per_page=None`: all of it) and those patients' contacts."""
    recall = db.session.scalar(sa.select(Recall).where(Recall.id == recall_id).options(
        joinedload(Recall.lot), joinedload(Recall.batch)))
    if recall is None:
        raise NotFound("There is no such recall.")
    people = dict(db.session.execute(sa.select(User.id, User.display_name).where(
        User.id.in_([recall.opened_by_id, recall.closed_by_id or recall.opened_by_id]))).all())
    scope = recalls.recall_scope(recall, page, per_page)
    contacts_query = _contacts().where(RecallContact.recall_id == recall.id).order_by(
        RecallContact.contacted_at, RecallContact.id)
    page_ids = None if per_page is None else [p.id for p in scope.patients]
    if page_ids is not None:
        contacts_query = contacts_query.where(RecallContact.patient_id.in_(page_ids))
    attempts: dict[int, list[ContactRow]] = {}
    outcomes: dict[int, ContactRow] = {}
    for contact, name, chart in db.session.execute(contacts_query):
        row = contact_row(contact, name, chart)
        attempts.setdefault(row.patient_id, []).append(row)
        if row.final:  # the latest final outcome is the patient's outcome
            outcomes[row.patient_id] = row
    # An outcome recorded before a late entry or a correction of the patient no longer counts.
    counted = {row.patient_id for row in db.session.execute(recalls.counted_outcomes([recall.id], page_ids))}
    outcomes = {patient_id: row for patient_id, row in outcomes.items() if patient_id in counted}
    contacted, _ = recalls.contact_progress(recall, scope)
    reopenings = [row for row in history_of("recall", recall.id)
                  if (row.from_status, row.to_status) == (RecallStatus.CLOSED, RecallStatus.OPEN)]
    return RecallRecord(recall=recall, opened_by=people.get(recall.opened_by_id, ""),
                        closed_by=people.get(recall.closed_by_id) if recall.closed_by_id else None,
                        signatures=signatures_for("recall", recall.id), scope=scope, contacts=outcomes,
                        attempts=attempts, contacted=contacted, late_sessions=late_sessions(recall),
                        reopenings=reopenings)


def late_sessions(recall: Recall) -> dict:
    """Sessions in the scope performed before the recall opened but recorded after it: one statement.

    Their patients joined the scope when the session was entered, so staff contact them
    even if everyone else was reached already.
    """
    in_scope = SessionUse.batch_id.in_(sa.select(reached_batches([recall.id]).c.batch_id))
    rows = db.session.execute(
        sa.select(TreatmentSession.id, TreatmentSession.performed_at, TreatmentSession.recorded_at,
                  TreatmentSession.patient_id, Patient.chart_number)
        .join(Patient, Patient.id == TreatmentSession.patient_id)
        .where(TreatmentSession.id.in_(sa.select(SessionUse.session_id).where(in_scope)),
               TreatmentSession.performed_at < recall.opened_at, TreatmentSession.recorded_at > recall.opened_at,
               TreatmentSession.voided_at.is_(None))
        .order_by(TreatmentSession.performed_at, TreatmentSession.id)).all()
    return {row.id: row for row in rows}


def contact_row(contact: RecallContact, contacted_by: str, chart_number: str) -> ContactRow:
    return ContactRow(contact.id, contact.patient_id, chart_number, contact.contacted_at, contact.contacted_by_id,
                      contacted_by, contact.method, contact.note, contact.outcome)


def _contacts():
    """Contacts with who made them and the patient's chart number."""
    return (sa.select(RecallContact, User.display_name, Patient.chart_number)
            .join(User, User.id == RecallContact.contacted_by_id)
            .join(Patient, Patient.id == RecallContact.patient_id))


def contact_answer(contact_id: int) -> ContactRow:
    """One contact as the recall's page and API show it."""
    return contact_row(*db.session.execute(_contacts().where(RecallContact.id == contact_id)).one())


@dataclass
class RecallFilters:
    status: str = ""  # open or closed; blank: both

    @classmethod
    def from_args(cls, args) -> "RecallFilters":
        """The list page's query string: an unknown status is no filter."""
        status = args.get("status", "")
        return cls(status=status if status in RECALL_STATUSES else "")


def recall_list_query(filters: RecallFilters):
    """Recalls with their target's code and opener, the open ones first, newest first."""
    query = (
        sa.select(Recall, Lot.code.label("lot_code"), Batch.code.label("batch_code"),
                  User.display_name.label("opened_by"))
        .outerjoin(Lot, Lot.id == Recall.lot_id).outerjoin(Batch, Batch.id == Recall.batch_id)
        .join(User, User.id == Recall.opened_by_id)
    )
    if filters.status:
        query = query.where(Recall.status == filters.status)
    return query.order_by(sa.case((Recall.status == RecallStatus.OPEN, 0), else_=1), Recall.opened_at.desc(),
                          Recall.id.desc())


reached_batches = recalls.reached_batches  # (recall_id, batch_id): a lot recall's include its child lots


def progress_for(recall_ids: list[int]) -> dict[int, tuple[int, int]]:
    """{recall id: (patients with an outcome that counts, patients in scope)} for a page of recalls: two statements.

    A correction never shrinks a recall: the patients of voided sessions stay in the scope and count.
    """
    if not recall_ids:
        return {}
    targets = reached_batches(recall_ids)
    totals = dict(db.session.execute(
        sa.select(targets.c.recall_id, sa.func.count(sa.distinct(TreatmentSession.patient_id)))
        .join(SessionUse, SessionUse.batch_id == targets.c.batch_id)
        .join(TreatmentSession, TreatmentSession.id == SessionUse.session_id)
        .group_by(targets.c.recall_id)).all())
    counted = recalls.counted_outcomes(recall_ids).subquery()
    contacted = dict(db.session.execute(
        sa.select(counted.c.recall_id, sa.func.count()).group_by(counted.c.recall_id)).all())
    return {rid: (contacted.get(rid, 0), totals.get(rid, 0)) for rid in recall_ids}


def summary(row, progress: dict[int, tuple[int, int]]) -> dict:
    """One line of the recall list (page and API)."""
    recall = row.Recall
    contacted, total = progress.get(recall.id, (0, 0))
    kind, code = ("lot", row.lot_code) if recall.lot_id else ("batch", row.batch_code)
    return {
        "id": recall.id, "status": recall.status, "reason": recall.reason,
        "target": {"kind": kind, "id": recall.lot_id or recall.batch_id, "code": code},
        "opened_at": recall.opened_at, "opened_by": row.opened_by, "closed_at": recall.closed_at,
        "outcome": recall.outcome, "progress": {"contacted": contacted, "total": total},
    }
