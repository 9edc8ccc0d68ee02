"""Cold chain pages: a data logger's file, previewed, then imported whole or not at all (routes on views.bp).

Between the preview and the confirmation the upload waits in the instance folder, named by
the uploader's id and its SHA-256: the confirmation names the digest it saw, and imports
exactly that file (read and checked again by the service), or nothing.
"""

import hashlib
import os
import time
from pathlib import Path
from zoneinfo import ZoneInfo

from flask import abort, current_app, flash, redirect, render_template, url_for
from flask_login import current_user
from flask_wtf.file import FileField, FileRequired
from wtforms import BooleanField, HiddenField, StringField
from wtforms.validators import DataRequired, Length, Optional, Regexp

from ..extensions import db
from ..forms import AppForm, apply_domain_error
from ..models import Location, ReadingImport, User
from ..models.site import TIMEZONE_MAX
from ..security import requires
from ..services import reading_files, sites
from ..services.clock import to_clinic
from ..services.errors import InvalidInput
from .views import bp

UPLOADS = "reading-uploads"
# A preview not confirmed within a day is thrown away (the next upload sweeps it).
KEEP_SECONDS = 24 * 3600
PREVIEW_ROWS = 10
# Errors listed on the preview; the rest are counted.
ERRORS_SHOWN = 500


class ReadingFileForm(AppForm):
    file = FileField("Logger file (CSV)", validators=[FileRequired("Choose the logger's CSV file.")])
    local_times = BooleanField("The times in this file have no UTC offset: they are local time in this zone")
    timezone = StringField("Time zone of the file", validators=[Optional(), Length(max=TIMEZONE_MAX)])


class ReadingConfirmForm(AppForm):
    sha256 = HiddenField(validators=[DataRequired(), Regexp(r"^[0-9a-f]{64}$")])
    filename = HiddenField(validators=[Optional(), Length(max=255)])
    timezone = HiddenField(validators=[Optional(), Length(max=TIMEZONE_MAX)])


def _upload_dir() -> Path:
    return Path(current_app.instance_path) / UPLOADS


def _kept(sha256: str, location_id: int, zone: str | None) -> Path:
    """The previewed file, kept for its user, its location and the time zone it was read in: a confirmation
    elsewhere or in another zone finds nothing and asks for the file again."""
    zone_key = hashlib.sha256((zone or "").encode()).hexdigest()[:12]
    return _upload_dir() / f"{current_user.id}-{location_id}-{zone_key}-{sha256}.csv"


def _keep(data: bytes, sha256: str, location_id: int, zone: str | None) -> None:
    folder = _upload_dir()
    folder.mkdir(parents=True, exist_ok=True)
    cutoff = time.time() - KEEP_SECONDS
    for old in (*folder.glob("*.csv"), *folder.glob("*.part")):
        if old.stat().st_mtime < cutoff:
            old.unlink(missing_ok=True)
    path = _kept(sha256, location_id, zone)
    partial = path.with_suffix(f".{os.getpid()}.part")
    partial.write_bytes(data)
    partial.replace(path)


def _zone_of(location: Location) -> str:
    return sites.get_site(location.site_id).timezone


def _render_upload(location: Location, form: ReadingFileForm, status: int = 200):
    return render_template("cold_chain/import.html", location=location, form=form, site_zone=_zone_of(location),
                           max_bytes=reading_files.max_bytes(), expected=reading_files.EXPECTED_HEADER,
                           range_text=reading_files.cold_chain.range_text), status


