"""Export and import forms (shape only: the services judge the facts)."""

from flask_wtf.file import FileField, FileRequired
from wtforms import DateField, HiddenField, IntegerField
from wtforms.validators import DataRequired, Length, Optional, ValidationError

from ..forms import AppForm, Between, in_day_range
from ..models._common import MAX_RECORD_ID

_NO_RECORD = "No record has this id."


class AuditExportForm(AppForm):
    """Read-only download asked for by GET: no CSRF token (it changes nothing)."""

    class Meta:
        csrf = False

    start = DateField("From (clinic day)",
                        validators=[DataRequired("Give the first day, e.g. 2026-11-01."), in_day_range])
    end = DateField("To (clinic day, inclusive)",
                      validators=[DataRequired("Give the last day, e.g. 2026-11-30."), in_day_range])

    def validate_end(self, field):
        if self.start.data and field.data and field.data < self.start.data:
            raise ValidationError("The last day is before the first day.")


class SessionExportForm(AppForm):
    class Meta:
        csrf = False

    # Named as on the session list page, so its filters carry over to the download.
    start = DateField("Performed from", validators=[Optional(), in_day_range], name="from")
    end = DateField("Performed to", validators=[Optional(), in_day_range], name="to")
    practitioner_id = IntegerField("Practitioner", validators=[Optional(), Between(1, MAX_RECORD_ID, _NO_RECORD)])
    patient_id = IntegerField("Patient", validators=[Optional(), Between(1, MAX_RECORD_ID, _NO_RECORD)])

    def validate_end(self, field):
        if self.start.data and field.data and field.data < self.start.data:
            raise ValidationError("The last day is before the first day.")


class ImportUploadForm(AppForm):
    # Judged by its content, not its name: services.imports says what is wrong with it.
    file = FileField("Delivery sheet (.xlsx)", validators=[FileRequired("Choose the .xlsx file to upload.")])


class ImportConfirmForm(AppForm):
    """The previewed file travels back base64-encoded, and is read and checked again."""

    content = HiddenField(validators=[DataRequired(), Length(max=3 * 1024 * 1024 + 64 * 1024)])
    filename = HiddenField(validators=[Optional(), Length(max=255)])
