"""List exports (what a filtered list shows, every page), trace and recall reports."""

from collections.abc import Collection, Mapping
from typing import Any

from ..models import Recall
from ..queries.recalls import split_codes
from ..queries.scope import SiteIds
from ..queries.treatments import SessionFilters, sessions_within
from ..services.clock import utcnow
from ..services.trace_places import place_text
from . import records
from .writer import MAX_DATA_ROWS, Column, CoverSheet, WorkbookSummary, WorkbookWriter, zone_label


def _list_workbook(out, sheet: str, columns, rows, query, progress=None) -> WorkbookSummary:
    """One sheet of the entities `query` finds, as `rows(query, names, now, sites)` writes them."""
    book = WorkbookWriter(progress=progress)
    names, now, sites = records.user_names(), utcnow(), records.site_codes()
    book.table(sheet, columns(book.zone), rows(query, names, now, sites))
    book.save(out)
    return WorkbookSummary(book.parts)


def _lot_rows(query, names, now, sites):
    return (records.lot_values(lot, names, now, sites) for lot in records.stream_scalars(query))


def lot_list_workbook(out, query, progress=None) -> WorkbookSummary:
    """The lots a list filter shows (queries.lots.lot_list_query), every page."""
    return _list_workbook(out, "Lots", records.lot_columns, _lot_rows, query, progress)


def batch_list_workbook(out, query, progress=None) -> WorkbookSummary:
    """The batches a list filter shows (queries.batches.batch_list_query), every page, with their equipment."""
    return _list_workbook(out, "Batches", records.batch_columns, records.batch_rows, query, progress)


def session_list_query(filters: SessionFilters, *, site_ids: SiteIds):
    """Session uses of the sessions the filters take in at the sites in scope (the session list's own filters)."""
    return sessions_within(records.session_use_query(), filters, site_ids=site_ids)


def session_list_workbook(out, query, max_rows: int = MAX_DATA_ROWS, progress=None) -> WorkbookSummary:
    book = WorkbookWriter(progress=progress)
    rows = records.session_rows(query, records.user_names(), records.site_codes())
    book.table("Sessions", records.session_columns(book.zone), rows, max_rows)
    book.save(out)
    return WorkbookSummary(book.parts)


# --- trace and recall reports --------------------------------------------------------------


POOLED = "pooled, no vial"  # a use recorded before vials had codes


def vials_used(row) -> str:
    """The vials a session or patient row received from; "pooled, no vial" for a use that names none."""
    return ", ".join([*split_codes(row.vial_codes), *((POOLED,) if row.pooled else ())])


def _vial_sheet(book: WorkbookWriter, trace) -> None:
    """Each vial of the traced batches: where it stands, which sessions and patients it went to."""
    header = [Column("Vial code", "code"), Column("Batch code", "code"), Column("Status"), Column("Dose"),
              Column("Volume (mL)", "decimal"), Column("Remaining (mL)", "decimal"),
              Column(zone_label("First punctured", book.zone), "datetime"), Column("Legacy", "bool"),
              Column("Sessions", "int"), Column("Session ids", "code"), Column("Patient charts", "code"),
              Column("Where now")]
    book.table("Vials", header, (
        (v.code, v.batch_code, v.status, v.dose, v.volume_ml, v.remaining_ml, v.punctured_at, v.legacy, v.sessions,
         ", ".join(sorted(split_codes(v.session_ids), key=int)), ", ".join(split_codes(v.chart_numbers)),
         place_text(v))
        for v in trace.vials))


def _patient_columns(zone, with_contacts: bool, identify: bool) -> list[Column]:
    identity = [Column("Name"), Column("Phone", "code"), Column("E-mail")] if identify else []
    # A patient is listed under each site where a session in the scope was performed, sorted by site.
    columns = [
        Column("Site", "code"), Column("Patient chart", "code"), *identity, Column("Sessions", "int"),
        Column("Volume received (mL)", "decimal"),
        Column(zone_label("First session", zone), "datetime"), Column(zone_label("Last session", zone), "datetime"),
    ]
    columns += [Column("Voided sessions", "int"), Column("Vials", "code")]
    if with_contacts:
        # "Contacted ..." describe the row that gave the outcome; "Attempts" counts every row.
        columns += [Column("Contacted", "bool"), Column("Outcome"), Column("Attempts", "int"),
                    Column(zone_label("Contacted at", zone), "datetime"), Column("Contacted by"),
                    Column("Contact method"), Column("Contact note")]
    return columns