@bp.route("/cold-chain/locations/<int:location_id>/import", methods=["GET", "POST"])
@requires("readings.import")
def location_import(location_id: int):
    location = reading_files.file_location(current_user, location_id)
    form = ReadingFileForm()
    if not form.is_submitted():
        form.timezone.data = _zone_of(location)
    if not form.validate_on_submit():
        return _render_upload(location, form, 422 if form.errors else 200)
    upload = form.file.data
    data = upload.read(reading_files.max_bytes() + 1)
    zone = (form.timezone.data or _zone_of(location)) if form.local_times.data else None
    filename = (upload.filename or "readings.csv")[:255]
    try:
        found = reading_files.preview(current_user, location.id, data, filename, zone=zone)
    except reading_files.FileTooLarge as exc:
        apply_domain_error(form, exc)
        return _render_upload(location, form, 413)
    except InvalidInput as exc:
        apply_domain_error(form, exc)
        return _render_upload(location, form, 422)
    if found.ok:
        _keep(data, found.sha256, location.id, zone)
    confirm = ReadingConfirmForm(formdata=None, sha256=found.sha256, filename=filename, timezone=zone or "")
    return _render_preview(found, confirm)


def _render_preview(found: reading_files.Preview, confirm: ReadingConfirmForm):
    zone = ZoneInfo(_zone_of(found.location))
    shown = [(row, to_clinic(row.measured_at, zone), reading_files.cold_chain.within(found.location, row.celsius))
             for row in found.parsed.rows[:PREVIEW_ROWS]]
    return render_template("cold_chain/import_preview.html", found=found, location=found.location,
                           confirm_form=confirm, shown=shown, zone=zone, errors_shown=ERRORS_SHOWN,
                           first=found.parsed.first_at and to_clinic(found.parsed.first_at, zone),
                           last=found.parsed.last_at and to_clinic(found.parsed.last_at, zone),
                           range_text=reading_files.cold_chain.range_text), 200 if found.ok else 422


@bp.route("/cold-chain/locations/<int:location_id>/import/confirm", methods=["POST"])
@requires("readings.import")
def location_import_confirm(location_id: int):
    location = reading_files.file_location(current_user, location_id)
    form = ReadingConfirmForm()
    again = ReadingFileForm(formdata=None)
    again.timezone.data = _zone_of(location)
    if not form.validate():
        again.form_errors.append("The previewed file did not come back: upload it again.")
        return _render_upload(location, again, 422)
    path = _kept(form.sha256.data, location.id, form.timezone.data or None)
    data = path.read_bytes() if path.exists() else None
    if data is None or hashlib.sha256(data).hexdigest() != form.sha256.data:
        again.form_errors.append("The previewed file is no longer here (a preview keeps it for a day): "
                                 "upload it again.")
        return _render_upload(location, again, 422)
    try:
        record = reading_files.import_file(current_user, location.id, data, form.filename.data or "readings.csv",
                                           zone=form.timezone.data or None)
    except reading_files.FileTooLarge as exc:
        apply_domain_error(again, exc)
        return _render_upload(location, again, 413)
    except InvalidInput as exc:
        # The location's readings changed since the preview, or the file went bad: show why.
        apply_domain_error(again, exc)
        return _render_upload(location, again, 422)
    path.unlink(missing_ok=True)
    flash(f"{record.imported} readings imported from {record.filename}; {record.duplicates} already there "
          "were skipped.", "success")
    return redirect(url_for("cold_chain.reading_import", import_id=record.id))


@bp.route("/cold-chain/imports/<int:import_id>")
@requires("coldchain.read")
def reading_import(import_id: int):
    record = db.session.get(ReadingImport, import_id)
    location = db.session.get(Location, record.location_id) if record else None
    visible = sites.visible_site_ids(current_user)
    if location is None or (visible is not None and location.site_id not in visible):
        abort(404)
    zone = ZoneInfo(_zone_of(location))
    excursions = reading_files.import_excursions(record.id)
    linked = "cold_chain.excursion" in current_app.view_functions
    return render_template("cold_chain/import_result.html", record=record, location=location, zone=zone,
                           excursions=excursions, linked=linked, to_clinic=to_clinic,
                           uploader=db.session.get(User, record.uploaded_by_id) if record.uploaded_by_id else None)

