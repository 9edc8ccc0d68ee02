"""Rows shared by the audit workbook and the list exports: how they are read, which columns they fill."""

from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from itertools import islice
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from ..extensions import db
from ..models import Batch, BatchEquipment, Lot, Patient, SessionUse, Site, TreatmentSession, User
from ..services.batches import is_batch_expired
from ..services.bud import last_usable_minute
from ..services.expiry import is_expired
from .writer import CHUNK_ROWS, Column, zone_label


def stream(statement, chunk: int = CHUNK_ROWS) -> Iterator:
    """The rows of a query, fetched `chunk` at a time (a server-side cursor on PostgreSQL)."""
    result = db.session.execute(statement.execution_options(yield_per=chunk))
    try:
        yield from result
    finally:
        result.close()


def user_names() -> dict[int, str]:
    """Display names of every account: a clinic has tens, so one statement beats a join per sheet."""
    return dict(db.session.execute(sa.select(User.id, User.display_name)).all())


def site_codes() -> dict[int, str]:
    """Every site's code by id, in one statement: each row's Site column reads it, never a join per sheet."""
    return dict(db.session.execute(sa.select(Site.id, Site.code)).all())


def code_list(column):
    """The distinct codes of a group as one text, in each database's own aggregate."""
    if db.session.get_bind().dialect.name == "sqlite":
        return sa.func.group_concat(sa.distinct(column))
    return sa.func.string_agg(sa.distinct(column), sa.literal_column("','"))


def codes(value: str | None) -> str:
    return ", ".join(sorted({code for code in (value or "").split(",") if code}))


def stream_scalars(statement, chunk: int = CHUNK_ROWS) -> Iterator:
    """The first entity of each row of `stream`."""
    for row in stream(statement, chunk):
        yield row[0]


def chunks(items: Iterable, size: int = CHUNK_ROWS) -> Iterator[list]:
    """`items` in lists of `size` (the last one shorter), read as they come."""
    items = iter(items)
    while chunk := list(islice(items, size)):
        yield chunk


def lot_columns(zone: ZoneInfo) -> list[Column]:
    return [
        Column("Lot code", "code"), Column("Ingredient"), Column("Unit"), Column("Supplier"),
        Column("Supplier lot number", "code"), Column("GTIN", "code"), Column(zone_label("Received", zone), "datetime"),
        Column("Received by"), Column("Expiry", "date"), Column("Expired at export", "bool"),
        Column("Quantity received", "decimal"), Column("Remaining", "decimal"), Column("CoA reference", "code"),
        Column("Location"), Column("Status"), Column("Status reason"),
        Column(zone_label("Released", zone), "datetime"), Column("Released by"),
        Column("Released without CoA: reason"), Column("Site", "code"),
    ]


def lot_values(lot: Lot, names: Mapping[int, str], now: datetime, sites: Mapping[int, str]) -> tuple:
    return (lot.code, lot.ingredient.name, lot.ingredient.unit, lot.supplier, lot.supplier_lot_number, lot.gtin,
            lot.received_at, names.get(lot.received_by_id), lot.expires_on, is_expired(lot.expires_on, now),
            lot.quantity_received, lot.remaining, lot.coa_reference, lot.location, lot.status, lot.status_reason,
            lot.released_at, names.get(lot.released_by_id) if lot.released_by_id else None,
            lot.released_without_coa_reason or None, sites.get(lot.site_id))


def batch_columns(zone: ZoneInfo) -> list[Column]:
    return [
        Column("Batch code", "code"), Column("Formula", "code"), Column("Version", "int"), Column("Formula name"),
        Column("Units", "int"), Column("Total volume (mL)", "decimal"), Column("Remaining (mL)", "decimal"),
        Column(zone_label("Preparation started", zone), "datetime"),
        Column(zone_label("Compounded", zone), "datetime"), Column("Compounded by"),
        Column(zone_label("Verified", zone), "datetime"), Column("Verified by"),
        Column(zone_label("Use by", zone), "datetime"), Column("Expired at export", "bool"), Column("Storage"),
        Column("Protect from light", "bool"), Column("Required tests"), Column("Status"), Column("Status reason"),
        Column("Discard reason"), Column("Notes"), Column("Deviations"), Column("Equipment", "code"),
        Column("Site", "code"),
    ]


def batch_values(batch: Batch, names: Mapping[int, str], now: datetime, sites: Mapping[int, str],
                 equipment: str = "") -> tuple:
    # "Use by" is the last usable minute, as the label prints it (beyond_use_at itself is the first unusable one).
    return (batch.code, batch.formula.code, batch.formula.version, batch.formula.name, batch.units,
            batch.total_volume_ml, batch.remaining_volume_ml, batch.preparation_started_at, batch.compounded_at,
            names.get(batch.compounded_by_id),
            batch.verified_at, names.get(batch.verified_by_id) if batch.verified_by_id else None,
            last_usable_minute(batch.beyond_use_at), is_batch_expired(batch, now), batch.storage,
            batch.protect_from_light, ", ".join(batch.tests_required), batch.status, batch.status_reason,
            batch.discard_reason, batch.notes, batch.deviations, equipment, sites.get(batch.site_id))


def equipment_codes(batch_ids: list[int]) -> dict[int, str]:
    """The codes of the equipment each batch was made with (as copied onto its record), in one grouped statement."""
    if not batch_ids:
        return {}
    rows = db.session.execute(sa.select(BatchEquipment.batch_id, code_list(BatchEquipment.code))
                              .where(BatchEquipment.batch_id.in_(batch_ids)).group_by(BatchEquipment.batch_id))
    return {batch_id: codes(listed) for batch_id, listed in rows}


def batch_rows(statement, names: Mapping[int, str], now: datetime, sites: Mapping[int, str]) -> Iterator[tuple]:
    """The batches `statement` finds as rows, each with its equipment: one more statement per chunk of batches."""
    for chunk in chunks(stream_scalars(statement), CHUNK_ROWS):
        used = equipment_codes([batch.id for batch in chunk])
        for batch in chunk:
            yield batch_values(batch, names, now, sites, used.get(batch.id, ""))


def session_columns(zone: ZoneInfo) -> list[Column]:
    return [
        Column("Session id", "int"), Column(zone_label("Performed", zone), "datetime"), Column("Patient chart", "code"),
        Column("Practitioner"), Column("Indication"), Column("Batch code", "code"), Column("Volume (mL)", "decimal"),
        Column("Area"), Column("Voided", "bool"), Column("Void reason"), Column("Site", "code"),
    ]


def session_use_query():
    """One row per batch used in a session, in the order they were performed."""
    return (
        sa.select(SessionUse.session_id, TreatmentSession.performed_at, Patient.chart_number,
                  TreatmentSession.practitioner_id, TreatmentSession.indication, Batch.code, SessionUse.volume_ml,
                  SessionUse.area, TreatmentSession.voided_at.is_not(None).label("voided"),
                  TreatmentSession.void_reason, TreatmentSession.site_id)
        .join(TreatmentSession, TreatmentSession.id == SessionUse.session_id)
        .join(Patient, Patient.id == TreatmentSession.patient_id)
        .join(Batch, Batch.id == SessionUse.batch_id)
        .order_by(TreatmentSession.performed_at, SessionUse.session_id, SessionUse.id)
    )


def session_rows(statement, names: Mapping[int, str], sites: Mapping[int, str]) -> Iterator[tuple]:
    for row in stream(statement):
        yield (row[0], row[1], row[2], names.get(row[3]), *row[4:-1], sites.get(row[-1]))
