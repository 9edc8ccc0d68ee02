"""API: qualified people (DESIGN 10.6): results recorded per person, their voids, a person's standings (may they
compound and verify today), and the qualification kinds."""

import sqlalchemy as sa
from flask import request
from flask_login import current_user

from ..extensions import db
from ..models import Qualification, QualificationKind, User
from ..pagination import paginate_entities, per_page_arg
from ..permissions import role_can
from ..queries.people import RecordFilters, may_see_person, record_list, record_rows
from ..services import qualifications
from ..services.clock import clinic_today
from ..services.errors import InvalidInput, NotAllowed, NotFound
from .schemas.qualifications import (
    KindCreateSchema,
    KindSchema,
    PersonStandingSchema,
    QualificationCreateSchema,
    QualificationQuerySchema,
    QualificationSchema,
    VoidSchema,
)
from .scope import list_scope
from .views import answer, json_body, load, page_answer, record_action, route, shared


def _record(row) -> dict:
    q = row[0]
    return {"id": q.id, "user_id": q.user_id, "username": row.username, "display_name": row.display_name,
            "kind": row.kind_code, "kind_name": row.kind_name, "passed_on": q.passed_on, "result": q.result,
            "cfu": q.cfu, "valid_until": q.valid_until, "assessor": q.assessor, "note": q.note,
            "recorded_by": row.recorded_by, "recorded_by_id": q.recorded_by_id, "recorded_at": q.recorded_at,
            "voided": q.voided_at is not None, "voided_at": q.voided_at, "voided_by": row.voided_by,
            "void_reason": q.void_reason}


def _record_answer(qualification_id: int, status: int = 200):
    row = db.session.execute(record_rows().where(Qualification.id == qualification_id)).first()
    return answer(shared(QualificationSchema).dump(_record(row)), status)


def _person_named(user_id: int | None, username: str | None) -> User:
    """The person a body names, when the caller may see them (at one of their sites); 404 otherwise."""
    if user_id is None and not (username or "").strip():
        raise InvalidInput("Name the person: user_id or username.", field="user_id")
    column, value = (User.id, user_id) if user_id is not None else (User.username, username.strip().lower())
    person = db.session.scalar(sa.select(User).where(column == value))
    if person is None or not may_see_person(current_user, person.id):
        raise NotFound(f"No user {value}.", field="user_id" if user_id is not None else "username")
    return person


@route("/qualifications", "POST", permission="qualifications.record",
       summary="Record a qualification result for a person (user_id or username): a pass stands until "
               "valid_until (default: the kind's interval), a fail suspends compounding and verifying at once. "
               "404: an unknown kind or person; 409: a deactivated account or a kind no longer recorded; "
               "422: a date in the future, valid_until not after passed_on or past the kind's interval, "
               "a CFU count missing, refused or above the kind's limit",
       body=QualificationCreateSchema, response=QualificationSchema, status=201, errors=(403, 404, 409, 422))
def qualification_create():
    data = load(QualificationCreateSchema, json_body())
    person = _person_named(data["user_id"], data["username"])
    record = qualifications.record_qualification(
        current_user, user_id=person.id, kind=data["kind"], passed_on=data["passed_on"], result=data["result"],
        cfu=data["cfu"], valid_until=data["valid_until"], assessor=data["assessor"], note=data["note"])
    return _record_answer(record.id, 201)


def _kinds_named(code: str | None) -> list[QualificationKind]:
    if not code:
        return list(db.session.scalars(sa.select(QualificationKind).order_by(QualificationKind.id)))
    kind = db.session.scalar(sa.select(QualificationKind).where(QualificationKind.code == code.strip()))
    if kind is None:
        raise InvalidInput(f"No qualification kind {code}.", field="kind")
    return [kind]


@route("/qualifications", permission="qualifications.read",
       summary="Qualification records of the people at the caller's sites, newest first (?user_id=, ?kind=, "
               "?site_id=; ?due_within=DAYS: only each active person's current record of a kind due by then, "
               "lapsed, failed, or an unfinished initial series). Voided records stay, marked",
       response=QualificationSchema, many=True, query=QualificationQuerySchema, errors=(403, 404, 422))
