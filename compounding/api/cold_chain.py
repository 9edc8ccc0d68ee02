"""API: temperature readings of a location (by hand or from a sensor), excursions and the pharmacist's decision."""

from datetime import UTC, timedelta, timezone

import sqlalchemy as sa
from flask import abort, request
from flask_login import current_user
from marshmallow import EXCLUDE

from ..extensions import db
from ..models import Batch, Excursion, ExcursionItem, Location, Lot, Site, TemperatureReading, Vial
from ..pagination import paginate_entities, per_page_arg
from ..privacy import may_read_patients, note_access
from ..security import token_for_bearer
from ..services import cold_chain, sites
from ..services.errors import InvalidInput
from .schemas.cold_chain import (
    DecisionSchema,
    ExcursionDetailSchema,
    ExcursionQuerySchema,
    ExcursionSchema,
    ReadingCreateSchema,
    ReadingQuerySchema,
    ReadingRecordedSchema,
    ReadingSchema,
)
from .scope import list_scope
from .views import answer, json_body, load, page_answer, record_action, route, shared

_MODELS = {"lot": Lot, "batch": Batch, "vial": Vial}
_STATES = {
    "out_of_range": Excursion.ended_at.is_(None),
    "awaiting_decision": sa.and_(Excursion.ended_at.is_not(None), Excursion.decided_at.is_(None)),
    "decided": sa.and_(Excursion.ended_at.is_not(None), Excursion.decided_at.is_not(None)),
}


def _visible_site(site_id: int) -> bool:
    seen = sites.visible_site_ids(current_user)
    return seen is None or site_id in seen


def _location(location_id: int) -> Location:
    """A location at a site the caller sees; 404 for an unknown one or one elsewhere."""
    location = db.session.get(Location, location_id)
    if location is None or not _visible_site(location.site_id):
        abort(404)
    return location


def _excursion(excursion_id: int) -> Excursion:
    excursion = db.session.get(Excursion, excursion_id)
    if excursion is None or not _visible_site(excursion.site_id):
        abort(404)
    return excursion


def _as_given(reading: TemperatureReading) -> str:
    """The moment as the thermometer's clock wrote it: UTC moved to the offset it came with."""
    moment = reading.measured_at if reading.measured_at.tzinfo else reading.measured_at.replace(tzinfo=UTC)
    return moment.astimezone(timezone(timedelta(minutes=reading.utc_offset_minutes))).isoformat()


def _reading(reading: TemperatureReading, location: Location) -> dict:
    return {"id": reading.id, "location": {"id": location.id, "code": location.code},
            "measured_at": _as_given(reading), "celsius": reading.celsius, "min_celsius": reading.min_celsius,
            "max_celsius": reading.max_celsius, "source": reading.source, "in_range": reading.in_range,
            "note": reading.note, "excursion_id": reading.excursion_id, "recorded_at": reading.recorded_at}


def _held_counts(excursion_ids: list[int]) -> dict[int, int]:
    if not excursion_ids:
        return {}
    return dict(db.session.execute(
        sa.select(ExcursionItem.excursion_id, sa.func.count()).where(ExcursionItem.excursion_id.in_(excursion_ids))
        .group_by(ExcursionItem.excursion_id)).all())


def _excursions(rows: list[Excursion]) -> list[dict]:
    """Excursions as the API answers them, in three statements whatever their number."""
    held = _held_counts([e.id for e in rows])
    places = {r.id: r for r in db.session.execute(
        sa.select(Location.id, Location.code, Site.id.label("site_id"), Site.code.label("site_code"))
        .join(Site, Site.id == Location.site_id).where(Location.id.in_({e.location_id for e in rows})))} if rows else {}
    answered = []
    for e in rows:
        place = places[e.location_id]
        answered.append({
            "id": e.id, "code": e.code, "started_at": e.started_at, "ended_at": e.ended_at,
            "low_celsius": e.low_celsius, "high_celsius": e.high_celsius, "state": e.state,
            "held": held.get(e.id, 0), "location": {"id": place.id, "code": place.code},
            "site": {"id": place.site_id, "code": place.site_code}, "range_min": e.range_min,
            "range_max": e.range_max, "source": e.source, "held_at": e.held_at, "found_late": e.found_late,
            "decided_at": e.decided_at})
    return answered


def _items(excursion: Excursion) -> list[dict]:
    rows = cold_chain.excursion_items(excursion.id)
    statuses = {}
    for kind, model in _MODELS.items():
        ids = [r.entity_id for r in rows if r.entity_type == kind]
        if ids:
            statuses.update({(kind, i): s for i, s in db.session.execute(
                sa.select(model.id, model.status).where(model.id.in_(ids)))})
    return [{"id": r.id, "kind": r.entity_type, "code": r.code, "status": statuses.get((r.entity_type, r.entity_id)),
             "decision": r.decision, "reason": r.reason, "decided_at": r.decided_at,
             "use_by_before": r.use_by_before, "use_by_after": r.use_by_after} for r in rows]


