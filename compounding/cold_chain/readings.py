"""Cold chain pages: the overview of monitored locations, the reading page by the fridge, a location's log.

The reading page is made for a tablet fixed by the fridge: its label's barcode (the location's
code) is scanned into one field, then the thermometer's values are typed. The moment is typed
in the site's own time (the page needs no offset) and converted with the site's zone.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from flask import abort, current_app, redirect, render_template, request, url_for
from flask_login import current_user
from wtforms import DateTimeLocalField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional, Regexp

from ..extensions import db
from ..forms import AppForm, apply_domain_error, in_day_range
from ..limits import NOTE_MAX, SCAN_MAX
from ..models import Excursion, ExcursionItem, Location, Site, TemperatureReading, User
from ..pagination import paginate_rows
from ..security import requires
from ..services import cold_chain, sites
from ..services.clock import clinic_today, utcnow
from ..services.errors import DomainError
from ..services.site_filters import at_sites
from ..services.transaction import transaction
from ..site_scope import current_scope
from .views import bp

# A thermometer's display: a sign, up to three digits, a decimal point or comma and two decimals at most.
# No thousands separator: "1.234" would be ambiguous. The span (-90 to 60 °C) is the service's check.
DEGREES = Regexp(r"^\s*[-−]?\d{1,3}([.,]\d{1,2})?\s*$", message="Degrees Celsius as the thermometer shows them, "
                                                                 "e.g. 4.5 or -18.")
MOMENT_FORMAT = "%Y-%m-%dT%H:%M"
LOG_PER_PAGE = 50


class ReadingForm(AppForm):
    celsius = StringField("Current temperature (°C)", validators=[DataRequired("Type the temperature shown now."),
                                                                   DEGREES],
                          render_kw={"inputmode": "decimal", "autocomplete": "off", "autofocus": True})
    min_celsius = StringField("Minimum since reset (°C)", validators=[Optional(), DEGREES],
                              render_kw={"inputmode": "decimal", "autocomplete": "off"})
    max_celsius = StringField("Maximum since reset (°C)", validators=[Optional(), DEGREES],
                              render_kw={"inputmode": "decimal", "autocomplete": "off"})
    measured_at = DateTimeLocalField("Measured at", format=MOMENT_FORMAT, validators=[Optional(), in_day_range],
                                     description="The site's own time; leave it for now.")
    note = TextAreaField("Note", validators=[Optional(), Length(max=NOTE_MAX)], render_kw={"rows": 2})


def site_time(value: datetime | None, zone: str, with_zone: bool = True) -> str:
    """A moment as the site's clock showed it."""
    if value is None:
        return ""
    local = value.astimezone(ZoneInfo(zone))
    return f"{local:%Y-%m-%d %H:%M} {local.tzname()}" if with_zone else f"{local:%Y-%m-%d %H:%M}"


bp.add_app_template_filter(site_time, "site_time")


def url_if(endpoint: str, **values) -> str | None:
    """The URL of a page another part of the cold chain may not have built yet (None until it exists)."""
    return url_for(endpoint, **values) if endpoint in current_app.view_functions else None


def excursion_url(excursion_id: int | None) -> str | None:
    if excursion_id is None:
        return None
    for endpoint in ("cold_chain.excursion_detail", "cold_chain.excursion"):
        if endpoint in current_app.view_functions:
            return url_for(endpoint, excursion_id=excursion_id)
    return None


def excursion_code(excursion_id: int | None) -> str:
    return f"E{excursion_id:06d}" if excursion_id else ""


@bp.app_context_processor
def _cold_chain_links():
    return {"excursion_url": excursion_url, "excursion_code": excursion_code, "range_text": cold_chain.range_text}


# --- reads ----------------------------------------------------------------------------------------

def _monitored():
    return sa.and_(Location.active, sa.or_(Location.min_celsius.is_not(None), Location.max_celsius.is_not(None)))


