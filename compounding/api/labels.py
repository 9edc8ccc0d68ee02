"""API: label data for a batch, and the Code 128 barcodes of batch and lot codes as SVG."""

import sqlalchemy as sa
from flask import Response
from marshmallow import Schema, fields

from .. import labels
from ..extensions import db
from ..models import Batch, Lot
from ..services.errors import NotFound
from ..site_scope import ensure_visible
from .views import route


class DrugLineSchema(Schema):
    ingredient_id = fields.Integer()
    name = fields.String(metadata={"description": "As copied onto the batch at compounding"})
    strength = fields.String(metadata={"description": "The stock's strength, as copied at compounding"})
    kind = fields.String()
    quantity_per_unit = fields.String(metadata={"description": "Per unit, in the ingredient's stock unit"})
    unit = fields.String()
    unit_volume_ml = fields.String(metadata={"description": "The volume the concentration is worked out over"})
    concentration = fields.String(allow_none=True, metadata={
        "description": "In the finished preparation, when it follows exactly from the figures; else null"})
    text = fields.String(metadata={"example": "Phosphatidylcholine 25 mg/mL"})


class VialLabelSchema(Schema):
    vial_code = fields.String(metadata={"example": "B2612060001-02", "description": "What its barcode encodes"})
    vial_number = fields.Integer()
    dose = fields.String(metadata={"enum": ["single", "multiple"]})
    dose_statement = fields.String()
    in_use_hours = fields.Integer(allow_none=True)
    puncture_line = fields.Boolean(metadata={"description": "Multiple-dose: a line to write the first puncture"})
    warnings = fields.List(fields.String())


class BatchLabelSchema(Schema):
    clinic_name = fields.String()
    statement = fields.String(metadata={"example": labels.STATEMENT})
    batch_id = fields.Integer()
    batch_code = fields.String()
    status = fields.String()
    formula_code = fields.String()
    formula_name = fields.String()
    formula_version = fields.Integer()
    drugs = fields.List(fields.Nested(DrugLineSchema), metadata={
        "description": "Every component other than a pure vehicle, with its concentration in the unit"})
    actives = fields.List(fields.Nested(DrugLineSchema), metadata={"description": "The same list as `drugs`"})
    unit_label = fields.String()
    unit_volume_ml = fields.String()
    total_volume_text = fields.String(metadata={"example": "5 mL"})
    route = fields.String()
    route_text = fields.String(metadata={"example": "Subcutaneous use"})
    dosage_form = fields.String()
    storage = fields.String()
    storage_text = fields.String()
    protect_from_light = fields.Boolean()
    storage_lines = fields.List(fields.String(), metadata={
        "description": "What the label prints: the temperature unless room, and light"})
    dose = fields.String(metadata={"example": "single"})
    dose_statement = fields.String(metadata={"example": labels.DOSE_STATEMENTS["single"]})
    compounded_at = fields.AwareDateTime()
    compounded_at_text = fields.String(metadata={"description": "In the clinic's time zone"})
    made_at_text = fields.String(metadata={"description": "In the clinic's time zone, ISO date and minute"})
    beyond_use_at = fields.AwareDateTime(metadata={"description": "The exclusive instant the batch stops being usable"})
    beyond_use_text = fields.String(metadata={"description": "In the clinic's time zone, with the zone"})
    use_by_at = fields.AwareDateTime(metadata={"description": "The last usable minute, in the clinic's time zone"})
    use_by_text = fields.String(metadata={"example": "Use by 2026-12-11 23:59"})
    prepared_by = fields.String()
    verified_by = fields.String(allow_none=True)
    verified_text = fields.String(metadata={"description": f"The verifier's printed name, or {labels.NOT_VERIFIED!r}"})
    verified = fields.Boolean()
    warnings = fields.List(fields.String())
    vials = fields.List(fields.Nested(VialLabelSchema), metadata={
        "description": "One label per vial, as the label page prints them (held vials left out)"})


def _svg(model: type[Batch] | type[Lot], record_id: int, what: str) -> Response:
    code = db.session.scalar(sa.select(model.code).where(model.id == record_id))
    if code is None:
        raise NotFound(f"There is no such {what}.")
    return Response(labels.barcode_svg(code), mimetype="image/svg+xml",
                    headers={"Cache-Control": "private, max-age=300"})


@route("/batches/<int:batch_id>/label", permission="batches.read",
       summary="What a batch's vial label prints (409 while the batch is on hold)", response=BatchLabelSchema,
       errors=(409,))
def batch_label_data(batch_id: int):
    ensure_visible("batch", batch_id)
    batch = labels.load_batch(batch_id)
    answer = BatchLabelSchema().dump(labels.batch_label(batch))
    answer["vials"] = VialLabelSchema(many=True).dump(labels.vial_labels(batch))
    return answer


@route("/batches/<int:batch_id>/barcode.svg", permission="batches.read",
       summary="The batch code as a Code 128 barcode (image/svg+xml)")
def batch_barcode_svg(batch_id: int):
    ensure_visible("batch", batch_id)
    return _svg(Batch, batch_id, "batch")


@route("/lots/<int:lot_id>/barcode.svg", permission="lots.read",
       summary="The lot's internal code as a Code 128 barcode (image/svg+xml)")
def lot_barcode_svg(lot_id: int):
    ensure_visible("lot", lot_id)
    return _svg(Lot, lot_id, "lot")