def qualification_list():
    args = load(QualificationQuerySchema, request.args.to_dict())
    scope = list_scope()
    filters = RecordFilters(user_id=args.get("user_id"), kind=args.get("kind", ""), due_within=args.get("due_within"))
    page = record_list(filters, site_ids=scope, kinds=_kinds_named(filters.kind), per_page=per_page_arg())
    return answer(page_answer(QualificationSchema(many=True).dump([_record(row) for row in page.items]), page))


@record_action("/qualifications/<int:qualification_id>/void", permission="qualifications.record",
               summary="Void a record entered by mistake (a reason): it stays, marked, and no longer counts; "
                       "409 when it is voided already",
               body=VoidSchema, response=QualificationSchema, answer_with=_record_answer, errors=(404, 409))
def qualification_void(qualification_id: int, data: dict):
    record = db.session.get(Qualification, qualification_id)
    if record is None or not may_see_person(current_user, record.user_id):
        raise NotFound(f"No qualification {qualification_id}.")
    qualifications.void_qualification(current_user, qualification_id, data["reason"])


@route("/users/<int:user_id>/qualifications", permission="signed_in",
       summary="A person's standing in every active kind today, and whether they may compound and verify: "
               "one's own, or (qualifications.read) a person at one's sites",
       response=PersonStandingSchema, errors=(403, 422))
def user_standings(user_id: int):
    person = db.session.get(User, user_id)
    if person is None:
        raise NotFound(f"No user {user_id}.")
    if person.id != current_user.id:
        if not current_user.can("qualifications.read"):
            raise NotAllowed("You may read your own qualifications only.")
        if not may_see_person(current_user, person.id):
            raise NotFound(f"No user {user_id}.")
    kinds, day = qualifications.active_kinds(), clinic_today()
    standings = qualifications.standings(person.id, day=day, kinds=kinds)
    requirement = qualifications.required()
    cleared = not requirement or all(s.usable for kind, s in zip(kinds, standings, strict=True) if kind.required)
    cleared3 = cleared and (not requirement or all(
        s.category3_until is not None and s.category3_until >= day
        for kind, s in zip(kinds, standings, strict=True) if kind.required))
    body = {
        "user_id": person.id, "username": person.username, "display_name": person.display_name,
        "role": person.role, "active": person.active, "on": day, "requirement": requirement,
        "may_compound": person.active and role_can(person.role, "batches.compound") and cleared,
        "may_verify": person.active and role_can(person.role, "batches.verify") and cleared,
        "may_compound_category_3": person.active and role_can(person.role, "batches.compound") and cleared3,
        "standings": [{"kind": s.kind_code, "name": s.kind_name, "state": s.state, "usable": s.usable,
                       "valid_until": s.valid_until, "category3_valid_until": s.category3_until,
                       "failed_on": s.failed_on, "passes": s.passes, "needed": s.needed,
                       "required": kind.required, "message": s.text}
                      for kind, s in zip(kinds, standings, strict=True)]}
    return answer(shared(PersonStandingSchema).dump(body))


@route("/qualification-kinds", permission="signed_in",
       summary="The qualification kinds (the USP <797> ones and those admins added), active ones first",
       response=KindSchema, many=True, errors=(422,))
def kind_list():
    query = sa.select(QualificationKind).order_by(QualificationKind.active.desc(), QualificationKind.id)
    page = paginate_entities(query, QualificationKind.id, per_page=per_page_arg())
    return answer(page_answer(KindSchema(many=True).dump(page.items), page))


@route("/qualification-kinds", "POST", permission="qualifications.kinds",
       summary="Add a qualification kind (admins): its intervals, initial series, whether it counts CFU and is "
               "required to compound and verify; 409 when the code exists",
       body=KindCreateSchema, response=KindSchema, status=201, errors=(409, 422))
def kind_create():
    data = load(KindCreateSchema, json_body())
    kind = qualifications.create_kind(current_user, **data)
    return answer(shared(KindSchema).dump(kind), 201)
