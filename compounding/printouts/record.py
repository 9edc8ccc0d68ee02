"""The accompanying record of a batch: everything its label leaves out, for an A4 printout."""

from dataclasses import dataclass
from datetime import date

import sqlalchemy as sa

from .. import labels
from ..extensions import db
from ..models import Batch, BatchEquipment, BatchTest
from ..models.equipment import EQUIPMENT_KIND_TEXT
from ..services.bud import BUD_TABLE
from ..services.signatures import signatures_for


@dataclass
class RecordComponent:
    """One lot consumed, as copied onto the batch at compounding."""

    name: str
    kind: str
    strength: str
    unit: str
    vehicle: bool
    sterile: bool
    lot_code: str
    supplier_lot_number: str
    expires_on: date
    amount: str  # from this lot, for the whole batch
    per_unit: str  # of the ingredient, all its lots together
    concentration: str | None
    first_of_ingredient: bool
    lots_of_ingredient: int


@dataclass
class RecordTest:
    kind: str
    status: str  # "pending", "pass" or "fail"
    method: str
    lab: str
    sampled_on: date | None
    recorded_at_text: str


@dataclass
class RecordVial:
    code: str
    dose: str
    status: str
    remaining_ml: str
    legacy: bool


@dataclass
class RecordEquipment:
    """A piece of equipment the batch was made with, as copied at compounding."""

    code: str
    kind: str
    name: str
    due_on: date


@dataclass
class BatchRecord:
    label: labels.BatchLabel
    units: int
    total_volume_ml: str
    bud_category: str
    preparation_started_text: str
    verified_at_text: str | None
    components: list[RecordComponent]
    tests: list[RecordTest]
    vials: list[RecordVial]
    equipment: list[RecordEquipment]
    deviations: str
    notes: str


def load_batch(batch_id: int) -> Batch:
    """The batch with what its record reads; a held batch keeps its record (only labels stop)."""
    return labels.load_batch_record(batch_id)


def _components(batch: Batch) -> list[RecordComponent]:
    contents = labels.unit_contents(batch.components, batch.units)
    volume = labels.mixed_volume(contents, batch.formula.unit_volume_ml)
    rows = []
    for content in contents:
        copy = content.first
        concentration = labels.final_concentration(copy.ingredient_strength, copy.ingredient_unit,
                                                   content.per_unit, volume)
        for index, lot in enumerate(content.lots):
            rows.append(RecordComponent(
                name=lot.ingredient_name, kind=lot.ingredient_kind, strength=lot.ingredient_strength,
                unit=lot.ingredient_unit, vehicle=lot.ingredient_vehicle, sterile=lot.ingredient_sterile,
                lot_code=lot.lot_code, supplier_lot_number=lot.supplier_lot_number, expires_on=lot.lot_expires_on,
                amount=labels.amount_text(lot.quantity), per_unit=labels.amount_text(content.per_unit),
                concentration=concentration, first_of_ingredient=index == 0,
                lots_of_ingredient=len(content.lots)))
    return rows


def _tests(batch: Batch) -> list[RecordTest]:
    results = {t.kind: t for t in db.session.scalars(sa.select(BatchTest).where(BatchTest.batch_id == batch.id))}
    tests = []
    for kind in batch.tests_required:
        result = results.get(kind)
        tests.append(RecordTest(
            kind=kind, status=result.result if result else "pending", method=result.method if result else "",
            lab=result.lab if result else "", sampled_on=result.sampled_on if result else None,
            recorded_at_text=labels.clinic_time(result.recorded_at) if result else ""))
    return tests


def _vials(batch: Batch) -> list[RecordVial]:
    return [RecordVial(code=vial.code, dose=vial.dose, status=vial.status,
                       remaining_ml=labels.amount_text(vial.remaining_ml), legacy=vial.legacy)
            for vial in labels.batch_vials(batch.id)]


def _equipment(batch: Batch) -> list[RecordEquipment]:
    rows = db.session.scalars(sa.select(BatchEquipment).where(BatchEquipment.batch_id == batch.id)
                              .order_by(BatchEquipment.id))
    return [RecordEquipment(code=row.code, kind=EQUIPMENT_KIND_TEXT.get(row.kind, row.kind), name=row.name,
                            due_on=row.due_on) for row in rows]


def batch_record(batch: Batch) -> BatchRecord:
    """The accompanying record of `batch` (load it with `load_batch`)."""
    verified = [s for s in signatures_for("batch", batch.id) if s.meaning == "verified"]
    category = BUD_TABLE.get(batch.formula.bud_category)
    return BatchRecord(
        label=labels.batch_label(batch), units=batch.units, total_volume_ml=labels.amount_text(batch.total_volume_ml),
        bud_category=category.label if category else batch.formula.bud_category,
        preparation_started_text=labels.clinic_time(batch.preparation_started_at),
        verified_at_text=labels.clinic_time(verified[-1].signed_at if verified else batch.verified_at)
        if verified or batch.verified_at else None,
        components=_components(batch), tests=_tests(batch), vials=_vials(batch), equipment=_equipment(batch),
        deviations=batch.deviations,
        notes=batch.notes)
