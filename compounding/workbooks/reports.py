"""List exports (what a filtered list shows, every page), trace and recall reports."""

from collections.abc import Collection, Mapping
from datetime import date
from typing import Any

from ..models import Recall, TreatmentSession
from ..services.clock import end_of_clinic_day, start_of_clinic_day, utcnow
from .records import (
    batch_columns,
    batch_values,
    codes,
    lot_columns,
    lot_values,
    session_columns,
    session_rows,
    session_use_query,
    stream_scalars,
    user_names,
)
from .writer import MAX_DATA_ROWS, Column, CoverSheet, WorkbookSummary, WorkbookWriter, zone_label


def lot_list_workbook(out, query) -> WorkbookSummary:
    """The lots a list filter shows (lots.views.filters_from_args + lot_list_query), every page."""
    book = WorkbookWriter()
    names, now = user_names(), utcnow()
    book.table("Lots", lot_columns(book.zone), (lot_values(lot, names, now) for lot in stream_scalars(query)))
    book.save(out)
    return WorkbookSummary(book.parts)


def batch_list_workbook(out, query) -> WorkbookSummary:
    """The batches a list filter shows (batches.views.batch_list_query), every page."""
    book = WorkbookWriter()
    names, now = user_names(), utcnow()
    book.table("Batches", batch_columns(book.zone),
               (batch_values(batch, names, now) for batch in stream_scalars(query)))
    book.save(out)
    return WorkbookSummary(book.parts)


def session_list_query(*, start: date | None = None, end: date | None = None, practitioner_id: int | None = None,
                       patient_id: int | None = None):
    """Session uses performed within clinic days `start`..`end`, by one practitioner or patient if given."""
    query = session_use_query()
    if start is not None:
        query = query.where(TreatmentSession.performed_at >= start_of_clinic_day(start))
    if end is not None:
        query = query.where(TreatmentSession.performed_at < end_of_clinic_day(end))
    if practitioner_id:
        query = query.where(TreatmentSession.practitioner_id == practitioner_id)
    if patient_id:
        query = query.where(TreatmentSession.patient_id == patient_id)
    return query


def session_list_workbook(out, query, max_rows: int = MAX_DATA_ROWS) -> WorkbookSummary:
    book = WorkbookWriter()
    book.table("Sessions", session_columns(book.zone), session_rows(query, user_names()), max_rows)
    book.save(out)
    return WorkbookSummary(book.parts)


# --- trace and recall reports --------------------------------------------------------------


def _patient_columns(zone, with_contacts: bool) -> list[Column]:
    columns = [
        Column("Patient chart", "code"), Column("Name"), Column("Phone", "code"), Column("E-mail"),
        Column("Sessions", "int"), Column("Volume received (mL)", "decimal"),
        Column(zone_label("First session", zone), "datetime"), Column(zone_label("Last session", zone), "datetime"),
    ]
    if with_contacts:
        columns += [Column("Contacted", "bool"), Column(zone_label("Contacted at", zone), "datetime"),
                    Column("Contacted by"), Column("Contact method"), Column("Contact note")]
    return columns