def overview_query(site_ids):
    """Monitored locations of these sites with their site, last reading and open excursion: one statement."""
    last_id = (sa.select(TemperatureReading.id).where(TemperatureReading.location_id == Location.id)
               .order_by(TemperatureReading.measured_at.desc(), TemperatureReading.id.desc()).limit(1)
               .correlate(Location).scalar_subquery())
    open_excursion = (sa.select(Excursion.id).where(Excursion.location_id == Location.id, Excursion.ended_at.is_(None))
                      .order_by(Excursion.started_at).limit(1).correlate(Location).scalar_subquery())
    return (sa.select(Location, Site.code.label("site_code"), Site.timezone.label("zone"), TemperatureReading,
                      open_excursion.label("excursion_id"))
            .join(Site, Site.id == Location.site_id)
            .outerjoin(TemperatureReading, TemperatureReading.id == last_id)
            .where(_monitored(), at_sites(Location.site_id, site_ids))
            .order_by(Site.code, Location.code))


@dataclass(frozen=True)
class Monitored:
    """A row of the overview: where, the last reading, and its state (in_range, out, missed, none)."""

    location: Location
    site_code: str
    zone: str
    last: TemperatureReading | None
    excursion_id: int | None
    state: str
    due_at: datetime


def monitored_rows(rows, now: datetime) -> list[Monitored]:
    found = []
    for location, site_code, zone, last, excursion_id in rows:
        since = last.measured_at if last is not None else location.created_at
        due = since + cold_chain.overdue_after(location)
        state = "out" if excursion_id else "missed" if due <= now else "in_range" if last is not None else "none"
        found.append(Monitored(location, site_code, zone, last, excursion_id, state, due))
    return found


def log_query(location_id: int):
    """A location's readings, newest first, with who recorded them."""
    return (sa.select(TemperatureReading, User.display_name)
            .outerjoin(User, User.id == TemperatureReading.recorded_by_id)
            .where(TemperatureReading.location_id == location_id)
            .order_by(TemperatureReading.measured_at.desc(), TemperatureReading.id.desc()))


def _visible_location(location_id: int) -> tuple[Location, Site]:
    """A location of the viewer's sites (whatever the switcher shows), with its site; 404 otherwise."""
    row = db.session.execute(sa.select(Location, Site).join(Site, Site.id == Location.site_id)
                             .where(Location.id == location_id)).first()
    seen = sites.visible_site_ids(current_user)
    if row is None or (seen is not None and row[0].site_id not in seen):
        abort(404)
    return row[0], row[1]


def _outcome(reading_id: int | None):
    """The reading just recorded, for its confirmation: (reading, location, site, excursion, opened, held)."""
    if reading_id is None:
        return None
    row = db.session.execute(sa.select(TemperatureReading, Location, Site, Excursion)
                             .join(Location, Location.id == TemperatureReading.location_id)
                             .join(Site, Site.id == Location.site_id)
                             .outerjoin(Excursion, Excursion.id == TemperatureReading.excursion_id)
                             .where(TemperatureReading.id == reading_id)).first()
    seen = sites.visible_site_ids(current_user)
    if row is None or (seen is not None and row[0].site_id not in seen):
        return None
    reading, location, site, excursion = row
    held = 0
    if excursion is not None:
        held = db.session.scalar(sa.select(sa.func.count(ExcursionItem.id))
                                 .where(ExcursionItem.excursion_id == excursion.id))
    opened = excursion is not None and excursion.held_at == reading.recorded_at
    return {"reading": reading, "location": location, "site": site, "excursion": excursion, "opened": opened,
            "held": held}


# --- pages ----------------------------------------------------------------------------------------

@bp.route("/cold-chain")
@requires("coldchain.read")
def overview():
    pagination = paginate_rows(overview_query(current_scope()))
    return render_template("cold_chain/overview.html", pagination=pagination,
                           rows=monitored_rows(pagination.items, utcnow()),
                           excursions_url=url_if("cold_chain.excursions"),
                           report_month=clinic_today().strftime("%Y-%m"),
                           has_reports="cold_chain.report" in current_app.view_functions)


