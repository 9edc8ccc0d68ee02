"""The daily digest of one site: what its pharmacists must act on today (DESIGN 10.7).

`build` reads it (a fixed handful of statements, whatever the size of the site); `prepare_due`
writes it, once a day per site, as one e-mail per pharmacist into the mail outbox
(`MailMessage`, sent by services.mail). Without a mail server the outbox stays empty and the
digest is read on its page (`/digest`) only.

Who gets it: the active pharmacists who are members of the site (`user_sites`) and have an
e-mail address. A chain-wide pharmacist (`all_sites`) gets the digests of the sites they are a
member of, not one per site of the chain: a chain of twenty clinics would otherwise fill their
mailbox with twenty digests each morning.

A day with nothing to act on still sends a short "nothing needs you today": a digest that stops
arriving then means something is wrong, never that all is well.
"""

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.exc import IntegrityError

from ..extensions import db
from ..models import (
    Batch,
    BatchStatus,
    Formula,
    Ingredient,
    Lot,
    MailMessage,
    Recall,
    RecallStatus,
    SessionUse,
    Site,
    TreatmentSession,
    User,
    UserSite,
    Vial,
)
from ..models.vial import VialStatus
from ..queries.lots import IN_STOCK
from . import audit, cold_chain, recalls
from . import dashboard as figures
from .clock import utcnow
from .errors import InvalidInput
from .expiry import expired_clause, last_usable_day
from .site_filters import batch_at_sites
from .transaction import transaction

# Each list of a digest shows at most this many rows, and says how many more there are.
SECTION_ROWS = 50
RECIPIENT_ROLE = "pharmacist"
_BATCHES_DONE = (BatchStatus.DISCARDED, BatchStatus.DEPLETED, BatchStatus.REJECTED)
_VIALS_LIVE = (VialStatus.SEALED, VialStatus.OPEN, VialStatus.ON_HOLD, VialStatus.RECALLED)


@dataclass
class Section:
    """One part of a digest: its rows (at most SECTION_ROWS) and how many there are in all."""

    title: str
    rows: list
    total: int
    # How the subject line and the dashboard count it: one ..., several ...
    one: str = ""
    several: str = ""

    @property
    def counted(self) -> str:
        return f"{self.total} {self.one if self.total == 1 else self.several}"

    @property
    def more(self) -> int:
        return max(0, self.total - len(self.rows))


@dataclass
class Digest:
    site_id: int
    site_code: str
    site_name: str
    timezone: str
    day: date
    expiry_days: int
    lots: Section
    batches: Section
    excursions: Section
    missed_readings: Section
    qualifications: Section
    equipment: Section
    recalls: Section
    prepared_at: datetime = field(default_factory=utcnow)
    # Prepared after its day ended at the site (send-digests --date): judged on the data of `prepared_at`.
    late: bool = False

    @property
    def sections(self) -> list[Section]:
        return [self.lots, self.batches, self.excursions, self.missed_readings, self.qualifications,
                self.equipment, self.recalls]

    @property
    def empty(self) -> bool:
        return not any(section.total for section in self.sections)

    def local(self, moment: datetime | None) -> str:
        """A moment as the site's people read it (their zone)."""
        if moment is None:
            return ""
        return moment.astimezone(ZoneInfo(self.timezone)).strftime("%Y-%m-%d %H:%M")

    @property
    def counts(self) -> list[tuple[str, int]]:
        """What the dashboard's panel and the subject line say: the non-empty sections and their counts."""
        return [(section.title, section.total) for section in self.sections if section.total]

    @property
    def summary(self) -> str:
        if self.empty:
            return "nothing needs you today"
        return ", ".join(section.counted for section in self.sections if section.total)

    @property
    def subject(self) -> str:
        return f"Digest {self.site_code} {self.day.isoformat()}: {self.summary}"[:200]


def _zone(site: Site) -> ZoneInfo:
    return ZoneInfo(site.timezone)


