"""The audit workbook's sheets of who was qualified, what the bench was calibrated with, and the documents
that prove the records: each one statement, streamed a chunk at a time."""

from collections.abc import Iterator
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import aliased

from ..models import (
    Batch,
    BatchTest,
    Calibration,
    Document,
    Equipment,
    Lot,
    Qualification,
    QualificationKind,
    User,
    UserSite,
)
from ..models.document import DOCUMENT_KIND_TEXT
from ..models.equipment import EQUIPMENT_KIND_TEXT
from ..queries.people import people_at_sites
from ..services.clock import clinic_today
from ..services.documents import ENTITY_TEXT
from ..services.site_filters import SiteIds, at_sites
from .records import stream
from .writer import Column, zone_label


def _days(start_at: datetime, end_at: datetime):
    """The clinic days [first, after) of a period given as UTC bounds: a record dated by a day belongs by its day."""
    return clinic_today(start_at), clinic_today(end_at)


# --- qualifications: by the day the test or assessment was performed ---------------------------------------


def qualification_columns(zone) -> list[Column]:
    return [
        Column("Record id", "int"), Column("Username", "code"), Column("Name"), Column("Kind"),
        Column("Performed on", "date"), Column("Result"), Column("CFU", "int"), Column("Valid until", "date"),
        Column("Assessor"), Column("Note"), Column("Recorded by"), Column(zone_label("Recorded", zone), "datetime"),
        Column(zone_label("Voided", zone), "datetime"), Column("Voided by"), Column("Void reason"),
    ]


def qualifications_query(start_at, end_at, site_ids: SiteIds):
    """Every record (voided ones too) performed on a day of the period, of the people at the sites in scope (members,
    and chain-wide accounts), as the people pages show them."""
    first, after = _days(start_at, end_at)
    return (
        sa.select(Qualification.id, User.username, User.display_name, QualificationKind.name.label("kind"),
                  Qualification.passed_on, Qualification.result, Qualification.cfu, Qualification.valid_until,
                  Qualification.assessor, Qualification.note, Qualification.recorded_by_id,
                  Qualification.recorded_at, Qualification.voided_at, Qualification.voided_by_id,
                  Qualification.void_reason)
        .join(User, User.id == Qualification.user_id)
        .join(QualificationKind, QualificationKind.id == Qualification.kind_id)
        .where(Qualification.passed_on >= first, Qualification.passed_on < after, people_at_sites(site_ids))
        .order_by(Qualification.passed_on, Qualification.id)
    )


def qualification_rows(statement, context) -> Iterator[tuple]:
    names = context.names
    for r in stream(statement):
        yield (r.id, r.username, r.display_name, r.kind, r.passed_on, r.result, r.cfu, r.valid_until,
               r.assessor or None, r.note or None, names.get(r.recorded_by_id) if r.recorded_by_id else None,
               r.recorded_at, r.voided_at, names.get(r.voided_by_id) if r.voided_by_id else None,
               r.void_reason or None)


# --- equipment: the register as it stands, and its calibrations by the day performed ----------------------


def equipment_columns(zone) -> list[Column]:
    return [
        Column("Code", "code"), Column("Kind"), Column("Name"), Column("Site", "code"), Column("Serial number", "code"),
        Column(zone_label("Registered", zone), "datetime"), Column("Registered by"),
        Column("Due on (at export)", "date"), Column("Out of service (at export)", "bool"),
        Column("Retired (at export)", "bool"), Column("Calibrations recorded", "int"),
        Column("Last calibrated on", "date"),
    ]


def equipment_query(start_at, end_at, site_ids: SiteIds):
    """The register at the sites in scope as it stands (the period does not choose its rows): every piece, one
    never calibrated too, with how many calibrations it has had and the last one's day."""
    counted = (sa.select(Calibration.equipment_id, sa.func.count().label("calibrations"),
                         sa.func.max(Calibration.performed_on).label("last_on"))
               .group_by(Calibration.equipment_id).subquery())
    return (
        sa.select(Equipment.code, Equipment.kind, Equipment.name, Equipment.site_id, Equipment.serial_number,
                  Equipment.created_at, Equipment.created_by_id, Equipment.due_on, Equipment.out_of_service,
                  Equipment.active, counted.c.calibrations, counted.c.last_on)
        .outerjoin(counted, counted.c.equipment_id == Equipment.id)
        .where(at_sites(Equipment.site_id, site_ids))
        .order_by(Equipment.site_id, Equipment.code)
    )


def equipment_rows(statement, context) -> Iterator[tuple]:
    names = context.names
    for r in stream(statement):
        yield (r.code, EQUIPMENT_KIND_TEXT.get(r.kind, r.kind), r.name, context.sites.get(r.site_id),
               r.serial_number or None, r.created_at, names.get(r.created_by_id) if r.created_by_id else None,
               r.due_on, r.out_of_service, not r.active, r.calibrations or 0, r.last_on)


def calibration_columns(zone) -> list[Column]:
    return [
        Column("Equipment code", "code"), Column("Kind"), Column("Name"), Column("Site", "code"),
        Column("Serial number", "code"), Column("Performed on", "date"), Column("Result"),
        Column("Next due on", "date"), Column("Performed by"), Column("Certificate number", "code"),
        Column("Note"), Column("Recorded by"), Column(zone_label("Recorded", zone), "datetime"),
    ]


