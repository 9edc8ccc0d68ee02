"""The audit workbook: a cover, then one sheet per kind of record, for a range of clinic days.

Chain-wide for auditors and chain-wide pharmacists; for anyone else the sheets whose rows stand
at a site (lots, batches and their components, sessions and their adverse events, readings and
excursions, equipment and calibrations, documents of records at a site) hold only the rows of
their sites (`site_ids`), and the sheets without one (recalls, signatures, the audit trail,
patient access, qualifications and their evidence: a person's are the chain's) stay whole.
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.orm import contains_eager, selectinload

from ..extensions import db
from ..models import (
    AdverseEvent,
    AuditEvent,
    Batch,
    BatchComponent,
    Formula,
    Lot,
    Patient,
    PatientAccess,
    Recall,
    RecallContact,
    SessionUse,
    Signature,
    TreatmentSession,
)
from ..services.audit_checkpoints import append_checkpoint, trail_head
from ..services.bud import BUD_TABLE_VERSION
from ..services.clock import end_of_clinic_day, start_of_clinic_day, utcnow
from ..services.errors import InvalidInput
from ..services.site_filters import SiteIds, at_sites, batch_at_sites
from .cold_chain import (
    excursion_columns,
    excursion_rows,
    excursions_query,
    reading_day_columns,
    reading_day_rows,
    reading_days_query,
)
from .evidence import (
    calibration_columns,
    calibration_rows,
    calibrations_query,
    document_columns,
    document_rows,
    documents_query,
    equipment_columns,
    equipment_query,
    equipment_rows,
    qualification_columns,
    qualification_rows,
    qualifications_query,
)
from .records import (
    batch_columns,
    batch_rows,
    code_list,
    codes,
    lot_columns,
    lot_values,
    session_columns,
    session_rows,
    session_use_query,
    site_codes,
    stream,
    stream_scalars,
    user_names,
)
from .writer import MAX_DATA_ROWS, Column, WorkbookSummary, WorkbookWriter, zone_label


@dataclass
class AuditSheet:
    title: str
    columns: Callable[[ZoneInfo], list[Column]]
    # (start, end, site_ids) -> the statement counted for progress, and the rows written.
    query: Callable[[datetime, datetime, SiteIds], Any]
    rows: Callable[[Any, "_AuditContext"], Iterable[tuple]]


@dataclass
class _AuditContext:
    names: dict[int, str]
    now: datetime
    sites: dict[int, str]


def _in_range(column, start_at: datetime, end_at: datetime):
    return sa.and_(column >= start_at, column < end_at)


def _lots_query(start_at, end_at, site_ids: SiteIds):
    return (sa.select(Lot).join(Lot.ingredient).options(contains_eager(Lot.ingredient))
            .where(_in_range(Lot.received_at, start_at, end_at), at_sites(Lot.site_id, site_ids))
            .order_by(Lot.received_at, Lot.id))


def _batches_query(start_at, end_at, site_ids: SiteIds):
    return (sa.select(Batch).options(selectinload(Batch.formula))
            .where(_in_range(Batch.compounded_at, start_at, end_at), batch_at_sites(site_ids))
            .order_by(Batch.compounded_at, Batch.id))


def _component_columns(zone):
    return [
        Column("Batch code", "code"), Column(zone_label("Compounded", zone), "datetime"), Column("Ingredient"),
        Column("Strength"), Column("Lot code", "code"), Column("Supplier lot number", "code"),
        Column("Lot expiry", "date"),
        Column("Theoretical quantity", "decimal"), Column("Quantity used", "decimal"), Column("Unit"),
        Column("Container scanned", "bool"),
    ]


def _components_query(start_at, end_at, site_ids: SiteIds):
    # The copy on the batch record: what the ingredient and lot were when the batch was made.
    return (
        sa.select(Batch.code, Batch.compounded_at, BatchComponent.ingredient_name, BatchComponent.ingredient_strength,
                  BatchComponent.lot_code, BatchComponent.supplier_lot_number, BatchComponent.lot_expires_on,
                  BatchComponent.theoretical_quantity, BatchComponent.quantity, BatchComponent.ingredient_unit,
                  BatchComponent.scanned)
        .join(Batch, Batch.id == BatchComponent.batch_id)
        .where(_in_range(Batch.compounded_at, start_at, end_at), batch_at_sites(site_ids))
        .order_by(Batch.compounded_at, Batch.id, BatchComponent.id)
    )


def _sessions_query(start_at, end_at, site_ids: SiteIds):
    return session_use_query().where(_in_range(TreatmentSession.performed_at, start_at, end_at),
                                     at_sites(TreatmentSession.site_id, site_ids))


def _event_columns(zone):
    return [
        Column("Event id", "int"), Column(zone_label("Recorded", zone), "datetime"), Column("Recorded by"),
        Column("Session id", "int"), Column(zone_label("Session performed", zone), "datetime"),
        Column("Patient chart", "code"), Column("Batch codes", "code"), Column("Type"), Column("Severity"),
        Column("Onset", "date"), Column("Outcome"), Column("Notes"),
    ]


def _events_query(start_at, end_at, site_ids: SiteIds):
    codes = (sa.select(code_list(Batch.code)).select_from(SessionUse).join(Batch, Batch.id == SessionUse.batch_id)
             .where(SessionUse.session_id == AdverseEvent.session_id).correlate(AdverseEvent).scalar_subquery())
    return (
        sa.select(AdverseEvent.id, AdverseEvent.recorded_at, AdverseEvent.recorded_by_id, AdverseEvent.session_id,
                  TreatmentSession.performed_at, Patient.chart_number, codes.label("codes"), AdverseEvent.type,
                  AdverseEvent.severity, AdverseEvent.onset_on, AdverseEvent.outcome, AdverseEvent.notes)
        .join(TreatmentSession, TreatmentSession.id == AdverseEvent.session_id)
        .join(Patient, Patient.id == TreatmentSession.patient_id)
        .where(_in_range(AdverseEvent.recorded_at, start_at, end_at), at_sites(TreatmentSession.site_id, site_ids))
        .order_by(AdverseEvent.recorded_at, AdverseEvent.id)
    )


def _event_rows(statement, context):
    for row in stream(statement):
        yield (row.id, row.recorded_at, context.names.get(row.recorded_by_id), row.session_id, row.performed_at,
               row.chart_number, codes(row.codes), row.type, row.severity, row.onset_on, row.outcome, row.notes)


def _recall_columns(zone):
    return [
        Column("Recall id", "int"), Column(zone_label("Opened", zone), "datetime"), Column("Opened by"),
        Column("Target"), Column("Target code", "code"), Column("Reason"), Column("Status"),
        Column(zone_label("Closed", zone), "datetime"), Column("Closed by"), Column("Outcome"),
        Column("Patient chart", "code"), Column(zone_label("Contacted", zone), "datetime"), Column("Contacted by"),
        Column("Contact method"), Column("Contact note"), Column("Contact outcome"),
    ]


def _recalls_query(start_at, end_at, site_ids: SiteIds):  # a recall reaches every site: the sheet stays whole
    return (
        sa.select(Recall.id, Recall.opened_at, Recall.opened_by_id, Recall.lot_id, Lot.code.label("lot_code"),
                  Batch.code.label("batch_code"), Recall.reason, Recall.status, Recall.closed_at, Recall.closed_by_id,
                  Recall.outcome, Patient.chart_number, RecallContact.contacted_at, RecallContact.contacted_by_id,
                  RecallContact.method, RecallContact.note, RecallContact.outcome.label("contact_outcome"))
        .outerjoin(Lot, Lot.id == Recall.lot_id).outerjoin(Batch, Batch.id == Recall.batch_id)
        .outerjoin(RecallContact, RecallContact.recall_id == Recall.id)
        .outerjoin(Patient, Patient.id == RecallContact.patient_id)
        .where(_in_range(Recall.opened_at, start_at, end_at))
        .order_by(Recall.opened_at, Recall.id, RecallContact.contacted_at, RecallContact.id)
    )


def _recall_rows(statement, context):
    names = context.names
    for row in stream(statement):
        yield (row.id, row.opened_at, names.get(row.opened_by_id), "lot" if row.lot_id else "batch",
               row.lot_code or row.batch_code, row.reason, row.status, row.closed_at,
               names.get(row.closed_by_id) if row.closed_by_id else None, row.outcome, row.chart_number,
               row.contacted_at, names.get(row.contacted_by_id) if row.contacted_by_id else None, row.method,
               row.note, row.contact_outcome)


def _signature_columns(zone):
    return [
        Column("Signature id", "int"), Column(zone_label("Signed", zone), "datetime", "yyyy-mm-dd hh:mm:ss", 20),
        Column("Signer"), Column("Meaning"), Column("Record"), Column("Record id", "int"),
        Column("Record code", "code"),
    ]


def _signatures_query(start_at, end_at, site_ids: SiteIds):
    def on(model, kind):
        return sa.and_(Signature.entity_type == kind, model.id == Signature.entity_id)

    return (
        sa.select(Signature.id, Signature.signed_at, Signature.signer_name, Signature.meaning, Signature.entity_type,
                  Signature.entity_id, Lot.code.label("lot_code"), Batch.code.label("batch_code"),
                  Formula.code.label("formula_code"), Formula.version)
        .outerjoin(Lot, on(Lot, "lot")).outerjoin(Batch, on(Batch, "batch")).outerjoin(Formula, on(Formula, "formula"))
        .where(_in_range(Signature.signed_at, start_at, end_at))
        .order_by(Signature.signed_at, Signature.id)
    )


def _signature_rows(statement, context):
    for row in stream(statement):
        if row.formula_code:
            code = f"{row.formula_code} v{row.version}"
        elif row.entity_type == "recall":
            code = f"recall {row.entity_id}"
        else:
            code = row.lot_code or row.batch_code
        yield (row.id, row.signed_at, row.signer_name, row.meaning, row.entity_type, row.entity_id, code)


def _audit_columns(zone):
    return [
        Column("Event id", "int"), Column(zone_label("When", zone), "datetime", "yyyy-mm-dd hh:mm:ss", 20),
        Column("Who"), Column("Action"), Column("Entity"), Column("Entity id", "int"), Column("Old values", "json"),
        Column("New values", "json"), Column("Reason"), Column("Hash", "code", width=20),
    ]


def _audit_query(start_at, end_at, site_ids: SiteIds):
    return (
        sa.select(AuditEvent.id, AuditEvent.occurred_at, AuditEvent.actor_name, AuditEvent.action,
                  AuditEvent.entity_type, AuditEvent.entity_id, AuditEvent.old_values, AuditEvent.new_values,
                  AuditEvent.reason, AuditEvent.hash)
        .where(_in_range(AuditEvent.occurred_at, start_at, end_at)).order_by(AuditEvent.id)
    )


def _access_columns(zone):
    return [
        Column("Access id", "int"), Column(zone_label("When", zone), "datetime", "yyyy-mm-dd hh:mm:ss", 20),
        Column("Who"), Column("Role"), Column("Action"), Column("Patient chart", "code"), Column("Target"),
        Column("Target id", "int"), Column("Request", "code"),
    ]


def _access_query(start_at, end_at, site_ids: SiteIds):
    """Who saw or exported patient data, one row per request, oldest first."""
    return (
        sa.select(PatientAccess.id, PatientAccess.occurred_at, PatientAccess.user_name, PatientAccess.role,
                  PatientAccess.action, Patient.chart_number, PatientAccess.target_type, PatientAccess.target_id,
                  PatientAccess.detail)
        .outerjoin(Patient, Patient.id == PatientAccess.patient_id)
        .where(_in_range(PatientAccess.occurred_at, start_at, end_at)).order_by(PatientAccess.id)
    )


def _plain_rows(statement, context):
    return stream(statement)


AUDIT_SHEETS = (
    AuditSheet("Lots", lot_columns, _lots_query,
               lambda q, c: (lot_values(lot, c.names, c.now, c.sites) for lot in stream_scalars(q))),
    AuditSheet("Batches", batch_columns, _batches_query, lambda q, c: batch_rows(q, c.names, c.now, c.sites)),
    AuditSheet("Batch components", _component_columns, _components_query, _plain_rows),
    AuditSheet("Sessions", session_columns, _sessions_query, lambda q, c: session_rows(q, c.names, c.sites)),
    AuditSheet("Adverse events", _event_columns, _events_query, _event_rows),
    AuditSheet("Recalls", _recall_columns, _recalls_query, _recall_rows),
    AuditSheet("Signatures", _signature_columns, _signatures_query, _signature_rows),
    AuditSheet("Audit trail", _audit_columns, _audit_query, _plain_rows),
    AuditSheet("Patient access", _access_columns, _access_query, _plain_rows),
    # One row per location per day (a chain's year of readings is more than a sheet holds).
    AuditSheet("Readings", reading_day_columns, reading_days_query, reading_day_rows),
    AuditSheet("Excursions", excursion_columns, excursions_query, excursion_rows),
    AuditSheet("Qualifications", qualification_columns, qualifications_query, qualification_rows),
    # The register as it stands (a piece never calibrated is listed too), then what was done to it in the period.
    AuditSheet("Equipment", equipment_columns, equipment_query, equipment_rows),
    AuditSheet("Calibrations", calibration_columns, calibrations_query, calibration_rows),
    AuditSheet("Documents", document_columns, documents_query, document_rows),
)

RANGE_RULE = ("Rows belong to the period by their own time: lots by received, batches and their components by "
              "compounded, sessions by performed, adverse events by recorded, recalls by opened, signatures by "
              "signed, audit events and patient access by occurred, readings by measured (one row per location and "
              "day in the site's zone; every reading of a month is in the location's month workbook), excursions "
              "by started, qualifications by the clinic day they were performed (passed or failed), calibrations "
              "by the clinic day performed, documents by uploaded. The Equipment sheet is the register as "
              "it stands at export (every piece, whatever the period).")


def audit_period(start: date, end: date) -> tuple[datetime, datetime]:
    """Clinic days `start`..`end` (inclusive) as UTC bounds [start_at, end_at)."""
    if end < start:
        raise InvalidInput(f"The end date {end.isoformat()} is before the start date {start.isoformat()}.",
                           field="end")
    return start_of_clinic_day(start), end_of_clinic_day(end)


def audit_row_counts(start: date, end: date, site_ids: SiteIds = None) -> dict[str, int]:
    """How many rows each audit sheet will hold (for `site_ids`, None: the chain): for a progress bar."""
    start_at, end_at = audit_period(start, end)
    return {
        spec.title: db.session.scalar(sa.select(sa.func.count()).select_from(
            spec.query(start_at, end_at, site_ids).order_by(None).subquery()))
        for spec in AUDIT_SHEETS
    }


def audit_workbook(out, start: date, end: date, *, generated_by: str, clinic_name: str,
                   progress: Callable[[int], None] | None = None, max_rows: int = MAX_DATA_ROWS,
                   site_ids: SiteIds = None) -> WorkbookSummary:
    """The inspector's workbook for clinic days `start`..`end`: a cover, then one sheet per record kind.

    `site_ids` None (an auditor, a chain-wide pharmacist, the command line): the whole chain.
    """
    start_at, end_at = audit_period(start, end)
    book = WorkbookWriter(progress=progress)
    cover = book.cover()
    context = _AuditContext(names=user_names(), now=utcnow(), sites=site_codes())
    # The whole trail as it stands (not just the period): an inspector holding an earlier
    # workbook compares, and the same checkpoint goes to AUDIT_CHECKPOINT_FILE.
    trail_rows, head_id, head_hash = trail_head()
    for spec in AUDIT_SHEETS:
        book.table(spec.title, spec.columns(book.zone), spec.rows(spec.query(start_at, end_at, site_ids), context),
                   max_rows)
    cover.header("Audit workbook", clinic_name)
    cover.row("Clinic", clinic_name)
    cover.row("From (clinic day)", start)
    cover.row("To (clinic day, inclusive)", end)
    cover.row("Time zone of every date and time", book.zone.key)
    cover.row(zone_label("Generated at", book.zone), context.now)
    cover.row("Generated by", generated_by)
    cover.row("BUD table version", BUD_TABLE_VERSION)
    cover.row("Which rows", RANGE_RULE)
    cover.row("Sites", "every site" if site_ids is None else
              ", ".join(context.sites.get(site_id, str(site_id)) for site_id in sorted(site_ids)))
    cover.row("Audit trail rows (whole trail)", trail_rows)
    cover.row("Audit trail newest row", head_id)
    cover.row("Audit trail newest row's hash", head_hash or "")
    cover.counts(book.parts)
    book.save(out)
    append_checkpoint("workbook", trail_rows, head_id, head_hash, note=generated_by)
    return WorkbookSummary(book.parts)