def _lots(site: Site, now: datetime, days: int) -> Section:
    """Lots in stock at the site expiring within `days` (or already expired), soonest first. Expired is the
    application's one rule (services.expiry, the clinic's day), as on every page and at the scan."""
    rows = db.session.execute(
        sa.select(Lot.id, Lot.code, Lot.expires_on, Lot.remaining, Lot.status, Ingredient.name.label("ingredient"),
                  Ingredient.unit, expired_clause(Lot.expires_on, now).label("expired"),
                  sa.func.count().over().label("total"))
        .join(Ingredient, Ingredient.id == Lot.ingredient_id)
        .where(Lot.site_id == site.id, Lot.status.in_(IN_STOCK), Lot.remaining > 0,
               Lot.expires_on <= last_usable_day(now) + timedelta(days=days))
        .order_by(Lot.expires_on, Lot.code).limit(SECTION_ROWS)).all()
    return Section("Lots expiring", rows, rows[0].total if rows else 0, "lot expiring", "lots expiring")


def _batches(site: Site, now: datetime) -> Section:
    """Batches seen at the site (its own, or with a vial there) past their BUD with volume left, and the live
    vials of each at the site."""
    vials_here = (sa.select(sa.func.count(Vial.id))
                  .where(Vial.batch_id == Batch.id, Vial.site_id == site.id, Vial.status.in_(_VIALS_LIVE))
                  .correlate(Batch).scalar_subquery())
    rows = db.session.execute(
        sa.select(Batch.id, Batch.code, Batch.beyond_use_at, Batch.remaining_volume_ml, Batch.status,
                  Formula.name.label("formula"), vials_here.label("vials"), sa.func.count().over().label("total"))
        .join(Formula, Formula.id == Batch.formula_id)
        .where(batch_at_sites({site.id}), Batch.status.not_in(_BATCHES_DONE), Batch.beyond_use_at <= now,
               Batch.remaining_volume_ml > 0)
        .order_by(Batch.beyond_use_at, Batch.code).limit(SECTION_ROWS)).all()
    return Section("Batches past their BUD", rows, rows[0].total if rows else 0, "batch past its BUD",
                   "batches past their BUD")


def _recalls(site: Site) -> Section:
    """Open recalls with patients treated at the site who have no outcome that counts yet: three statements."""
    open_rows = db.session.execute(
        sa.select(Recall.id, Recall.opened_at, Lot.code.label("lot_code"), Batch.code.label("batch_code"))
        .outerjoin(Lot, Lot.id == Recall.lot_id).outerjoin(Batch, Batch.id == Recall.batch_id)
        .where(Recall.status == RecallStatus.OPEN).order_by(Recall.opened_at)).all()
    if not open_rows:
        return _recall_section([])
    ids = [row.id for row in open_rows]
    targets = recalls.reached_batches(ids)
    treated = db.session.execute(
        sa.select(targets.c.recall_id, TreatmentSession.patient_id)
        .join(SessionUse, SessionUse.batch_id == targets.c.batch_id)
        .join(TreatmentSession, TreatmentSession.id == SessionUse.session_id)
        .where(TreatmentSession.site_id == site.id).distinct()).all()
    # The one rule of what counts as reached (recalls.counted_outcomes), for these patients only.
    counted = set(db.session.execute(
        recalls.counted_outcomes(ids, {row.patient_id for row in treated})).all()) if treated else set()
    waiting: dict[int, int] = {}
    for row in treated:
        if (row.recall_id, row.patient_id) not in counted:
            waiting[row.recall_id] = waiting.get(row.recall_id, 0) + 1
    rows = [RecallDue(row.id, row.lot_code or row.batch_code, "lot" if row.lot_code else "batch", row.opened_at,
                      waiting[row.id]) for row in open_rows if waiting.get(row.id)]
    return _recall_section(rows)