def _scope_sheets(book: WorkbookWriter, trace, contacts: Mapping[int, Any] | None, identify: bool,
                  attempts: Mapping[int, list] | None = None, late: Collection[int] | None = None) -> None:
    zone = book.zone
    with_contacts = contacts is not None
    attempts = attempts or {}

    def patient_rows():
        for patient in trace.patients:
            identity = (patient.name, patient.phone, patient.email) if identify else ()
            values = (patient.site_code, patient.chart_number, *identity, patient.sessions, patient.volume_ml,
                      patient.first_at, patient.last_at, patient.voided_sessions, vials_used(patient))
            if with_contacts:
                contact = contacts.get(patient.id)
                values += (contact is not None, contact.outcome if contact else None,
                           len(attempts.get(patient.id, ())),
                           *((contact.contacted_at, contact.contacted_by, contact.method, contact.note)
                             if contact else (None,) * 4))
            yield values

    book.table("Patients", _patient_columns(zone, with_contacts, identify), patient_rows())
    session_header = [Column("Session id", "int"), Column(zone_label("Performed", zone), "datetime"),
                      Column("Patient chart", "code"), Column("Volume (mL)", "decimal"),
                      Column("Batch codes", "code"), Column("Vials", "code"), Column("Voided", "bool"),
                      Column("Void code"), Column("Site", "code")]
    if late is not None:  # a recall: flag the sessions entered after it opened (their patients need a contact)
        session_header.append(Column("Recorded after the recall opened", "bool"))
    book.table("Sessions", session_header, (
        (s.id, s.performed_at, s.chart_number, s.volume_ml, records.codes(s.batch_codes), vials_used(s),
         s.voided_at is not None, s.void_code, s.site_code, *((s.id in late,) if late is not None else ()))
        for s in trace.sessions))
    _vial_sheet(book, trace)
    batch_header = [Column("Batch code", "code"), Column("Formula", "code"), Column("Version", "int"),
                    Column("Formula name"), Column("Status"), Column(zone_label("Compounded", zone), "datetime"),
                    Column(zone_label("Use by", zone), "datetime"), Column("Total volume (mL)", "decimal"),
                    Column("Remaining (mL)", "decimal"), Column("Where now")]
    if trace.lot is not None:
        batch_header.append(Column(f"Quantity of {trace.lot.code} ({trace.lot.ingredient.unit})", "decimal"))
    book.table("Batches", batch_header, (
        (b.code, b.formula_code, b.formula_version, b.formula_name, b.status, b.compounded_at, b.beyond_use_at,
         b.total_volume_ml, b.remaining_volume_ml, place_text(b),
         *((b.quantity_from_lot,) if trace.lot is not None else ()))
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
                  identify: bool, attempts: Mapping[int, list] | None = None,
                  late: Collection[int] | None = None, progress=None) -> WorkbookSummary:
    """A trace or recall report: a cover (title, then `lines(zone)`, then the row counts) and the scope's sheets.

    Without `identify` (a technician's download) patients are chart numbers only.
    """
    book = WorkbookWriter(progress=progress)
    cover = book.cover(sheet)
    _scope_sheets(book, scope, contacts, identify, attempts, late)
    if attempts is not None:
        _attempt_sheet(book, attempts)
    _report_cover(cover, title, lines(book.zone))
    cover.counts(book.parts)
    book.save(out)
    return WorkbookSummary(book.parts)


def _attempt_sheet(book: WorkbookWriter, attempts: Mapping[int, list]) -> None:
    """Every attempt to reach every patient, with its outcome: the recall's contact history."""
    zone = book.zone
    book.table("Attempts", [Column("Patient chart", "code"), Column("Outcome"),
                            Column(zone_label("Recorded at", zone), "datetime"), Column("Recorded by"),
                            Column("Method"), Column("Note")],
               ((row.chart_number, row.outcome, row.contacted_at, row.contacted_by, row.method, row.note)
                for rows in attempts.values() for row in rows))


def _target(scope) -> str:
    return f"lot {scope.lot.code}" if scope.lot is not None else f"batch {scope.batch.code}"


def trace_workbook(trace, out, *, clinic_name: str = "", identify: bool = True, progress=None) -> WorkbookSummary:
    """A trace (services.trace.trace_lot / trace_batch) as sheets: Patients, Sessions, Vials, Batches, Lots."""
    target = trace.lot if trace.lot is not None else trace.batch
    return _scope_report("Trace", trace, None, out, f"Trace of {_target(trace)}", lambda zone: [
        ("Clinic", clinic_name), ("Target", _target(trace)), ("Status", target.status),
        (zone_label("Generated at", zone), utcnow()),
        ("Rule", "Voided sessions stay in the scope, flagged; the volume injected in all leaves them out."),
    ], identify, progress=progress)


def recall_workbook(recall: Recall, scope, contacts: Mapping[int, Any], out, *, clinic_name: str = "",
                    opened_by: str = "", attempts: Mapping[int, list] | None = None,
                    identify: bool = True, late_sessions: Collection[int] = (), progress=None) -> WorkbookSummary:
    """A recall's report: its scope with each patient's outcome (patient id -> row with outcome, contacted_at,
    contacted_by, method, note) and number of attempts (patient id -> rows), the sessions (those recorded
    after the recall opened flagged), batches and lots."""
    late = set(late_sessions)
    return _scope_report("Recall", scope, contacts, out, f"Recall {recall.id}", lambda zone: [
        ("Clinic", clinic_name), ("Target", _target(scope)), ("Reason", recall.reason),
        ("Status", recall.status), (zone_label("Opened", zone), recall.opened_at), ("Opened by", opened_by),
        (zone_label("Closed", zone), recall.closed_at), ("Outcome", recall.outcome),
        ("Patients with an outcome", f"{len(contacts)} of {scope.counts['patients']}"),
        ("Sessions recorded after the recall opened", len(late)),
        (zone_label("Generated at", zone), utcnow()),
    ], identify, attempts, late, progress=progress)
