"""Qualified people (DESIGN 10.6): recording competency results and judging who may compound and verify.

A person's standing in a kind is read from their records of that kind in date order (`judge`,
pure): the latest result decides (a fail suspends at once), a kind with an initial series
qualifies only after that many passes in a row (gloved fingertip: three at zero CFU), and a
pass stands until its `valid_until` (Category 3 compounding: its kind's shorter interval).
With REQUIRE_QUALIFICATIONS on, `ensure_qualified` refuses compounding and verifying (409)
naming every lapsed, failed or missing qualification.
"""

import calendar
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import sqlalchemy as sa
from flask import current_app

from ..extensions import db
from ..limits import LABEL_MAX, NAME_MAX, NOTE_MAX, REASON_MAX
from ..models import Batch, Qualification, QualificationKind, User
from ..models.people import INITIAL_CFU_MAX, QUALIFICATION_RESULTS, ROUTINE_CFU_MAX
from . import audit
from .access import ensure_can
from .bounds import checked_text
from .clock import clinic_today, start_of_clinic_day, utcnow
from .errors import InvalidInput, InvalidState, NotAllowed, NotFound
from .transaction import transactional

# A pass ending within this many days shows as due soon (dashboard, team page).
DUE_SOON_DAYS = 30
# The most colony-forming units a record holds (a plate is read up to "too numerous to count").
CFU_MAX = 10_000
QUALIFICATION_FIELDS = ("passed_on", "result", "cfu", "valid_until", "assessor", "note")
KIND_FIELDS = ("name", "valid_months", "category3_months", "initial_passes", "counts_cfu", "required", "active")
KIND_CODE = re.compile(rf"^[a-z][a-z0-9_]{{1,{LABEL_MAX - 1}}}$")


def add_months(day: date, months: int) -> date:
    """The same day `months` later (the month's last day when it is shorter: 31 Aug + 6 months = 28/29 Feb)."""
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def is_category_3(category: str | None) -> bool:
    return bool(category) and category.startswith("category_3")


@dataclass(frozen=True)
class Standing:
    """One person's standing in one kind on one day."""

    kind_code: str
    kind_name: str
    # valid, due_soon, lapsed, failed, initial (series not complete), missing (never recorded)
    state: str
    valid_until: date | None = None
    failed_on: date | None = None
    passes: int = 0
    needed: int = 1
    # The last day the pass stands for Category 3 compounding (its kind's shorter interval).
    category3_until: date | None = None
    # The day judged (the text says "Category 3 lapsed" from it).
    day: date | None = None

    @property
    def usable(self) -> bool:
        return self.state in ("valid", "due_soon")

    @property
    def text(self) -> str:
        name = self.kind_name
        match self.state:
            case "valid":
                return f"{name}: valid until {self.valid_until.isoformat()}"
            case "due_soon":
                return f"{name}: due, valid until {self.valid_until.isoformat()}"
            case "lapsed":
                return f"{name}: lapsed on {self.valid_until.isoformat()}"
            case "failed":
                return f"{name}: failed on {self.failed_on.isoformat()} (suspended until a new pass)"
            case "initial":
                return f"{name}: initial qualification incomplete ({self.passes} of {self.needed} passes)"
        return f"{name}: never recorded"

    @property
    def category3_note(self) -> str:
        """Category 3's shorter interval, when it ends before the pass does ("" otherwise): shown beside the
        standing where someone may compound Category 3 preparations (the person page, the API)."""
        if self.category3_until is None or self.valid_until is None or self.category3_until >= self.valid_until:
            return ""
        if self.day is not None and self.category3_until < self.day:
            return f"Category 3 lapsed on {self.category3_until.isoformat()}"
        return f"Category 3 until {self.category3_until.isoformat()}"

    def as_dict(self) -> dict:
        """As a refusal's details carry it (JSON as it stands: days as ISO 8601 text, as the API writes them)."""
        return {"kind": self.kind_code, "name": self.kind_name, "state": self.state,
                "valid_until": self.valid_until.isoformat() if self.valid_until else None,
                "failed_on": self.failed_on.isoformat() if self.failed_on else None,
                "category3_valid_until": self.category3_until.isoformat() if self.category3_until else None,
                "message": self.text}


