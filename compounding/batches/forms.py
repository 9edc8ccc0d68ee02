"""Batch forms: the fixed part of the compounding form, verification, test results, rejection, discard."""

from datetime import UTC, datetime

from wtforms import (
    DateField,
    DateTimeLocalField,
    IntegerField,
    SelectField,
    SelectMultipleField,
    StringField,
    TextAreaField,
)
from wtforms.validators import DataRequired, InputRequired, Length, Optional

from ..forms import AppForm, Between, choices, in_day_range, signature_field
from ..limits import NOTE_MAX, NOTES_MAX, SCAN_MAX, SHORT_TEXT_MAX
from ..models.batch import DISCARD_REASONS, TEST_KINDS, TEST_METHODS, TEST_RESULTS
from ..services.batches import MAX_UNITS
from ..services.clock import clinic_zone, utcnow

# Browsers send datetime-local as 2026-11-27T14:30 (seconds only when the step asks for them).
LOCAL_FORMATS = ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"]


class CompoundForm(AppForm):
    formula_id = SelectField("Formula (approved versions)", coerce=int,
                             validators=[DataRequired("Choose a formula.")])
    units = IntegerField("Units", validators=[InputRequired("How many units?"),
                                              Between(1, MAX_UNITS, f"Between 1 and {MAX_UNITS}.")],
                         render_kw={"inputmode": "numeric"})
    deviation_note = TextAreaField("Deviation note", validators=[Optional(), Length(max=NOTE_MAX)],
                                   render_kw={"rows": 2},
                                   description="Required when an actual quantity differs from the formula.")
    notes = TextAreaField("Notes", validators=[Optional(), Length(max=NOTES_MAX)], render_kw={"rows": 2})
    location_id = SelectField("Keep the batch at", coerce=int, validators=[Optional()],
                              description="Your site's default unless you choose another place.")
    # The clinic's wall clock (whatever the browser's zone): the BUD counts from here.
    preparation_started_at = DateTimeLocalField(
        "Preparation started", format=LOCAL_FORMATS, tz=clinic_zone, validators=[Optional(), in_day_range],
        description="When you began preparing (filled in when this page was opened); the beyond-use date "
                    "counts from it.")
    # The site's equipment as checkboxes (drawn by the template, each with why it may not be used), and codes
    # scanned or typed: the service judges each one (overdue, out of service, another site's).
    equipment_ids = SelectMultipleField("Equipment used", coerce=int, validate_choice=False)
    equipment_scan = StringField("Scan or type an equipment code", validators=[Optional(), Length(max=SCAN_MAX)],
                                 description="Enter adds it to the list; codes left here are added on saving.")

    def offer_start(self) -> None:
        """The page was opened now: the minute preparation is taken to have started, unless changed."""
        if self.preparation_started_at.data is None and not self.preparation_started_at.raw_data:
            self.preparation_started_at.data = utcnow().replace(second=0, microsecond=0)

    def scanned_equipment_codes(self) -> list[str]:
        """The codes typed in the scan field and not yet added to the list (a page without its script)."""
        return [code.upper() for code in (self.equipment_scan.data or "").split()]

    def preparation_started_utc(self) -> datetime | None:
        """The typed start in UTC, or None (now) when left blank."""
        started = self.preparation_started_at.data
        return started.astimezone(UTC) if started is not None else None


class DiscardForm(AppForm):
    reason = SelectField("Reason", choices=choices(DISCARD_REASONS))
    note = TextAreaField("Note", validators=[Optional(), Length(max=NOTE_MAX)], render_kw={"rows": 2},
                         description="Required for 'other'.")


class BatchTestForm(AppForm):
    """A required test result, signed by the pharmacist who records it."""

    kind = SelectField("Test", choices=choices(TEST_KINDS))
    result = SelectField("Result", choices=choices(TEST_RESULTS))
    method = SelectField("Method", choices=choices(TEST_METHODS))
    lab = StringField("Laboratory", validators=[DataRequired(), Length(max=SHORT_TEXT_MAX)])
    sampled_on = DateField("Sampled on", validators=[DataRequired(), in_day_range])
    units_sampled = IntegerField("Units taken as samples", default=0, render_kw={"inputmode": "numeric"},
                                 validators=[Optional(), Between(0, MAX_UNITS, f"Between 0 and {MAX_UNITS}.")],
                                 description="They leave the batch: their volume is written off.")
    note = TextAreaField("Note", validators=[Optional(), Length(max=NOTE_MAX)], render_kw={"rows": 2})
    password = signature_field()