def calibrations_query(start_at, end_at, site_ids: SiteIds):
    first, after = _days(start_at, end_at)
    return (
        sa.select(Equipment.code, Equipment.kind, Equipment.name, Equipment.site_id, Equipment.serial_number,
                  Calibration.performed_on, Calibration.result, Calibration.next_due_on, Calibration.performed_by,
                  Calibration.certificate_number, Calibration.note, Calibration.recorded_by_id,
                  Calibration.recorded_at)
        .join(Equipment, Equipment.id == Calibration.equipment_id)
        .where(Calibration.performed_on >= first, Calibration.performed_on < after,
               at_sites(Equipment.site_id, site_ids))
        .order_by(Calibration.performed_on, Calibration.id)
    )


def calibration_rows(statement, context) -> Iterator[tuple]:
    names = context.names
    for r in stream(statement):
        yield (r.code, EQUIPMENT_KIND_TEXT.get(r.kind, r.kind), r.name, context.sites.get(r.site_id),
               r.serial_number or None, r.performed_on, r.result, r.next_due_on, r.performed_by or None,
               r.certificate_number or None, r.note or None,
               names.get(r.recorded_by_id) if r.recorded_by_id else None, r.recorded_at)


# --- documents: by the time they were uploaded ------------------------------------------------------------


def document_columns(zone) -> list[Column]:
    return [
        Column("Document id", "int"), Column("Record"), Column("Record id", "int"), Column("Record code", "code"),
        Column("Kind"), Column("File name"), Column("Content type"), Column("Size (bytes)", "int"),
        Column("SHA-256", "code", width=20), Column("Received SHA-256 (when different)", "code", width=20),
        Column("Store"), Column("Note"), Column("Uploaded by"), Column(zone_label("Uploaded", zone), "datetime"),
        Column(zone_label("Withdrawn", zone), "datetime"), Column("Withdrawn by"), Column("Withdraw reason"),
        Column("Site", "code"),
    ]


def documents_query(start_at, end_at, site_ids: SiteIds):
    """Documents uploaded in the period (withdrawn ones too), each with the code of the record it proves.

    A document is at its record's site (a batch's own, a test result's batch's); a qualification's evidence
    goes with its person (at the sites in scope as a member, or chain-wide).
    """
    test_batch = aliased(Batch)
    person = aliased(User)
    kind = aliased(QualificationKind)

    def on(model, entity_type):
        return sa.and_(Document.entity_type == entity_type, model.id == Document.entity_id)

    site_id = sa.func.coalesce(Lot.site_id, Batch.site_id, test_batch.site_id, Equipment.site_id)
    return (
        sa.select(Document.id, Document.entity_type, Document.entity_id, Lot.code.label("lot_code"),
                  Batch.code.label("batch_code"), test_batch.code.label("test_batch_code"),
                  BatchTest.kind.label("test_kind"), BatchTest.method.label("test_method"),
                  person.username, kind.code.label("kind_code"), Qualification.passed_on,
                  Equipment.code.label("equipment_code"), Document.kind, Document.filename, Document.content_type,
                  Document.size, Document.sha256, Document.received_sha256, Document.store, Document.note,
                  Document.uploaded_by_id, Document.uploaded_at, Document.withdrawn_at, Document.withdrawn_by_id,
                  Document.withdraw_reason, site_id.label("site_id"))
        .outerjoin(Lot, on(Lot, "lot")).outerjoin(Batch, on(Batch, "batch"))
        .outerjoin(BatchTest, on(BatchTest, "batch_test")).outerjoin(test_batch, test_batch.id == BatchTest.batch_id)
        .outerjoin(Qualification, on(Qualification, "qualification"))
        .outerjoin(person, person.id == Qualification.user_id).outerjoin(kind, kind.id == Qualification.kind_id)
        .outerjoin(Equipment, on(Equipment, "equipment"))
        .where(Document.uploaded_at >= start_at, Document.uploaded_at < end_at,
               sa.or_(sa.and_(Document.entity_type == "qualification", _person_at_sites(person, site_ids)),
                      at_sites(site_id, site_ids)))
        .order_by(Document.uploaded_at, Document.id)
    )


def _person_at_sites(person, site_ids: SiteIds) -> sa.ColumnElement[bool]:
    """The qualification's person at the sites in scope (`people_at_sites` for an aliased user)."""
    if site_ids is None:
        return sa.true()
    member = sa.exists().where(UserSite.user_id == person.id, at_sites(UserSite.site_id, site_ids))
    return sa.or_(person.all_sites, member)


def _record_code(r) -> str | None:
    match r.entity_type:
        case "lot":
            return r.lot_code
        case "batch":
            return r.batch_code
        case "batch_test":
            return f"{r.test_batch_code} {r.test_kind} ({r.test_method})"
        case "qualification":
            return f"{r.username} {r.kind_code} {r.passed_on.isoformat()}"
        case "equipment":
            return r.equipment_code
    return None


def document_rows(statement, context) -> Iterator[tuple]:
    names = context.names
    for r in stream(statement):
        yield (r.id, ENTITY_TEXT.get(r.entity_type, r.entity_type), r.entity_id, _record_code(r),
               DOCUMENT_KIND_TEXT.get(r.kind, r.kind), r.filename, r.content_type, r.size, r.sha256,
               r.received_sha256 if r.received_sha256 != r.sha256 else None, r.store, r.note or None,
               names.get(r.uploaded_by_id) if r.uploaded_by_id else None, r.uploaded_at, r.withdrawn_at,
               names.get(r.withdrawn_by_id) if r.withdrawn_by_id else None, r.withdraw_reason or None,
               context.sites.get(r.site_id) if r.site_id is not None else None)