def judge(kind: QualificationKind, records: Sequence[Qualification], day: date, *,
          category: str | None = None, due_days: int = DUE_SOON_DAYS) -> Standing:
    """A person's standing in `kind` on `day` from their records of that kind (pure: no database).

    Voided records and records dated after `day` do not count. Records are taken in date order
    (then in the order recorded).
    """
    standing = {"kind_code": kind.code, "kind_name": kind.name, "needed": kind.initial_passes, "day": day}
    counted = sorted((r for r in records if r.voided_at is None and r.passed_on <= day),
                     key=lambda r: (r.passed_on, r.id or 0))
    if not counted:
        return Standing(state="missing", **standing)
    streak, established, last_occasion = 0, False, None
    for record in counted:
        if record.result == "pass":
            if not established:
                if not kind.counts_cfu or (record.cfu is not None and record.cfu <= INITIAL_CFU_MAX):
                    # Separate occasions: a second pass on the same day is not another one.
                    if record.passed_on != last_occasion:
                        streak += 1
                        last_occasion = record.passed_on
                else:
                    streak, last_occasion = 0, None
                established = streak >= kind.initial_passes
        elif not established:
            streak, last_occasion = 0, None
    last = counted[-1]
    if last.result == "fail":
        return Standing(state="failed", failed_on=last.passed_on, passes=streak, **standing)
    if not established:
        return Standing(state="initial", passes=streak, **standing)
    until = last.valid_until or add_months(last.passed_on, kind.valid_months)
    category3_until = min(until, add_months(last.passed_on, kind.category3_months))
    if is_category_3(category):
        until = category3_until
    if until < day:
        return Standing(state="lapsed", valid_until=until, passes=streak, category3_until=category3_until, **standing)
    state = "due_soon" if until <= day + timedelta(days=due_days) else "valid"
    return Standing(state=state, valid_until=until, passes=streak, category3_until=category3_until, **standing)


def required_kinds() -> list[QualificationKind]:
    return list(db.session.scalars(sa.select(QualificationKind).where(
        QualificationKind.active, QualificationKind.required).order_by(QualificationKind.id)))


def active_kinds() -> list[QualificationKind]:
    return list(db.session.scalars(sa.select(QualificationKind).where(QualificationKind.active)
                                   .order_by(QualificationKind.id)))


def records_of(user_ids: Iterable[int], kind_ids: Iterable[int] | None = None) -> dict[tuple[int, int], list]:
    """Every record of these people (and kinds), by (user, kind), in one statement."""
    query = sa.select(Qualification).where(Qualification.user_id.in_(list(user_ids)))
    if kind_ids is not None:
        query = query.where(Qualification.kind_id.in_(list(kind_ids)))
    grouped: dict[tuple[int, int], list] = {}
    for record in db.session.scalars(query.order_by(Qualification.passed_on, Qualification.id)):
        grouped.setdefault((record.user_id, record.kind_id), []).append(record)
    return grouped


def standings(user_id: int, *, day: date | None = None, category: str | None = None,
              kinds: Sequence[QualificationKind] | None = None) -> list[Standing]:
    """A person's standing in every active kind (or `kinds`) on `day` (today in the clinic's zone)."""
    day = day or clinic_today()
    kinds = active_kinds() if kinds is None else kinds
    grouped = records_of([user_id], [k.id for k in kinds])
    return [judge(kind, grouped.get((user_id, kind.id), []), day, category=category) for kind in kinds]


def required() -> bool:
    return bool(current_app.config.get("REQUIRE_QUALIFICATIONS", True))


def ensure_qualified(actor: User | None, doing: str, *, at: datetime | None = None,
                     category: str | None = None) -> None:
    """Refuse (409) `doing` ("compound", "verify") while a required qualification of the actor is not valid.

    Judged on the day of `at` (a batch entered late is judged on the day it was made). Off with
    REQUIRE_QUALIFICATIONS=0; the command line (actor None) is never refused.
    """
    if actor is None or not required():
        return
    # Shared lock on the person: a result recorded meanwhile (which locks them) waits, or is waited for.
    db.session.execute(sa.select(User.id).where(User.id == actor.id).with_for_update(read=True))
    day = clinic_today(at)
    problems = [s for s in standings(actor.id, day=day, category=category, kinds=required_kinds()) if not s.usable]
    if problems:
        listed = "; ".join(s.text for s in problems)
        raise InvalidState(f"{actor.display_name} may not {doing}: {listed}. Record a valid qualification first.",
                           details={"qualifications": [s.as_dict() for s in problems]})


def get_kind(code_or_id) -> QualificationKind:
    column = QualificationKind.id if isinstance(code_or_id, int) else QualificationKind.code
    kind = db.session.scalar(sa.select(QualificationKind).where(column == code_or_id))
    if kind is None:
        raise NotFound(f"No qualification kind {code_or_id}.")
    return kind


def get_qualification(qualification_id: int, *, for_update: bool = False) -> Qualification:
    query = sa.select(Qualification).where(Qualification.id == qualification_id)
    record = db.session.scalar(query.with_for_update() if for_update else query)
    if record is None:
        raise NotFound(f"No qualification {qualification_id}.")
    return record