@bp.route("/cold-chain/read")
@requires("readings.record")
def read_scan():
    """The scan field: a location's code (its label's barcode) leads to its reading form."""
    raw = (request.args.get("code") or "")[:SCAN_MAX]
    code = raw.strip().upper()
    error, status = None, 200
    if code:
        location_id = db.session.scalar(sa.select(Location.id).where(Location.code == code))
        seen = sites.visible_site_ids(current_user)
        site_id = db.session.scalar(sa.select(Location.site_id).where(Location.id == location_id)) \
            if location_id is not None else None
        if location_id is None or (seen is not None and site_id not in seen):
            error, status = f"There is no location {code} at your sites: scan the label on the fridge.", 404
        else:
            return redirect(url_for("cold_chain.read_location", location_id=location_id))
    outcome = _outcome(request.args.get("done", type=int))
    return render_template("cold_chain/read.html", location=None, form=None, code=code, scan_error=error,
                           outcome=outcome), status


def _now_at(site: Site) -> datetime:
    """Now on the site's clock, to the minute, as the form's field shows it (no zone: the site's is meant)."""
    return utcnow().astimezone(ZoneInfo(site.timezone)).replace(second=0, microsecond=0, tzinfo=None)


@bp.route("/cold-chain/locations/<int:location_id>/read", methods=["GET", "POST"])
@requires("readings.record")
def read_location(location_id: int):
    location, site = _visible_location(location_id)
    form = ReadingForm()
    refusal = None
    try:
        cold_chain.monitored_location(location.id)
    except DomainError as exc:
        refusal = exc.message
    if request.method == "GET" and form.measured_at.data is None:
        form.measured_at.data = _now_at(site)

    def record():
        typed = form.measured_at.data
        moment = (cold_chain.local_moment(typed, ZoneInfo(site.timezone),
                                          hint="Type the time as the clock showed it an hour later or earlier.")
                  if typed is not None else utcnow() - timedelta(seconds=1))
        return cold_chain.record_reading(
            current_user, location.id, measured_at=moment.isoformat(), celsius=_dot(form.celsius.data),
            min_celsius=_dot(form.min_celsius.data), max_celsius=_dot(form.max_celsius.data),
            source="manual", note=form.note.data or "")

    status = 200
    if request.method == "POST":
        status = 422
        if form.validate_on_submit():
            try:
                with transaction():
                    reading = record()
            except DomainError as exc:
                apply_domain_error(form, exc)
                status = exc.status_code
            else:
                return redirect(url_for("cold_chain.read_scan", done=reading.id))
    return render_template("cold_chain/read.html", location=location, site=site, form=form, code=location.code,
                           scan_error=None, outcome=None, refusal=refusal), status


def _dot(value: str | None) -> str | None:
    """The typed number with a dot for a decimal sign and a plain minus (a phone's keyboard may type '−')."""
    if value is None or not value.strip():
        return None
    return value.strip().replace(",", ".").replace("−", "-")


@bp.route("/cold-chain/locations/<int:location_id>")
@requires("coldchain.read")
def location_log(location_id: int):
    location, site = _visible_location(location_id)
    pagination = paginate_rows(log_query(location.id), per_page=LOG_PER_PAGE,
                               keys=sa.select(TemperatureReading.id)
                               .where(TemperatureReading.location_id == location.id)
                               .order_by(TemperatureReading.measured_at.desc(), TemperatureReading.id.desc()))
    now = utcnow()
    last_at = cold_chain.last_reading_at(location.id)
    due = (last_at or location.created_at) + cold_chain.overdue_after(location)
    return render_template(
        "cold_chain/location.html", location=location, site=site, pagination=pagination,
        open_excursion=sites.open_excursion_at(location.id), monitored=cold_chain.has_range(location),
        missed=location.active and cold_chain.has_range(location) and due <= now, last_at=last_at,
        window=cold_chain.schedule_window(location),
        report_url=url_if("cold_chain.report", location_id=location.id, month=clinic_today().strftime("%Y-%m")))