def _recall_section(rows: list) -> Section:
    return Section("Recalls with patients not reached", rows[:SECTION_ROWS], len(rows),
                   "recall with patients not reached", "recalls with patients not reached")


@dataclass(frozen=True)
class RecallDue:
    id: int
    code: str
    kind: str
    opened_at: datetime
    not_reached: int


def build(site: Site, today: date | None = None, *, now: datetime | None = None) -> Digest:
    """The digest of `site` for its day `today` (default: the site's today), judged at `now`: read only.

    About ten statements whatever the site's size: one per section (qualifications: three;
    recalls: two), each row carrying its section's total.
    """
    now = now or utcnow()
    today = today or now.astimezone(_zone(site)).date()
    days = current_app.config["DIGEST_EXPIRY_DAYS"]
    scope = frozenset({site.id})
    excursions = figures.open_excursions(limit=SECTION_ROWS, site_ids=scope)
    missed = cold_chain.missed_readings(scope, now=now)
    people, people_total = figures.qualifications_due(today, SECTION_ROWS, site_ids=scope, members_only=True)
    equipment = figures.equipment_due(today, SECTION_ROWS, site_ids=scope, days=figures.EQUIPMENT_DUE_DAYS)
    return Digest(
        site_id=site.id, site_code=site.code, site_name=site.name, timezone=site.timezone, day=today,
        expiry_days=days, prepared_at=now, late=today < now.astimezone(_zone(site)).date(),
        lots=_lots(site, now, days),
        batches=_batches(site, now),
        excursions=Section("Open excursions", list(excursions), excursions[0].total if excursions else 0,
                           "open excursion", "open excursions"),
        missed_readings=Section("Missed readings", missed[:SECTION_ROWS], len(missed), "missed reading",
                                "missed readings"),
        qualifications=Section("Qualifications due", people, people_total, "qualification due",
                               "qualifications due"),
        equipment=Section("Equipment due", list(equipment), equipment[0].total if equipment else 0,
                          "calibration due", "calibrations due"),
        recalls=_recalls(site),
    )


def digest_for(user: User, site: Site, *, now: datetime | None = None) -> Digest:
    """Today's digest of `site` as `user` reads it on the page (the same as the mail of that day)."""
    return build(site, now=now)


def counts(site_id: int, *, now: datetime | None = None) -> dict[str, int]:
    """The dashboard panel's figures for one site, in one statement: lots expired in stock and lots expiring
    within DIGEST_EXPIRY_DAYS (as the stock tiles count them: services.expiry), batches past their BUD, open
    excursions and equipment due (the page has the rest)."""
    from ..models import Equipment, Excursion

    now = now or utcnow()
    site = db.session.get(Site, site_id)
    today = now.astimezone(_zone(site)).date()
    usable = last_usable_day(now)
    days = current_app.config["DIGEST_EXPIRY_DAYS"]

    def count(model, *where):
        return sa.select(sa.func.count(model.id)).where(*where).scalar_subquery()

    row = db.session.execute(sa.select(
        count(Lot, Lot.site_id == site_id, Lot.status.in_(IN_STOCK), Lot.remaining > 0,
              expired_clause(Lot.expires_on, now)).label("expired"),
        count(Lot, Lot.site_id == site_id, Lot.status.in_(IN_STOCK), Lot.remaining > 0, Lot.expires_on >= usable,
              Lot.expires_on <= usable + timedelta(days=days)).label("lots"),
        count(Batch, batch_at_sites({site_id}), Batch.status.not_in(_BATCHES_DONE), Batch.beyond_use_at <= now,
              Batch.remaining_volume_ml > 0).label("batches"),
        count(Excursion, Excursion.site_id == site_id, Excursion.decided_at.is_(None)).label("excursions"),
        count(Equipment, Equipment.site_id == site_id, Equipment.active,
              sa.or_(Equipment.out_of_service,
                     Equipment.due_on <= today + timedelta(days=figures.EQUIPMENT_DUE_DAYS))).label("equipment"),
    )).one()
    return row._asdict() | {"expiry_days": days}