def _person(user_id: int | None, username: str | None) -> User:
    if user_id is not None:
        person = db.session.scalar(sa.select(User).where(User.id == user_id).with_for_update())
    elif username:
        person = db.session.scalar(sa.select(User).where(User.username == username.strip()).with_for_update())
    else:
        raise InvalidInput("Name the person: user_id or username.", field="user_id")
    if person is None:
        raise NotFound(f"No user {user_id if user_id is not None else username}.")
    if not person.active:
        raise InvalidState(f"{person.display_name}'s account is deactivated.", field="user_id")
    return person


@transactional
def record_qualification(actor: User | None, *, kind: str, passed_on: date, result: str,
                         user_id: int | None = None, username: str | None = None, cfu: int | None = None,
                         valid_until: date | None = None, assessor: str = "", note: str = "") -> Qualification:
    """Record one result for one person (`actor` None: the command line or the demo data)."""
    if actor is not None:
        ensure_can(actor, "qualifications.record", "record qualifications")
    person = _person(user_id, username)  # locked: an initial series is judged against the records before it
    if actor is not None and actor.id == person.id:
        raise NotAllowed("You cannot record your own qualification: another pharmacist or an administrator "
                         "records it.")
    qualification_kind = get_kind(kind)
    if not qualification_kind.active:
        raise InvalidState(f"{qualification_kind.name} is no longer recorded.", field="kind")
    if result not in QUALIFICATION_RESULTS:
        raise InvalidInput("The result is pass or fail.", field="result")
    if not isinstance(passed_on, date) or isinstance(passed_on, datetime):
        raise InvalidInput("The date it was passed or failed, e.g. 2026-11-30.", field="passed_on")
    if passed_on > clinic_today():
        raise InvalidInput(f"{passed_on.isoformat()} is in the future: record a result once it is known.",
                           field="passed_on")
    assessor = checked_text(assessor, "assessor", NAME_MAX)
    note = checked_text(note, "note", NOTE_MAX)
    cfu = _checked_cfu(qualification_kind, person, passed_on, result, cfu)
    longest = add_months(passed_on, qualification_kind.valid_months)
    if result == "fail":
        if valid_until is not None:
            raise InvalidInput("A failed result is valid for nothing: leave valid until empty.", field="valid_until")
    elif valid_until is None:
        valid_until = longest
    elif valid_until <= passed_on:
        raise InvalidInput(f"Valid until {valid_until.isoformat()} is not after the day it was passed "
                           f"({passed_on.isoformat()}).", field="valid_until")
    elif valid_until > longest:
        raise InvalidInput(f"{qualification_kind.name} stands at most {qualification_kind.valid_months} months: "
                           f"until {longest.isoformat()}.", field="valid_until")
    record = Qualification(user_id=person.id, kind_id=qualification_kind.id, passed_on=passed_on, result=result,
                           cfu=cfu, valid_until=valid_until, assessor=assessor, note=note,
                           recorded_by_id=actor.id if actor else None, recorded_at=utcnow())
    db.session.add(record)
    db.session.flush()
    # A fail dated back reaches what the person made or verified since: named here, refused at verification.
    since = batches_since(person.id, passed_on) if result == "fail" and passed_on < clinic_today() else []
    audit.record(actor, "qualification.recorded", "qualification", record.id, new={
        "user": person.username, "kind": qualification_kind.code, "passed_on": passed_on, "result": result,
        "cfu": cfu, "valid_until": valid_until, "assessor": assessor, "note": note,
        **({"batches_since": since} if since else {})})
    record.batches_since = since
    return record


def batches_since(user_id: int, day: date) -> list[str]:
    """Codes of the batches a person compounded or verified from the start of `day` (the clinic's), oldest first."""
    start = start_of_clinic_day(day)
    return list(db.session.scalars(sa.select(Batch.code).where(
        sa.or_(sa.and_(Batch.compounded_by_id == user_id, Batch.compounded_at >= start),
               sa.and_(Batch.verified_by_id == user_id, Batch.verified_at >= start)))
        .order_by(Batch.compounded_at, Batch.id)))


def _checked_cfu(kind: QualificationKind, person: User, passed_on: date, result: str, cfu) -> int | None:
    if not kind.counts_cfu:
        if cfu not in (None, ""):
            raise InvalidInput(f"{kind.name} counts no colony-forming units: leave the count empty.", field="cfu")
        return None
    if cfu in (None, ""):
        raise InvalidInput(f"{kind.name}: give the colony-forming units counted (0 or more).", field="cfu")
    text = str(cfu).strip()
    if isinstance(cfu, bool) or not (isinstance(cfu, int) or text.isascii() and text.isdigit()) \
            or not 0 <= int(text) <= CFU_MAX:
        raise InvalidInput(f"Colony-forming units are a whole number from 0 to {CFU_MAX}.", field="cfu")
    count = int(text)
    if result == "pass":
        earlier = records_of([person.id], [kind.id]).get((person.id, kind.id), [])
        standing = judge(kind, earlier, passed_on)
        established = standing.state in ("valid", "due_soon", "lapsed") or (
            standing.state == "failed" and standing.passes >= kind.initial_passes)
        limit = ROUTINE_CFU_MAX if established else INITIAL_CFU_MAX
        if count > limit:
            which = "a routine sampling" if established else "an initial qualification"
            raise InvalidInput(f"{count} CFU fails {which} ({kind.name} passes at {limit} CFU or fewer): "
                               "record it as a fail.", field="cfu")
    return count