def _uses(excursion: Excursion) -> list[dict]:
    uses = cold_chain.uses_for_review(excursion)
    patients = may_read_patients()
    if patients and any(use.patient_id is not None for use in uses):
        note_access("excursion.uses_for_review", target_type="excursion", target_id=excursion.id)
    return [{"kind": u.kind, "at": u.at, "item_code": u.item_code, "session_id": u.session_id,
             "patient_id": u.patient_id if patients else None, "voided": u.voided, "batch_code": u.batch_code,
             "vial_code": u.vial_code} for u in uses]


def _excursion_answer(excursion_id: int, status: int = 200):
    excursion = _excursion(excursion_id)
    data = {**_excursions([excursion])[0], "items": _items(excursion), "uses_for_review": _uses(excursion)}
    return answer(shared(ExcursionDetailSchema).dump(data), status)


def _sensor_token_id(source: str) -> int | None:
    """The calling token when it is a device's (scoped): its readings are the sensor's, and say so."""
    token = token_for_bearer(request.headers.get("Authorization", ""))
    if token is None or token.scope is None:
        return None
    if source != "sensor":
        raise InvalidInput("A sensor's token records readings with the source \"sensor\".", field="source")
    return token.id


@route("/locations/<int:location_id>/readings", "POST", permission="readings.record",
       summary="Record a reading of a location's thermometer; one out of range opens (or joins) an excursion "
               "that holds the stock stored there. 409: a duplicate, or a location with no range or not in use",
       body=ReadingCreateSchema, response=ReadingRecordedSchema, status=201, errors=(403, 404, 409, 422))
def reading_create(location_id: int):
    location = _location(location_id)
    data = load(ReadingCreateSchema, json_body())
    reading = cold_chain.record_reading(
        current_user, location.id, measured_at=data["measured_at"], celsius=data["celsius"], source=data["source"],
        min_celsius=data["min_celsius"], max_celsius=data["max_celsius"], note=data["note"],
        token_id=_sensor_token_id(data["source"]))
    excursion = db.session.get(Excursion, reading.excursion_id) if reading.excursion_id else None
    body = {**_reading(reading, location), "excursion": _excursions([excursion])[0] if excursion else None}
    return answer(shared(ReadingRecordedSchema).dump(body), 201)


@route("/locations/<int:location_id>/readings", permission="coldchain.read",
       summary="A location's readings, newest first (?from= and ?to=: moments with their offset)",
       response=ReadingSchema, many=True, query=ReadingQuerySchema, errors=(422,))
def reading_list(location_id: int):
    location = _location(location_id)
    filters = load(ReadingQuerySchema, request.args.to_dict(), unknown=EXCLUDE)
    query = sa.select(TemperatureReading).where(TemperatureReading.location_id == location.id)
    if filters.get("start") is not None:
        query = query.where(TemperatureReading.measured_at >= filters["start"].astimezone(UTC))
    if filters.get("end") is not None:
        query = query.where(TemperatureReading.measured_at <= filters["end"].astimezone(UTC))
    query = query.order_by(TemperatureReading.measured_at.desc(), TemperatureReading.id.desc())
    page = paginate_entities(query, TemperatureReading.id, per_page=per_page_arg())
    items = [_reading(reading, location) for reading in page.items]
    return answer(page_answer(ReadingSchema(many=True).dump(items), page))


@route("/excursions", permission="coldchain.read",
       summary="Excursions at the caller's sites, newest first (?state=, ?site_id=, ?location_id=)",
       response=ExcursionSchema, many=True, query=ExcursionQuerySchema, errors=(404, 422))
def excursion_list():
    filters = load(ExcursionQuerySchema, request.args.to_dict(), unknown=EXCLUDE)
    scope = list_scope()
    query = sa.select(Excursion)
    if scope is not None:
        query = query.where(Excursion.site_id.in_(sorted(scope)))
    if filters.get("state"):
        query = query.where(_STATES[filters["state"]])
    if filters.get("location_id"):
        query = query.where(Excursion.location_id == filters["location_id"])
    query = query.order_by(Excursion.started_at.desc(), Excursion.id.desc())
    page = paginate_entities(query, Excursion.id, per_page=per_page_arg())
    return answer(page_answer(ExcursionSchema(many=True).dump(_excursions(list(page.items))), page))


@route("/excursions/<int:excursion_id>", permission="coldchain.read",
       summary="One excursion: its facts, each held item with its decision, and the uses to review",
       response=ExcursionDetailSchema)
def excursion_detail(excursion_id: int):
    return _excursion_answer(excursion_id)


@record_action("/excursions/<int:excursion_id>/decide", permission="excursions.decide",
               summary="A pharmacist decides, by signature, what the held stock becomes (keep, keep_shortened "
                       "with beyond_use_at, discard): every undecided item, or the `items` listed",
               body=DecisionSchema, response=ExcursionDetailSchema, answer_with=_excursion_answer,
               errors=(403, 409))
def excursion_decide(excursion_id: int, data: dict):
    _excursion(excursion_id)
    cold_chain.decide(current_user, excursion_id, data["decision"], data["reason"], data["password"],
                      items=data["items"], use_by=data["beyond_use_at"])
