"""Treatment forms: patient record, a session with its use rows, adverse event, void (shape only).

Facts (chart number uniqueness, e-mail format, whether a vial or batch may be injected,
volume left, onset within the session's days) are checked by services.treatments and shown next
to their field or row.
"""

from datetime import UTC, datetime

from wtforms import (
    BooleanField,
    DateField,
    DateTimeLocalField,
    EmailField,
    FieldList,
    Form,
    FormField,
    HiddenField,
    PasswordField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import DataRequired, Length, Optional, ValidationError

from ..forms import AppForm, choices, in_day_range
from ..limits import CODE_MAX, NAME_MAX, NOTES_MAX, REASON_MAX, SHORT_TEXT_MAX
from ..models.treatment import ADVERSE_EVENT_TYPES, PLAIN_VOID_CODES, SEVERITIES
from ..services.clock import clinic_zone, utcnow
from ..services.errors import DomainError
from ..services.inventory import check_quantity
from ..services.vials import looks_like_vial_code, parse_vial_code

# A mesotherapy session uses a few vials; blank rows are ignored, so no script adds rows.
USE_ROWS = 6
# Browsers send datetime-local as 2026-11-27T14:30 (seconds only when the step asks for them).
LOCAL_FORMATS = ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"]


def _strip(value):
    return value.strip() if isinstance(value, str) else value


def _one_newline(value):
    """Browsers send textarea lines with CRLF; store plain newlines."""
    return value.replace("\r\n", "\n") if isinstance(value, str) else value


class PatientForm(AppForm):
    chart_number = StringField("Chart number", validators=[DataRequired(), Length(max=CODE_MAX)], filters=[_strip],
                               render_kw={"autocomplete": "off", "autocapitalize": "characters"})
    name = StringField("Name", validators=[Optional(), Length(max=SHORT_TEXT_MAX)], filters=[_strip])
    birth_on = DateField("Date of birth", validators=[Optional(), in_day_range])
    phone = StringField("Phone", validators=[Optional(), Length(max=CODE_MAX)], filters=[_strip],
                        render_kw={"inputmode": "tel", "autocomplete": "off"})
    email = EmailField("E-mail", validators=[Optional(), Length(max=SHORT_TEXT_MAX)], filters=[_strip],
                       render_kw={"autocomplete": "off"})
    # Shown only after the service found someone with the same name and birth date.
    confirm_duplicate = BooleanField("Register anyway: this is another person with the same name and date of birth")

    FIELDS = ("chart_number", "name", "birth_on", "phone", "email")

    def service_data(self) -> dict:
        return {name: getattr(self, name).data or ("" if name != "birth_on" else None) for name in self.FIELDS}


class UseForm(Form):
    """One vial injected; a row with neither code nor volume is blank.

    The code field takes a vial code (as scanned) or a batch code (the service then picks the
    vial); its name stays `batch_code` so links and scanners that fill it keep working.
    """

    # No Optional(): it would stop the chain before validate_batch_code sees a volume without a code.
    batch_code = StringField("Vial code", filters=[_strip], validators=[Length(max=CODE_MAX)])
    volume_ml = StringField("Volume (mL)", filters=[_strip])
    area = StringField("Injection area", filters=[_strip], validators=[Optional(), Length(max=NAME_MAX)])

    @property
    def is_blank(self) -> bool:
        return not self.batch_code.data and not self.volume_ml.data and not self.area.data

    def validate_batch_code(self, field):
        if not field.data and (self.volume_ml.data or self.area.data):
            raise ValidationError("Scan or type the vial code.")
        if field.data and looks_like_vial_code(field.data):
            try:
                parse_vial_code(field.data)
            except DomainError as exc:
                raise ValidationError(exc.message) from None

    def validate_volume_ml(self, field):
        if self.batch_code.data and not field.data:
            raise ValidationError("Enter the volume used.")
        if field.data:
            try:
                field.parsed = check_quantity(field.data, "volume_ml")
            except DomainError as exc:
                raise ValidationError(exc.message) from None


class TreatmentForm(AppForm):
    practitioner_id = SelectField("Practitioner", coerce=int, validators=[DataRequired("Choose the practitioner.")])
    # The typed time is the clinic's wall clock (whatever the browser's zone): tz attaches it.
    performed_at = DateTimeLocalField("Performed at", format=LOCAL_FORMATS, tz=clinic_zone,
                                      validators=[Optional(), in_day_range])
    # The time the page offered: sent back unchanged, it means "now" (see performed_at_utc).
    offered_at = HiddenField()
    indication = StringField("Indication / treated area", validators=[Optional(), Length(max=SHORT_TEXT_MAX)],
                             filters=[_strip], render_kw={"placeholder": "e.g. submental fat, face rejuvenation"})
    notes = TextAreaField("Notes", validators=[Optional(), Length(max=NOTES_MAX)], filters=[_one_newline],
                          render_kw={"rows": 3})
    uses = FieldList(FormField(UseForm), min_entries=USE_ROWS, max_entries=USE_ROWS)
    # Only for a session dated further back than BACKDATE_HOURS: the signed-in pharmacist signs it.
    password = PasswordField("Pharmacist's password (back-dated session)", validators=[Optional()],
                             render_kw={"autocomplete": "current-password"})

    def validate_uses(self, field):
        if all(row.form.is_blank for row in field):
            raise ValidationError("Scan at least one vial used in the session.")

    def offer_now(self) -> None:
        """Fill in the current minute, and remember it was the page's offer."""
        self.performed_at.data = utcnow().replace(second=0, microsecond=0)
        self.offered_at.data = self.performed_at._value()

    def performed_at_utc(self) -> datetime | None:
        """The typed clinic time in UTC, or None (now, to the second) when blank or left as offered.

        The offer is rounded down to the minute: taken literally, a vial compounded a few
        seconds after the page opened would be "not yet compounded" at the session time.
        """
        if self.performed_at.data is None or self.performed_at.raw_data == [self.offered_at.data]:
            return None
        return self.performed_at.data.astimezone(UTC)

    def filled_uses(self) -> list[dict]:
        """Each filled row as the service takes it: a vial code as `vial_code`, else a batch code."""
        return [{("vial_code" if looks_like_vial_code(row.form.batch_code.data) else "batch_code"):
                 row.form.batch_code.data, "volume_ml": row.form.volume_ml.parsed, "area": row.form.area.data or ""}
                for row in self.uses if not row.form.is_blank]

    def compact_uses(self) -> None:
        """Move filled rows up, so the service's "Use 2" is the page's row 2."""
        filled = [(r.form.batch_code.data, r.form.volume_ml.data, r.form.area.data, getattr(r.form.volume_ml,
                   "parsed", None)) for r in self.uses if not r.form.is_blank]
        for index, row in enumerate(self.uses):
            code, volume, area, parsed = filled[index] if index < len(filled) else ("", "", "", None)
            row.form.batch_code.data, row.form.volume_ml.data, row.form.area.data = code, volume, area
            row.form.volume_ml.parsed = parsed


class AdverseEventForm(AppForm):
    # No default: a wrong type or severity recorded by inattention would skew the quality signals.
    type = SelectField("Type", choices=choices([("", "Choose…"), *ADVERSE_EVENT_TYPES]),
                       validators=[DataRequired("Choose the type of event.")])
    severity = SelectField("Severity", choices=choices([("", "Choose…"), *SEVERITIES]),
                           validators=[DataRequired("Choose the severity.")])
    onset_on = DateField("Onset date", validators=[Optional(), in_day_range])
    outcome = StringField("Outcome", validators=[Optional(), Length(max=SHORT_TEXT_MAX)], filters=[_strip],
                          render_kw={"placeholder": "e.g. resolved in 3 days with cold compresses"})
    notes = TextAreaField("Notes", validators=[Optional(), Length(max=NOTES_MAX)], filters=[_one_newline],
                          render_kw={"rows": 2})


SIGNATURE_LABEL = "Pharmacist's password (e-signature)"


class VoidForm(AppForm):
    # No default: the code says what went wrong, and a guess would mislead the trace.
    reason_code = SelectField("Reason code", choices=choices([("", "Choose…"), *PLAIN_VOID_CODES]),
                              validators=[DataRequired("Choose the reason code.")])
    reason = TextAreaField("Reason", validators=[DataRequired("Say why the session is voided."),
                                                 Length(max=REASON_MAX)],
                           filters=[_strip], render_kw={"rows": 2},
                           description="The record stays in traces and recalls, flagged voided.")
    password = PasswordField(SIGNATURE_LABEL, validators=[Optional()],
                             render_kw={"autocomplete": "current-password"},
                             description="Needed when the session is in an open recall's scope or carries an "
                                         "adverse event: a pharmacist signs.")


class CorrectPatientForm(AppForm):
    chart_number = StringField("Right patient's chart number", validators=[DataRequired("Type the chart number."),
                                                                           Length(max=CODE_MAX)],
                               filters=[_strip], render_kw={"autocomplete": "off", "autocapitalize": "characters"})
    reason = TextAreaField("Reason", validators=[DataRequired("Say why the patient is corrected."),
                                                 Length(max=REASON_MAX)], filters=[_strip], render_kw={"rows": 2})
    password = PasswordField(SIGNATURE_LABEL, validators=[DataRequired("Sign with your password.")],
                             render_kw={"autocomplete": "current-password"})