def _scope_sheets(book: WorkbookWriter, trace, contacts: Mapping[int, Any] | None,
                  late: Collection[int] | None = None) -> None:
    zone = book.zone
    with_contacts = contacts is not None

    def patient_rows():
        for patient in trace.patients:
            values = (patient.chart_number, patient.name, patient.phone, patient.email, patient.sessions,
                      patient.volume_ml, patient.first_at, patient.last_at)
            if with_contacts:
                contact = contacts.get(patient.id)
                values += (contact is not None, *((contact.contacted_at, contact.contacted_by, contact.method,
                                                   contact.note) if contact else (None,) * 4))
            yield values

    book.table("Patients", _patient_columns(zone, with_contacts), patient_rows())
    session_header = [Column("Session id", "int"), Column(zone_label("Performed", zone), "datetime"),
                      Column("Patient chart", "code"), Column("Volume (mL)", "decimal"), Column("Batch codes", "code")]
    if late is not None:  # a recall: flag the sessions entered after it opened (their patients need a contact)
        session_header.append(Column("Recorded after the recall opened", "bool"))
    book.table("Sessions", session_header, (
        (s.id, s.performed_at, s.chart_number, s.volume_ml, codes(s.batch_codes),
         *((s.id in late,) if late is not None else ())) for s in trace.sessions))
    batch_header = [Column("Batch code", "code"), Column("Formula", "code"), Column("Version", "int"),
                    Column("Formula name"), Column("Status"), Column(zone_label("Compounded", zone), "datetime"),
                    Column(zone_label("Use by", zone), "datetime"), Column("Total volume (mL)", "decimal"),
                    Column("Remaining (mL)", "decimal")]
    if trace.lot is not None:
        batch_header.append(Column(f"Quantity of {trace.lot.code} ({trace.lot.ingredient.unit})", "decimal"))
    book.table("Batches", batch_header, (
        (b.code, b.formula_code, b.formula_version, b.formula_name, b.status, b.compounded_at, b.beyond_use_at,
         b.total_volume_ml, b.remaining_volume_ml, *((b.quantity_from_lot,) if trace.lot is not None else ()))
        for b in trace.batches))
    lot_header = [Column("Lot code", "code"), Column("Ingredient"), Column("Supplier"),
                  Column("Supplier lot number", "code"), Column("Expiry", "date"), Column("Status")]
    if trace.lot is not None:
        lot = trace.lot
        rows = [(lot.code, lot.ingredient.name, lot.supplier, lot.supplier_lot_number, lot.expires_on, lot.status)]
    else:
        lot_header += [Column("Quantity used", "decimal"), Column("Unit")]
        rows = [(row.code, row.ingredient_name, row.supplier, row.supplier_lot_number, row.expires_on, row.status,
                 row.quantity, row.unit) for row in trace.lots]
    book.table("Lots", lot_header, rows)


def _report_cover(cover: CoverSheet, title: str, lines: list[tuple[str, Any]]) -> None:
    cover.header(title, "")
    for label, value in lines:
        cover.row(label, value)


def _scope_report(sheet: str, scope, contacts: Mapping[int, Any] | None, out, title: str, lines,
                  late: Collection[int] | None = None) -> WorkbookSummary:
    """A trace or recall report: a cover (title, then `lines(zone)`, then the row counts) and the scope's sheets."""
    book = WorkbookWriter()
    cover = book.cover(sheet)
    _scope_sheets(book, scope, contacts, late)
    _report_cover(cover, title, lines(book.zone))
    cover.counts(book.parts)
    book.save(out)
    return WorkbookSummary(book.parts)


def _target(scope) -> str:
    return f"lot {scope.lot.code}" if scope.lot is not None else f"batch {scope.batch.code}"


def trace_workbook(trace, out, *, clinic_name: str = "") -> WorkbookSummary:
    """A trace (services.trace.trace_lot / trace_batch) as sheets: Patients, Sessions, Batches, Lots."""
    target = trace.lot if trace.lot is not None else trace.batch
    return _scope_report("Trace", trace, None, out, f"Trace of {_target(trace)}", lambda zone: [
        ("Clinic", clinic_name), ("Target", _target(trace)), ("Status", target.status),
        (zone_label("Generated at", zone), utcnow()),
        ("Rule", "Voided sessions are left out: their volume went back to the batch."),
    ])


def recall_workbook(recall: Recall, scope, contacts: Mapping[int, Any], out, *, clinic_name: str = "",
                    opened_by: str = "", late_sessions: Collection[int] = ()) -> WorkbookSummary:
    """A recall's report: its scope with each patient's contact (patient id -> row with contacted_at,
    contacted_by, method, note), the sessions (those recorded after the recall opened flagged),
    batches and lots reached."""
    late = set(late_sessions)
    return _scope_report("Recall", scope, contacts, out, f"Recall {recall.id}", lambda zone: [
        ("Clinic", clinic_name), ("Target", _target(scope)), ("Reason", recall.reason),
        ("Status", recall.status), (zone_label("Opened", zone), recall.opened_at), ("Opened by", opened_by),
        (zone_label("Closed", zone), recall.closed_at), ("Outcome", recall.outcome),
        ("Patients contacted", f"{len(contacts)} of {scope.counts['patients']}"),
        ("Sessions recorded after the recall opened", len(late)),
        (zone_label("Generated at", zone), utcnow()),
    ], late)