# --- the outbox -----------------------------------------------------------------------------------------------


def mail_configured() -> bool:
    """Whether digests go out by e-mail at all (MAIL_SERVER set); otherwise they are read on their page."""
    return bool(current_app.config.get("MAIL_SERVER"))


DEFAULT_BASE_URL = "http://127.0.0.1:5000"


def base_url_left_default() -> bool:
    """Mail goes out but BASE_URL was never set: its links would point at the server's own loopback."""
    return mail_configured() and (current_app.config.get("BASE_URL") or DEFAULT_BASE_URL) == DEFAULT_BASE_URL


BASE_URL_WARNING = ("BASE_URL is left at its default (http://127.0.0.1:5000): the links in the e-mails lead "
                    "nowhere outside this server. Set BASE_URL to the address people open the application at.")


def link(endpoint: str, **values) -> str:
    """An absolute address of a page, for a mail read outside the application (BASE_URL)."""
    base = urlsplit(current_app.config.get("BASE_URL") or DEFAULT_BASE_URL)
    adapter = current_app.url_map.bind(base.netloc, script_name=base.path or "/", url_scheme=base.scheme or "http")
    return adapter.build(endpoint, values, force_external=True)


def render(digest: Digest, recipient: User) -> tuple[str, str]:
    """The text and HTML bodies of one pharmacist's digest."""
    env = current_app.jinja_env
    # `mail`: the shared sections carry inline styles (mail clients drop stylesheets), not the page's classes.
    context = {"digest": digest, "recipient": recipient, "link": link, "mail": True,
               "clinic_name": current_app.config.get("CLINIC_NAME", "")}
    return (env.get_template("mail/digest.txt").render(**context),
            env.get_template("mail/digest.html").render(**context))


def recipients(site_id: int, day: date) -> list[User]:
    """The site's active pharmacists with an address who have no digest of that day yet: one statement."""
    already = sa.exists().where(MailMessage.kind == "digest", MailMessage.site_id == site_id,
                                MailMessage.digest_date == day, MailMessage.recipient_id == User.id)
    member = sa.exists().where(UserSite.user_id == User.id, UserSite.site_id == site_id)
    return list(db.session.scalars(
        sa.select(User).where(User.active, User.role == RECIPIENT_ROLE, User.email.is_not(None), User.email != "",
                              member, ~already).order_by(User.id)))


def still_entitled(recipient_id: int, site_id: int) -> tuple[str, str]:
    """Whether a message written for this person and site may still go to them, asked again when it is sent:
    ("", their address now) or (why not, ""). The same rule as `recipients`, in one statement."""
    member = sa.exists().where(UserSite.user_id == User.id, UserSite.site_id == site_id)
    row = db.session.execute(
        sa.select(User.active, User.role, User.email, member.label("member"), Site.active.label("site_active"))
        .join(Site, Site.id == site_id).where(User.id == recipient_id)).one()
    if not row.active:
        return "the recipient's account is no longer active.", ""
    if row.role != RECIPIENT_ROLE:
        return f"the recipient is no longer a {RECIPIENT_ROLE}.", ""
    if not row.member:
        return "the recipient is no longer a member of the site.", ""
    if not row.site_active:
        return "the site is no longer active.", ""
    if not row.email:
        return "the recipient has no e-mail address any more.", ""
    return "", row.email


@dataclass
class Prepared:
    site_code: str
    day: date
    recipients: list[str]


def due_sites(now: datetime, *, site_code: str | None = None, day: date | None = None,
              ignore_hour: bool = False) -> list[tuple[Site, date]]:
    """(site, day) of each active site whose own clock has reached DIGEST_HOUR today (or every one asked for)."""
    query = sa.select(Site).where(Site.active).order_by(Site.code)
    if site_code:
        query = query.where(Site.code == site_code.strip().upper())
    hour = current_app.config["DIGEST_HOUR"]
    due = []
    for site in db.session.scalars(query):
        local = now.astimezone(_zone(site))
        if day is None and not ignore_hour and local.hour < hour:
            continue
        due.append((site, day or local.date()))
    return due