@transactional
def void_qualification(actor: User, qualification_id: int, reason: str) -> Qualification:
    """A record entered by mistake stops counting; it stays, struck through, with who voided it and why."""
    ensure_can(actor, "qualifications.record", "void qualifications")
    reason = checked_text(reason, "reason", REASON_MAX, required="Say why the record is voided.")
    record = get_qualification(qualification_id, for_update=True)
    if record.user_id == actor.id:
        raise NotAllowed("You cannot void your own qualification record: another pharmacist or an administrator "
                         "does.")
    if record.voided_at is not None:
        raise InvalidState("This record is already voided.")
    record.voided_at, record.voided_by_id, record.void_reason = utcnow(), actor.id, reason
    audit.record(actor, "qualification.voided", "qualification", record.id,
                 old={"voided": False}, new={"voided": True}, reason=reason)
    return record


@transactional
def create_kind(actor: User, *, code: str, name: str, valid_months: int = 6, category3_months: int = 3,
                initial_passes: int = 1, counts_cfu: bool = False, required: bool = False) -> QualificationKind:
    """An admin adds a kind (`aseptic_technique`): its interval, initial series, whether compounding needs it."""
    ensure_can(actor, "qualifications.kinds", "add qualification kinds")
    code = (code or "").strip().lower()
    if not KIND_CODE.match(code):
        raise InvalidInput(f"A kind's code has 2 to {LABEL_MAX} lower-case letters, digits or underscores, "
                           "starting with a letter (aseptic_technique).", field="code")
    if db.session.scalar(sa.select(QualificationKind.id).where(QualificationKind.code == code)) is not None:
        raise InvalidState(f"Qualification kind {code} exists already.", field="code")
    kind = QualificationKind(code=code, builtin=False, created_by_id=actor.id,
                             **_checked_kind(name, valid_months, category3_months, initial_passes,
                                             counts_cfu, required))
    db.session.add(kind)
    db.session.flush()
    audit.created(actor, "qualification_kind.created", kind, ("code",) + KIND_FIELDS)
    return kind


@transactional
def update_kind(actor: User, kind_id: int, *, name: str, valid_months: int, category3_months: int,
                initial_passes: int, counts_cfu: bool, required: bool, active: bool) -> QualificationKind:
    """Change a kind from now on (records already made keep the `valid_until` they were given)."""
    ensure_can(actor, "qualifications.kinds", "change qualification kinds")
    kind = db.session.scalar(sa.select(QualificationKind).where(QualificationKind.id == kind_id).with_for_update())
    if kind is None:
        raise NotFound(f"No qualification kind {kind_id}.")
    values = _checked_kind(name, valid_months, category3_months, initial_passes, counts_cfu, required)
    if kind.builtin and (values["counts_cfu"] != kind.counts_cfu or values["initial_passes"] != kind.initial_passes):
        raise InvalidState(f"{kind.name} is defined by USP <797>: its initial series and CFU count stay.")
    fixed = ("initial_passes", "counts_cfu", "category3_months")
    if any(values[key] != getattr(kind, key) for key in fixed) and db.session.scalar(
            sa.select(sa.exists().where(Qualification.kind_id == kind.id))):
        raise InvalidState(f"{kind.name} has records already made: its initial series, CFU count and Category 3 "
                           "interval would judge them again. Add a new kind instead (and stop requiring this one).")
    with audit.change(actor, "qualification_kind.updated", kind, KIND_FIELDS):
        for key, value in values.items():
            setattr(kind, key, value)
        kind.active = bool(active)
    return kind


def _checked_kind(name, valid_months, category3_months, initial_passes, counts_cfu, required) -> dict:
    name = checked_text(name, "name", NAME_MAX, required="Name the kind.")
    values = {}
    for field, value, low, high in (("valid_months", valid_months, 1, 60),
                                    ("category3_months", category3_months, 1, 60),
                                    ("initial_passes", initial_passes, 1, 10)):
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise InvalidInput(f"A whole number from {low} to {high}.", field=field) from None
        if not low <= number <= high:
            raise InvalidInput(f"A whole number from {low} to {high}.", field=field)
        values[field] = number
    if values["category3_months"] > values["valid_months"]:
        raise InvalidInput("Category 3's interval is not longer than the usual one.", field="category3_months")
    return {"name": name, **values, "counts_cfu": bool(counts_cfu), "required": bool(required)}