def prepare_due(now: datetime | None = None, *, site_code: str | None = None, day: date | None = None,
                ignore_hour: bool = False) -> list[Prepared]:
    """Write today's digest of each due site into the outbox, one message per recipient.

    Safe to run often and on two workers at once: a site whose recipients all have their
    message is skipped before anything is read, and the unique (kind, site, day, recipient)
    key turns a second writer's insert into an IntegrityError, its site's work rolled back.
    One transaction per site, with an audit row; a site whose digest fails is logged and the
    others go on. The older digests of the same site still waiting for the same people (pending
    or failed) become `superseded`: a stale digest is not sent days later.

    `day` (send-digests --date) may not be after the site's today (that day has not begun: its
    digest would be judged on today's data and take that day's place); a past day is prepared
    judged now, and says so ("Prepared late"). Without MAIL_SERVER nothing is written.
    """
    if not mail_configured():
        return []
    now = now or utcnow()
    due = due_sites(now, site_code=site_code, day=day, ignore_hour=ignore_hour)
    for site, site_day in due:
        if site_day > now.astimezone(_zone(site)).date():
            raise InvalidInput(f"The digest of {site_day.isoformat()} cannot be prepared: that day has not begun "
                               f"at site {site.code} ({site.timezone}).", field="day")
    prepared = []
    for site, site_day in due:
        try:
            item = _prepare_site(site, site_day, now)
        except Exception:  # noqa: BLE001 (one site's fault must not keep the others' digests back)
            current_app.logger.exception("The digest of site %s for %s could not be prepared.", site.code, site_day)
            db.session.rollback()
            continue
        if item is not None:
            prepared.append(item)
    return prepared


def _prepare_site(site: Site, site_day: date, now: datetime) -> Prepared | None:
    people = recipients(site.id, site_day)
    if not people:
        return None
    digest = build(site, site_day, now=now)
    try:
        with transaction():
            for person in people:
                text, html = render(digest, person)
                db.session.add(MailMessage(kind="digest", site_id=site.id, digest_date=site_day,
                                           recipient_id=person.id, to_address=person.email,
                                           subject=digest.subject, body_text=text, body_html=html,
                                           status="pending", created_at=now))
            db.session.flush()
            _supersede(site.id, site_day, [person.id for person in people])
            audit.record(None, "digest.prepared", "site", site.id,
                         new={"day": site_day.isoformat(), "recipients": [p.username for p in people],
                              "summary": digest.summary})
    except IntegrityError:  # another worker wrote this site's digests first
        return None
    return Prepared(site.code, site_day, [p.email for p in people])


def _supersede(site_id: int, day: date, recipient_ids: list[int]) -> None:
    """Older digests of this site still waiting for these people (pending or failed) will not be sent: the
    new one says what is true now. A message a worker holds (`sending`) is left to it."""
    stale = db.session.scalars(
        sa.select(MailMessage).where(MailMessage.kind == "digest", MailMessage.site_id == site_id,
                                     MailMessage.recipient_id.in_(recipient_ids), MailMessage.digest_date < day,
                                     MailMessage.status.in_(("pending", "failed")))
        .order_by(MailMessage.id).with_for_update()).all()
    for message in stale:
        audit.record(None, "mail.superseded", "mail_message", message.id,
                     old={"status": message.status}, new={"status": "superseded", "by_day": day.isoformat()})
        message.status = "superseded"
        message.next_attempt_at = None


def failed_count() -> int:
    """Messages the mail server never took (status failed): the admin's dashboard banner."""
    return db.session.scalar(sa.select(sa.func.count(MailMessage.id)).where(MailMessage.status == "failed"))

